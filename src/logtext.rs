//! Keeping the daemon's log honest: text that comes from outside (a client's event and
//! its variables, a job's configuration, what a probed server answered) is written with
//! its control characters escaped, so it can never start a line of its own or send
//! escape sequences to a terminal.
//!
//! [`escape`] (or [`Esc`] in a format string) is the one helper for that. [`LogWriter`]
//! is a safety net under every log line: whatever still holds a control character when
//! it is written is escaped there, and a line break inside one message continues that
//! message on an indented line, which cannot be taken for a line of its own.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

/// Whether `c` must not reach the log as it is: control characters (C0, DEL, C1) and
/// the characters that break or reorder lines when shown (line and paragraph
/// separators, bidirectional overrides and isolates).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => {
            use fmt::Write as _;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `text` with every control character written as an escape (`\n`, `\r`, `\t`,
/// `\u{1b}`...). Borrowed when there is nothing to escape, which is the common case.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Shows its text through [`escape`]: `tracing::info!("event {}", Esc(&name))`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// A path, shown through [`escape`]: paths come from configuration files.
pub struct EscPath<'a>(pub &'a std::path::Path);

impl fmt::Display for EscPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0.to_string_lossy()))
    }
}

/// One formatted log record, made safe to write: control characters escaped, a line
/// break inside the record followed by an indent. `keep_esc` leaves ESC alone, for the
/// colours of a log written to a terminal.
pub fn record(text: &str, keep_esc: bool) -> Cow<'_, str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let needs = body
        .chars()
        .any(|c| unsafe_char(c) && !(c == '\t' || (keep_esc && c == '\u{1b}')));
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push('\t'),
            '\u{1b}' if keep_esc => out.push(c),
            c if unsafe_char(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    if body.len() < text.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The daemon's log writer: stderr, through [`record`]. The log formatter hands it one
/// whole record per write.
#[derive(Clone, Copy)]
pub struct LogWriter {
    pub keep_esc: bool,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = record(&text, self.keep_esc);
        io::stderr().lock().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_a_line() {
        assert!(matches!(escape("deploy-done"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nINFO forged\r\u{1b}[2J\u{7f}"),
            "a\\nINFO forged\\r\\u{1b}[2J\\u{7f}"
        );
        assert_eq!(escape("x\u{2028}y\u{202e}"), "x\\u{2028}y\\u{202e}");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(format!("{}", Esc("é\0")), "é\\u{0}");
    }

    #[test]
    fn records_keep_their_last_newline_and_indent_the_others() {
        assert!(matches!(record("one line\n", false), Cow::Borrowed(_)));
        assert_eq!(
            record("refused:\nfile:1:2: bad\n", false),
            "refused:\n    file:1:2: bad\n"
        );
        assert_eq!(record("a\u{1b}[1mb\n", false), "a\\u{1b}[1mb\n");
        assert_eq!(record("a\u{1b}[1mb\n", true), "a\u{1b}[1mb\n");
        assert_eq!(record("cr\rhere", false), "cr\\rhere");
    }
}
