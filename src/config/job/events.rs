//! `start-on` and `stop-on`: event expressions, with where their text stands in the
//! file so that an error inside one points at its column.

use crate::config::reader::{Reader, Value};
use crate::event::expr::{self, Expr};

/// An event expression with where it stands in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct On {
    pub expr: Expr,
    /// Byte offset of the expression's text in the job file, when the file holds the
    /// text byte for byte (no escapes), so that an offset in the text is one in the file.
    pub offset: Option<usize>,
    /// The whole value in the file, quotes included.
    pub span: std::ops::Range<usize>,
}

impl On {
    /// The span in the file of `len` bytes at `at` in the expression's text: exact when
    /// it can be, else the whole value.
    pub fn span_of(&self, at: usize, len: usize) -> std::ops::Range<usize> {
        match self.offset {
            Some(o) => o.saturating_add(at)..o.saturating_add(at).saturating_add(len),
            None => self.span.clone(),
        }
    }
}

/// Where a string value's text starts in the file, if the file holds it byte for byte
/// there (a value written with escapes does not: its offsets are not the file's).
pub fn text_start(file_text: &str, span: std::ops::Range<usize>, value: &str) -> Option<usize> {
    let raw = file_text.get(span.clone())?;
    let triple = raw.starts_with("\"\"\"") || raw.starts_with("'''");
    let mut start = span.start.checked_add(if triple { 3 } else { 1 })?;
    if triple {
        // A newline right after the opening quotes is not part of the value.
        let rest = file_text.get(start..)?;
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    }
    let end = start.checked_add(value.len())?;
    (file_text.get(start..end) == Some(value)).then_some(start)
}

/// Reads an event expression; a syntax error points at its column in the file.
pub(super) fn on(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<On> {
    let text = r.string(key, v)?;
    let span = v.span();
    let offset = text_start(r.text, span.clone(), &text);
    match expr::parse(&text) {
        Ok(expr) => Some(On { expr, offset, span }),
        Err(e) => {
            let on = On {
                expr: Expr::And(Vec::new()),
                offset,
                span,
            };
            let hint = Some(
                "write events like `started redis`, joined with `and` / `or`, e.g. \
                 \"started redis and (started db or deploy-done)\""
                    .to_string(),
            );
            r.error(on.span_of(e.at, 1), format!("`{key}`: {}", e.message), hint);
            None
        }
    }
}
