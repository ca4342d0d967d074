//! A small TOML writer for the files `import` makes: keys in the order they are added,
//! each with the comments that stood above the line it came from, plain keys first and
//! tables after them (a key after a `[table]` header would belong to the table).
//!
//! The text is written here rather than through a TOML document library because the
//! documents are built from nothing, key by key, with comments tied to keys; values
//! are escaped by the `toml` crate's own serializer (or written as a multi-line literal
//! string where the text allows it), and every document is then read back by guardian's
//! own configuration reader before it is written, so a mistake here is caught, not
//! written.

/// One `key = value` line with the comment lines above it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub comments: Vec<String>,
    pub key: String,
    /// The value as TOML text.
    pub value: String,
    /// Commented out (`# key = value`), with the reason on the line above.
    pub disabled: Option<String>,
}

/// A `[name]` or `[[name]]` table.
#[derive(Debug, Clone)]
pub struct Table {
    pub comments: Vec<String>,
    pub header: String,
    pub entries: Vec<Entry>,
}

/// A whole file.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub header: Vec<String>,
    pub entries: Vec<Entry>,
    pub tables: Vec<Table>,
    /// Comments that stood after the last line.
    pub footer: Vec<String>,
}

/// A TOML string for `s`: a multi-line literal when it has several lines and nothing a
/// literal cannot hold, else a basic string with escapes.
pub fn string(s: &str) -> String {
    let literal_ok = s.contains('\n')
        && !s.contains("'''")
        && !s.ends_with('\'')
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if literal_ok {
        return format!("'''\n{s}'''");
    }
    ::toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
pub fn strings(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| string_inline(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// A one-line TOML string (for inline tables and arrays).
pub fn string_inline(s: &str) -> String {
    ::toml::Value::String(s.to_string()).to_string()
}

/// A bare key where TOML allows one, else a quoted key.
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        string_inline(k)
    }
}

/// An inline table of strings: `{ A = "1", B = "2" }`.
pub fn inline_strings(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", key(k), string_inline(v)))
        .collect();
    format!("{{ {} }}", inner.join(", "))
}

impl Entry {
    pub fn new(key: &str, value: String) -> Self {
        Entry {
            comments: Vec::new(),
            key: key.to_string(),
            value,
            disabled: None,
        }
    }
}

impl Table {
    pub fn new(header: &str) -> Self {
        Table {
            comments: Vec::new(),
            header: header.to_string(),
            entries: Vec::new(),
        }
    }

    pub fn set(&mut self, comments: Vec<String>, key: &str, value: String) {
        let mut e = Entry::new(key, value);
        e.comments = comments;
        self.entries.push(e);
    }
}

impl Doc {
    /// Adds `key = value` with `comments` above it; a key given again replaces the
    /// earlier value and keeps both comments.
    pub fn set(&mut self, comments: Vec<String>, key: &str, value: String) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.key == key && e.disabled.is_none())
        {
            e.comments.extend(comments);
            e.value = value;
            return;
        }
        let mut e = Entry::new(key, value);
        e.comments = comments;
        self.entries.push(e);
    }

    /// Adds `# key = value`, with `why` as a comment above it.
    pub fn disabled(&mut self, comments: Vec<String>, key: &str, value: String, why: &str) {
        let mut e = Entry::new(key, value);
        e.comments = comments;
        e.disabled = Some(why.to_string());
        self.entries.push(e);
    }

    /// Comment lines that become part of the file where the next key goes.
    pub fn comment(&mut self, comments: Vec<String>) {
        if comments.is_empty() {
            return;
        }
        self.footer.extend(comments);
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.key == key && e.disabled.is_none())
    }

    /// The named table, made when it is not there yet (`[limit]`, `[ready]`).
    pub fn table(&mut self, header: &str) -> &mut Table {
        let at = match self.tables.iter().position(|t| t.header == header) {
            Some(i) => i,
            None => {
                self.tables.push(Table::new(header));
                self.tables.len().saturating_sub(1)
            }
        };
        &mut self.tables[at]
    }

    /// One more `[[check]]` table (or another array of tables).
    pub fn push_table(&mut self, t: Table) {
        self.tables.push(t);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.header {
            push_comment(&mut out, c);
        }
        if !self.header.is_empty() {
            out.push('\n');
        }
        for e in &self.entries {
            push_entry(&mut out, e, "");
        }
        for t in &self.tables {
            out.push('\n');
            for c in &t.comments {
                push_comment(&mut out, c);
            }
            out.push_str(&t.header);
            out.push('\n');
            for e in &t.entries {
                push_entry(&mut out, e, "");
            }
        }
        if !self.footer.is_empty() {
            out.push('\n');
            for c in &self.footer {
                push_comment(&mut out, c);
            }
        }
        out
    }
}

/// A comment line: the text is what followed the comment character of the source.
fn push_comment(out: &mut String, text: &str) {
    let text = text.replace(['\r', '\n'], " ");
    if text.is_empty() {
        out.push_str("#\n");
    } else if !text.starts_with(|c: char| c.is_alphanumeric()) {
        out.push('#');
        out.push_str(&text);
        out.push('\n');
    } else {
        out.push_str("# ");
        out.push_str(&text);
        out.push('\n');
    }
}

fn push_entry(out: &mut String, e: &Entry, indent: &str) {
    // A key with comments above it starts a paragraph of its own.
    if (!e.comments.is_empty() || e.disabled.is_some()) && !out.is_empty() && !out.ends_with("\n\n")
    {
        out.push('\n');
    }
    for c in &e.comments {
        push_comment(out, c);
    }
    match &e.disabled {
        None => {
            out.push_str(indent);
            out.push_str(&key(&e.key));
            out.push_str(" = ");
            out.push_str(&e.value);
            out.push('\n');
        }
        Some(why) => {
            push_comment(out, &format!("not set: {why}"));
            for (i, line) in format!("{} = {}", key(&e.key), e.value).lines().enumerate() {
                if i == 0 {
                    push_comment(out, line);
                } else {
                    push_comment(out, &format!(" {line}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_toml() {
        for s in [
            "plain",
            "with \"quotes\" and \\ backslash",
            "two\nlines\n",
            "ends in quote'\nx",
            "has ''' inside\n",
            "tab\there\n",
            "\u{7}bell",
        ] {
            let text = format!("k = {}\n", string(s));
            let v: ::toml::Table = ::toml::from_str(&text).expect("valid TOML");
            assert_eq!(v["k"].as_str(), Some(s), "{text}");
        }
    }

    #[test]
    fn tables_come_after_plain_keys() {
        let mut d = Doc::default();
        d.table("[limit]").set(vec![], "nofile", "4096".into());
        d.set(vec!["above".into()], "exec", string("/bin/true"));
        let text = d.render();
        assert!(text.find("exec").unwrap_or(usize::MAX) < text.find("[limit]").unwrap_or(0));
        assert!(text.contains("# above\nexec = \"/bin/true\"\n"));
    }
}
