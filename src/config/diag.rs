//! Configuration errors that say what and where: `file:line:col`, the line, a caret, a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem is about the whole file.
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The offending source line (or, for a long line, the part of it around the
    /// mistake), for the caret display.
    pub source_line: Option<String>,
    /// Characters of `source_line` before the caret.
    pub caret: usize,
    pub width: usize,
}

/// At most this many characters of a source line are shown under an error.
const SHOWN_LINE: usize = 120;

impl Diagnostic {
    /// A problem with a whole file (it cannot be read, it is not a valid name...).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            hint: None,
            source_line: None,
            caret: 0,
            width: 0,
        }
    }

    /// A problem at a known line and column (1-based, the column in characters) of a
    /// file whose text cannot be shown (it is not UTF-8, say).
    pub fn at_line_col(file: &Path, line: usize, col: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            line: line.max(1),
            col: col.max(1),
            ..Diagnostic::file(file, message)
        }
    }

    /// A problem at a byte span of `text`, the contents of `file`. Any span is taken,
    /// even one that is out of the text or inside a character: it is narrowed to the
    /// text and widened to whole characters.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = text.floor_char_boundary(span.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let col = text[line_start..start].chars().count() + 1;
        let end = text.ceil_char_boundary(span.end.clamp(start, line_end));
        let width = text[start..end].chars().count().max(1);
        let full = text[line_start..line_end].trim_end_matches('\r');
        // A long line is shown from a little before the mistake, so that the caret
        // stays on the screen and a megabyte-long line is not printed whole.
        let skip = (col - 1).saturating_sub(SHOWN_LINE / 3);
        let shown: String = full.chars().skip(skip).take(SHOWN_LINE).collect();
        // At most just past the shown text (a span at a `\r` that is not shown).
        let caret = (col - 1 - skip).min(shown.chars().count());
        Diagnostic {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            hint: None,
            caret,
            width: width.min(SHOWN_LINE.saturating_sub(caret)).max(1),
            source_line: Some(shown),
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )?;
        }
        if let Some(src) = &self.source_line {
            let gutter = " ".repeat(self.line.to_string().len());
            let pad: String = src
                .chars()
                .take(self.caret)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{gutter} |\n{} | {src}\n{gutter} | {pad}{}",
                self.line,
                "^".repeat(self.width)
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = help: {hint}")?;
        }
        Ok(())
    }
}

/// `text` as a message quotes it: whole when short, else its start and a mark.
pub fn quoted(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let start: String = text.chars().take(MAX).collect();
        format!("{start}...")
    }
}

/// Every diagnostic of a configuration, printed one after another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // No candidate is this long; and the distance takes time and memory in the
    // product of the lengths.
    if word.len() > 64 {
        return None;
    }
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`: a swap
/// counts once, since `TREM` for `TERM` is one slip of the fingers.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_and_caret() {
        let text = "a = 1\nkill-timout = \"5s\"\n";
        let start = text.find("kill").unwrap_or(0);
        let d = Diagnostic::at(
            Path::new("jobs/x.toml"),
            text,
            start..start + 11,
            "unknown key",
        );
        assert_eq!((d.line, d.col), (2, 1));
        let shown = d.to_string();
        assert!(shown.starts_with("jobs/x.toml:2:1: unknown key"), "{shown}");
        assert!(shown.contains("^^^^^^^^^^^"), "{shown}");
    }

    #[test]
    fn spans_inside_a_character_or_past_the_end() {
        let text = "start-on = \"é\"\n";
        for span in [12..13, 13..14, 12..100, 100..200, 5..5] {
            let d = Diagnostic::at(Path::new("x.toml"), text, span.clone(), "m");
            assert!(d.line >= 1 && d.col >= 1, "{span:?}: {d:?}");
            let _ = d.to_string();
        }
        // An end before the start (no caller means one, but nothing must break).
        let backwards = std::ops::Range { start: 5, end: 3 };
        let d = Diagnostic::at(Path::new("x.toml"), text, backwards, "m");
        assert_eq!((d.line, d.col, d.width), (1, 6, 1));
        let d = Diagnostic::at(Path::new("x.toml"), text, 13..14, "m");
        assert_eq!((d.line, d.col), (1, 13));
    }

    #[test]
    fn a_long_line_is_shown_around_the_mistake() {
        let text = format!("a = \"{}X{}\"", "y".repeat(5000), "z".repeat(5000));
        let at = text.find('X').unwrap_or(0);
        let d = Diagnostic::at(Path::new("x.toml"), &text, at..at + 1, "m");
        assert_eq!(d.col, at + 1);
        let shown = d.source_line.clone().unwrap_or_default();
        assert!(shown.chars().count() <= SHOWN_LINE, "{}", shown.len());
        assert_eq!(shown.chars().nth(d.caret), Some('X'));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("kill-timout", &["kill-timeout", "kill-signal"]),
            Some("kill-timeout")
        );
        assert_eq!(did_you_mean("zzz", &["exec", "script"]), None);
        assert_eq!(did_you_mean("TREM", &["TERM", "KILL"]), Some("TERM"));
    }
}
