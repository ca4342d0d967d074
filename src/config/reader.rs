//! Typed reading of a parsed TOML document that keeps every value's span, so that each
//! mistake becomes a [`Diagnostic`] and reading goes on to find the next one.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, did_you_mean};
use super::limits;

pub type Value<'i> = Spanned<DeValue<'i>>;

/// Reads values out of one file, collecting diagnostics instead of stopping at the first.
pub struct Reader<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub errors: Vec<Diagnostic>,
    /// The instance being read, for a file with `instances`: where an integer is
    /// expected, a string is an expression of `INSTANCE` (`"8000 + $INSTANCE"`).
    pub instance: Option<u32>,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Reader {
            file,
            text,
            errors: Vec::new(),
            instance: None,
        }
    }

    /// Parses the whole document; a syntax error is recorded and `None` returned.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'a>>> {
        match DeTable::parse(self.text) {
            Ok(table) => Some(table),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim().to_string();
                self.error(span, format!("invalid TOML: {message}"), None);
                None
            }
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::at(self.file, self.text, span, message).with_hint(hint);
        self.errors.push(d);
    }

    /// Reports a key that is not one of `known`, suggesting the nearest.
    pub fn unknown_key(&mut self, key: &Spanned<std::borrow::Cow<'_, str>>, known: &[&str]) {
        let hint = did_you_mean(key.get_ref(), known).map(|k| format!("did you mean `{k}`?"));
        let shown = super::diag::quoted(key.get_ref());
        self.error(key.span(), format!("unknown key `{shown}`"), hint);
    }

    /// Reports a key that is not one of `known`, suggesting the nearest, or else
    /// giving `listing` (which keys are taken here).
    pub fn unknown_key_or(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
        listing: String,
    ) {
        let hint = did_you_mean(key.get_ref(), known)
            .map(|k| format!("did you mean `{k}`?"))
            .unwrap_or(listing);
        let shown = super::diag::quoted(key.get_ref());
        self.error(key.span(), format!("unknown key `{shown}`"), Some(hint));
    }

    fn wrong_type(&mut self, key: &str, v: &Value<'_>, expected: &str) {
        let found = v.get_ref().type_str();
        self.error(
            v.span(),
            format!("`{key}` must be {expected}, not {found}"),
            None,
        );
    }

    /// A string, without NUL bytes (no program, argument, path or variable can hold
    /// one) and at most [`limits::MAX_VALUE`] bytes long.
    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        let s = self.string_with_nul(key, v)?;
        if s.contains('\0') {
            self.error(
                v.span(),
                format!("`{key}` holds a NUL byte, which no program, argument, path or variable can hold"),
                None,
            );
            return None;
        }
        Some(s)
    }

    /// A string that may hold NUL bytes (bytes sent on a socket), at most
    /// [`limits::MAX_VALUE`] bytes long.
    pub fn string_with_nul(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) if s.len() > limits::MAX_VALUE => {
                self.error(
                    v.span(),
                    format!(
                        "`{key}` is {} bytes long, more than the limit of {}",
                        s.len(),
                        limits::MAX_VALUE
                    ),
                    None,
                );
                None
            }
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    /// A string naming a file: not empty, without NUL bytes, at most
    /// [`limits::MAX_PATH`] bytes.
    pub fn path(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        let p = self.string(key, v)?;
        if p.is_empty() {
            self.error(v.span(), format!("`{key}` is empty"), None);
            None
        } else if p.len() > limits::MAX_PATH {
            self.error(
                v.span(),
                format!(
                    "`{key}` is {} bytes long, more than the limit of {} for a path",
                    p.len(),
                    limits::MAX_PATH
                ),
                None,
            );
            None
        } else {
            Some(p)
        }
    }

    pub fn bool(&mut self, key: &str, v: &Value<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    pub fn integer(&mut self, key: &str, v: &Value<'_>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(v.span(), format!("`{key}` is out of range"), None);
                    None
                }
            },
            DeValue::String(s) if let Some(n) = self.instance => {
                match super::instances::eval(s, n) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.error(
                            v.span(),
                            format!("`{key}` must be an integer or an expression of INSTANCE: {e}"),
                            Some("write it like \"8000 + $INSTANCE\"".into()),
                        );
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(key, v, "an integer");
                None
            }
        }
    }

    pub fn table<'v, 'i>(&mut self, key: &str, v: &'v Value<'i>) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    pub fn array<'v, 'i>(&mut self, key: &str, v: &'v Value<'i>) -> Option<&'v [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(key, v, "an array");
                None
            }
        }
    }

    /// A duration: a string such as `"5s"` or `"1m 30s"`, or an integer number of
    /// seconds; at most [`limits::MAX_DURATION`].
    pub fn duration(&mut self, key: &str, v: &Value<'_>) -> Option<Duration> {
        let d = match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(key, v)?;
                match u64::try_from(n) {
                    Ok(secs) => Duration::from_secs(secs),
                    Err(_) => {
                        self.error(v.span(), format!("`{key}` cannot be negative"), None);
                        return None;
                    }
                }
            }
            DeValue::String(s) => match humantime::parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.error(
                        v.span(),
                        format!("`{key}`: `{s}` is not a duration ({e})"),
                        Some("write it like \"500ms\", \"5s\", \"1m 30s\" or \"2h\"".into()),
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, v, "a duration such as \"5s\"");
                return None;
            }
        };
        if d > limits::MAX_DURATION {
            self.error(
                v.span(),
                format!(
                    "`{key}` is longer than the limit of {} days for a duration",
                    limits::MAX_DURATION.as_secs() / 86_400
                ),
                None,
            );
            return None;
        }
        Some(d)
    }

    /// A duration that must be more than zero.
    pub fn positive_duration(&mut self, key: &str, v: &Value<'_>) -> Option<Duration> {
        let d = self.duration(key, v)?;
        if d.is_zero() {
            self.error(v.span(), format!("`{key}` must be more than 0"), None);
            return None;
        }
        Some(d)
    }

    /// A size: `"10MB"`, `"512KiB"`, or an integer number of bytes; at most
    /// [`limits::MAX_SIZE`].
    pub fn size(&mut self, key: &str, v: &Value<'_>) -> Option<u64> {
        let n = match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(key, v)?;
                match u64::try_from(n) {
                    Ok(n) => n,
                    Err(_) => {
                        self.error(v.span(), format!("`{key}` cannot be negative"), None);
                        return None;
                    }
                }
            }
            DeValue::String(s) => match parse_size(s) {
                Some(n) => n,
                None => {
                    self.error(
                        v.span(),
                        format!("`{key}`: `{s}` is not a size"),
                        Some("write it like \"500KB\", \"10MB\" or \"1GiB\"".into()),
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, v, "a size such as \"10MB\"");
                return None;
            }
        };
        if n > limits::MAX_SIZE {
            self.error(
                v.span(),
                format!("`{key}` is larger than the limit of 1PiB for a size"),
                None,
            );
            return None;
        }
        Some(n)
    }
}

/// Parses `"10MB"`, `"512 KiB"`, `"100"` into bytes. KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB powers of 1024, as `df -H` and `df -h` read.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = num * mult;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("1 KiB"), Some(1024));
        assert_eq!(parse_size("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
