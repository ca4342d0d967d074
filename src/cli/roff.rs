//! The markdown of docs/ as a man page: a small converter for the markdown those files
//! use (headings, paragraphs, lists, tables, fenced code, inline code, emphasis and
//! links), so that `guardian.toml(5)` is made from docs/configuration.md and never
//! written twice.

/// `markdown` as a man page of section `section` named `name`, with `summary` for its
/// NAME section. The document's first `# ` heading is dropped (the NAME line says it);
/// `## ` headings become sections, deeper ones subsections.
pub fn man_page(name: &str, section: u8, summary: &str, markdown: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH {} {section} \"\" \"guardian {}\" \"guardian manual\"\n",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!(
        ".SH NAME\n{} \\- {}\n",
        escape(name),
        escape(summary)
    ));
    let mut lines = markdown.lines().peekable();
    let mut para: Vec<String> = Vec::new();
    let mut in_list = false;
    let mut first_title = true;
    let mut started_section = false;
    let flush = |out: &mut String, para: &mut Vec<String>| {
        if !para.is_empty() {
            out.push_str(&inline(&para.join(" ")));
            out.push('\n');
            para.clear();
        }
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(fence) = trimmed.strip_prefix("```") {
            let _ = fence;
            flush(&mut out, &mut para);
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref() {
                if code.trim_start().starts_with("```") {
                    break;
                }
                out.push_str(&literal(code));
                out.push('\n');
            }
            out.push_str(".fi\n.RE\n");
            in_list = false;
            continue;
        }
        if let Some((level, title)) = heading(line) {
            flush(&mut out, &mut para);
            in_list = false;
            if level == 1 && first_title {
                first_title = false;
                continue;
            }
            let macro_ = if level <= 2 { ".SH" } else { ".SS" };
            let title = strip_inline(title);
            let title = if level <= 2 {
                title.to_uppercase()
            } else {
                title
            };
            out.push_str(&format!(
                "{macro_} \"{}\"\n",
                escape(&title).replace('"', "")
            ));
            started_section = true;
            continue;
        }
        if !started_section {
            out.push_str(".SH DESCRIPTION\n");
            started_section = true;
        }
        if trimmed.is_empty() {
            flush(&mut out, &mut para);
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut out, &mut para);
            let mut rows = vec![cells(trimmed)];
            while let Some(next) = lines.peek() {
                if !next.trim_start().starts_with('|') {
                    break;
                }
                rows.push(cells(next.trim_start()));
                lines.next();
            }
            table(&mut out, &rows);
            in_list = false;
            continue;
        }
        if let Some(item) = list_item(line) {
            flush(&mut out, &mut para);
            let indent = line.len() - trimmed.len();
            if indent >= 2 {
                out.push_str(".RS 4\n");
            }
            out.push_str(&format!(".IP {} 4\n", item.0));
            para.push(item.1.to_string());
            // The item's continuation lines join it.
            while let Some(next) = lines.peek() {
                let t = next.trim_start();
                if t.is_empty() || list_item(next).is_some() || t.starts_with("```") {
                    break;
                }
                if next.len() == t.len() {
                    break;
                }
                para.push(t.to_string());
                lines.next();
            }
            flush(&mut out, &mut para);
            if indent >= 2 {
                out.push_str(".RE\n");
            }
            in_list = true;
            continue;
        }
        let indented = line.len() > trimmed.len();
        if !indented {
            in_list = false;
        }
        if para.is_empty() {
            out.push_str(if in_list { ".IP \"\" 4\n" } else { ".PP\n" });
        }
        if line.starts_with("    ") && !in_list && para.is_empty() {
            // An indented block: code.
            out.truncate(out.len() - ".PP\n".len());
            out.push_str(".PP\n.RS 4\n.nf\n");
            out.push_str(&literal(trimmed));
            out.push('\n');
            while let Some(next) = lines.peek() {
                if !next.starts_with("    ") {
                    break;
                }
                out.push_str(&literal(next.trim_start()));
                out.push('\n');
                lines.next();
            }
            out.push_str(".fi\n.RE\n");
            continue;
        }
        para.push(trimmed.to_string());
    }
    flush(&mut out, &mut para);
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if level == 0 || level > 6 {
        return None;
    }
    line[level..].strip_prefix(' ').map(|t| (level, t.trim()))
}

