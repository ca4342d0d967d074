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
    /// The offending source line, for the caret display.
    pub source_line: Option<String>,
    pub width: usize,
}

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
            width: 0,
        }
    }

    /// A problem at a byte span of `text`, the contents of `file`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let col = text[line_start..start].chars().count() + 1;
        let source_line = text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = span.end.clamp(start, line_end.max(start));
        let width = text[start..end].chars().count().max(1);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            hint: None,
            source_line: Some(source_line),
            width,
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
                .take(self.col.saturating_sub(1))
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
    fn suggestions() {
        assert_eq!(
            did_you_mean("kill-timout", &["kill-timeout", "kill-signal"]),
            Some("kill-timeout")
        );
        assert_eq!(did_you_mean("zzz", &["exec", "script"]), None);
        assert_eq!(did_you_mean("TREM", &["TERM", "KILL"]), Some("TERM"));
    }
}
