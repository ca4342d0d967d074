//! What the probes' readers share: the table being read, and the values more than one
//! probe takes (an amount, a host name, HTTP headers).

use checks::{Amount, Pattern};
use toml::de::{DeTable, DeValue};

use super::super::reader::{Reader, Value};

/// The table a probe is read from: the whole value (for errors about the table), its
/// keys, and the probe type named by its `type`.
pub struct Table<'t, 'i> {
    pub whole: &'t Value<'i>,
    pub t: &'t DeTable<'i>,
    pub kind: &'static str,
}

impl<'t, 'i> Table<'t, 'i> {
    pub fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.t.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.t.contains_key(key)
    }

    /// An optional string key.
    pub fn string(&self, r: &mut Reader<'_>, key: &str) -> Option<String> {
        self.get(key).and_then(|v| r.string(key, v))
    }

    /// A key the probe cannot do without (`path` is read as a path).
    pub fn required(&self, r: &mut Reader<'_>, key: &str) -> Option<String> {
        match self.get(key) {
            Some(v) if key == "path" => r.path(key, v),
            Some(v) => r.string(key, v),
            None => {
                r.error(
                    self.whole.span(),
                    format!("a {} probe needs `{key}`", self.kind),
                    None,
                );
                None
            }
        }
    }

    /// An optional regular expression.
    pub fn pattern(&self, r: &mut Reader<'_>, key: &str) -> Option<Pattern> {
        let v = self.get(key)?;
        let text = r.string(key, v)?;
        match Pattern::new(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                r.error(
                    v.span(),
                    format!("`{key}` is not a valid regular expression: {e}"),
                    None,
                );
                None
            }
        }
    }

    /// The `max` every limit probe needs.
    pub fn max_value(&self, r: &mut Reader<'_>) -> Option<&'t Value<'i>> {
        let v = self.get("max");
        if v.is_none() {
            r.error(
                self.whole.span(),
                format!("a {} probe needs `max`", self.kind),
                None,
            );
        }
        v
    }
}

/// `"80%"`, or (when `sizes`) `"500MB"` or a number of bytes. A percentage of a whole
/// (`whole` names it: the host's memory, a disk) cannot be above 100%.
pub fn amount(
    r: &mut Reader<'_>,
    v: &Value<'_>,
    sizes: bool,
    whole: Option<&str>,
) -> Option<Amount> {
    if let DeValue::String(s) = v.get_ref()
        && let Some(p) = s.trim().strip_suffix('%')
    {
        return match p.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => match whole {
                Some(of) if p > 100.0 => {
                    r.error(
                        v.span(),
                        format!("`{s}`: a share {of} is at most 100%"),
                        None,
                    );
                    None
                }
                _ => Some(Amount::Percent(p)),
            },
            _ => {
                r.error(v.span(), format!("`{s}` is not a percentage"), None);
                None
            }
        };
    }
    if sizes {
        r.size("max", v).map(|b| Amount::Absolute(b as f64))
    } else {
        r.error(v.span(), "`max` must be a percentage like \"80%\"", None);
        None
    }
}

/// A host name to connect to or to resolve: 1 to 253 bytes, without spaces or
/// control characters.
pub fn host_name(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<String> {
    let h = r.string(key, v)?;
    if h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        r.error(
            v.span(),
            format!("`{key}` must be a host name or address (1 to 253 characters, no spaces)"),
            None,
        );
        return None;
    }
    Some(h)
}

/// `headers = { Name = "value" }`, each one that HTTP can carry.
pub fn headers(r: &mut Reader<'_>, t: &DeTable<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(hv) = t.get("headers") else {
        return out;
    };
    let Some(ht) = r.table("headers", hv) else {
        return out;
    };
    for (k, v) in ht.iter() {
        let Some(val) = r.string(k.get_ref(), v) else {
            continue;
        };
        if k.get_ref().len() > super::super::limits::MAX_KEY {
            r.error(
                k.span(),
                format!(
                    "a header name is at most {} bytes long",
                    super::super::limits::MAX_KEY
                ),
                None,
            );
            continue;
        }
        if let Err(e) = checks::check_header(k.get_ref(), &val) {
            r.error(k.span(), e, None);
            continue;
        }
        out.push((k.get_ref().to_string(), val));
    }
    out
}