/// `- text`, `* text` or `1. text`: the mark to show and the text.
fn list_item(line: &str) -> Option<(String, &str)> {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
        return Some(("\\(bu".to_string(), rest));
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && let Some(rest) = t[digits..].strip_prefix(". ")
    {
        return Some((format!("{}.", &t[..digits]), rest));
    }
    None
}

/// The cells of a `| a | b |` row; a `|` inside a code span does not split it.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// A table as a list: the first cell of each row is the tag, the other cells its text,
/// each after its column's heading when there are more than two columns. (tbl would
/// squeeze the long cells of docs/ into unreadable columns at 80 characters.)
fn table(out: &mut String, rows: &[Vec<String>]) {
    let is_rule = |r: &Vec<String>| {
        r.iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
    };
    let (header, body): (Option<&Vec<String>>, Vec<&Vec<String>>) =
        if rows.len() >= 2 && is_rule(&rows[1]) {
            (Some(&rows[0]), rows[2..].iter().collect())
        } else {
            (None, rows.iter().collect())
        };
    for row in body {
        let Some((tag, rest)) = row.split_first() else {
            continue;
        };
        out.push_str(".TP 4\n");
        out.push_str(&inline(tag));
        out.push('\n');
        let mut parts = Vec::new();
        for (i, cell) in rest.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            let last = i + 1 == rest.len();
            match header.and_then(|h| h.get(i + 1)) {
                Some(h) if !last && !h.is_empty() => parts.push(format!("{h}: {cell}.")),
                _ => parts.push(cell.clone()),
            }
        }
        out.push_str(&inline(&parts.join(" ")));
        out.push('\n');
    }
}

/// Text for roff: backslashes doubled, a `.` or `'` at the start of a line kept from
/// reading as a request.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// A line of code, shown as it is.
fn literal(line: &str) -> String {
    escape(line).replace('-', "\\-")
}

/// The markdown marks of a heading removed: `code`, **bold**, [links](...).
fn strip_inline(text: &str) -> String {
    let mut out = String::new();
    for piece in spans(text) {
        match piece {
            Span::Text(t) | Span::Code(t) | Span::Bold(t) | Span::Italic(t) => out.push_str(&t),
        }
    }
    out
}

/// A paragraph's text with its code in bold and its emphasis in italics, for roff.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for piece in spans(text) {
        match piece {
            Span::Text(t) => out.push_str(&t.replace('\\', "\\e")),
            Span::Code(t) => {
                out.push_str("\\fB");
                out.push_str(&t.replace('\\', "\\e").replace('-', "\\-"));
                out.push_str("\\fR");
            }
            Span::Bold(t) => {
                out.push_str("\\fB");
                out.push_str(&t.replace('\\', "\\e"));
                out.push_str("\\fR");
            }
            Span::Italic(t) => {
                out.push_str("\\fI");
                out.push_str(&t.replace('\\', "\\e"));
                out.push_str("\\fR");
            }
        }
    }
    // A joined paragraph is one line: only its start can be read as a request.
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

#[derive(Debug, PartialEq)]
enum Span {
    Text(String),
    Code(String),
    Bold(String),
    Italic(String),
}

/// Splits inline markdown: `code`, **bold**, *italic*, [text](link) (the link's text
/// stays, its address goes: a man page cannot follow it).
fn spans(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    let push_plain = |out: &mut Vec<Span>, plain: &mut String| {
        if !plain.is_empty() {
            out.push(Span::Text(std::mem::take(plain)));
        }
    };
    while let Some(c) = rest.chars().next() {
        if c == '`'
            && let Some(end) = rest[1..].find('`')
        {
            push_plain(&mut out, &mut plain);
            out.push(Span::Code(rest[1..1 + end].to_string()));
            rest = &rest[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            push_plain(&mut out, &mut plain);
            out.push(Span::Bold(strip_inline(&after[..end])));
            rest = &after[end + 2..];
            continue;
        }
        if c == '*'
            && let Some(end) = rest[1..].find('*')
            && end > 0
            && !rest[1..].starts_with(' ')
        {
            push_plain(&mut out, &mut plain);
            out.push(Span::Italic(rest[1..1 + end].to_string()));
            rest = &rest[end + 2..];
            continue;
        }
        if c == '['
            && let Some(close) = rest.find(']')
            && rest[close..].starts_with("](")
            && let Some(end) = rest[close..].find(')')
        {
            let label = &rest[1..close];
            push_plain(&mut out, &mut plain);
            out.extend(spans(label));
            rest = &rest[close + end + 1..];
            continue;
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    push_plain(&mut out, &mut plain);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(md: &str) -> String {
        man_page("guardian.toml", 5, "the configuration", md)
    }

    #[test]
    fn headings_become_sections_and_the_title_goes() {
        let p = page(
            "# Configuration\n\nIntro.\n\n## guardian.toml\n\ntext\n\n### The [alert] table\n",
        );
        assert!(p.starts_with(".TH GUARDIAN.TOML 5 "), "{p}");
        assert!(
            p.contains(".SH NAME\nguardian.toml \\- the configuration\n"),
            "{p}"
        );
        assert!(!p.contains("Configuration\""), "{p}");
        assert!(p.contains(".SH DESCRIPTION\n.PP\nIntro.\n"), "{p}");
        assert!(p.contains(".SH \"GUARDIAN.TOML\"\n"), "{p}");
        assert!(p.contains(".SS \"The [alert] table\"\n"), "{p}");
    }

    #[test]
    fn code_blocks_are_kept_as_they_are() {
        let p = page("## A\n\n```toml\n.dot = \"a\\b\"\nkill-signal = 1\n```\nafter\n");
        assert!(
            p.contains(".nf\n\\&.dot = \"a\\eb\"\nkill\\-signal = 1\n.fi\n"),
            "{p}"
        );
        assert!(p.contains(".PP\nafter\n"), "{p}");
    }

    #[test]
    fn inline_marks() {
        assert_eq!(
            inline("see `log-dir` and **goal**, *so*, [cli.md](cli.md#x)."),
            "see \\fBlog\\-dir\\fR and \\fBgoal\\fR, \\fIso\\fR, cli.md."
        );
        assert_eq!(inline("the [alert] table, [a](b)"), "the [alert] table, a");
        // A lone star or backtick is text.
        assert_eq!(inline("a * b ` c"), "a * b ` c");
        assert_eq!(inline(".starts"), "\\&.starts");
    }

    #[test]
    fn tables_become_tagged_paragraphs() {
        let p = page(
            "## K\n\n| Key | Type | Meaning |\n|---|---|---|\n| `socket` | path | The `a|b` socket. |\n",
        );
        assert!(
            p.contains(".TP 4\n\\fBsocket\\fR\nType: path. The \\fBa|b\\fR socket.\n"),
            "{p}"
        );
        assert!(!p.contains("---"), "{p}");
    }

    #[test]
    fn lists_and_their_continuations() {
        let p = page("## L\n\n- one\n  more\n- two\n\n1. first\n2. second\n\nend\n");
        assert!(
            p.contains(".IP \\(bu 4\none more\n.IP \\(bu 4\ntwo\n"),
            "{p}"
        );
        assert!(p.contains(".IP 1. 4\nfirst\n.IP 2. 4\nsecond\n"), "{p}");
        assert!(p.contains(".PP\nend\n"), "{p}");
    }

    #[test]
    fn the_configuration_page_has_every_section() {
        let md = include_str!("../../docs/configuration.md");
        let p = page(md);
        for h in md.lines().filter(|l| l.starts_with("## ")) {
            let title = strip_inline(&h[3..]).to_uppercase().replace('"', "");
            assert!(p.contains(&format!(".SH \"{title}\"")), "{title}");
        }
        // Nothing of the markdown is left at the start of a line outside the code
        // blocks (.nf to .fi), where a TOML comment may start one with `#`.
        let mut code = false;
        for line in p.lines() {
            match line {
                ".nf" => code = true,
                ".fi" => code = false,
                _ => {}
            }
            assert!(!line.starts_with("```"), "{line}");
            if !code {
                assert!(!line.starts_with('|'), "{line}");
                assert!(!line.starts_with('#'), "{line}");
            }
        }
    }
}
