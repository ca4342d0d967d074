//! `instances = N`: one job file run as N jobs, `NAME@0` to `NAME@N-1`, each a job of
//! its own. Each instance reads the file with `$INSTANCE` (or `${INSTANCE}`) replaced
//! by its number in every string, `$((EXPR))` by the value of a small arithmetic
//! expression (`$((8000 + INSTANCE))`), and, where a key takes an integer, a string that
//! is such an expression (`port = "8000 + $INSTANCE"`) by its value.
//!
//! Which jobs a name stands for (`web` for every instance of `web`, `web@2` for one) is
//! [`members`]: the one place where a name a person types becomes jobs.

use std::borrow::Cow;

use toml::de::{DeTable, DeValue};

use super::job::JobSpec;
use super::limits;
use super::reader::{Reader, Value};

/// The most instances one job file may run.
pub const MAX_INSTANCES: u32 = 256;

/// Which instance of which job file a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The job file's stem: `web` for `web@2`.
    pub base: String,
    pub number: u32,
}

/// The name of instance `number` of the job file `base`.
pub fn name(base: &str, number: u32) -> String {
    format!("{base}@{number}")
}

/// The jobs that `target` names among `jobs` (each job's name and spec): the job of
/// that name, or else every instance of the job file of that name, in instance order.
/// Empty when it names none.
pub fn members<'a, I>(target: &str, jobs: I) -> Vec<String>
where
    I: IntoIterator<Item = (&'a String, &'a JobSpec)>,
{
    let mut exact = None;
    let mut of_set: Vec<(u32, &String)> = Vec::new();
    for (name, spec) in jobs {
        if name == target {
            exact = Some(name.clone());
        } else if let Some(i) = &spec.instance
            && i.base == target
        {
            of_set.push((i.number, name));
        }
    }
    if let Some(e) = exact {
        return vec![e];
    }
    of_set.sort();
    of_set.into_iter().map(|(_, n)| n.clone()).collect()
}

/// For the name of a job file with `instances`: each instance has a configuration of
/// its own (its `$INSTANCE` replaced), so one of them is to be named.
pub fn hint(job: &str, names: &[String]) -> Option<String> {
    let (first, last) = (names.first()?, names.last()?);
    Some(format!(
        "no job named `{job}`: it is a job file with `instances`, whose jobs each have their own configuration: name one, `{first}` to `{last}`"
    ))
}

/// Makes `spec` instance `number` of `base`: marked so, and with `INSTANCE` and
/// `GUARDIAN_INSTANCE` in its environment (an `INSTANCE` of the file's own is kept).
pub fn mark(spec: &mut JobSpec, base: &str, number: u32) {
    spec.instance = Some(Box::new(Instance {
        base: base.to_string(),
        number,
    }));
    spec.env
        .entry("INSTANCE".into())
        .or_insert_with(|| number.to_string());
    spec.env
        .insert("GUARDIAN_INSTANCE".into(), number.to_string());
}

/// The value of `instances` in a job file's table, if it sets one; a wrong one is an
/// error in `r` and reads as 1.
pub fn count(r: &mut Reader<'_>, name: &str, table: &DeTable<'_>) -> Option<u32> {
    let v = table.get("instances")?;
    let n = r.integer("instances", v)?;
    let Ok(n) = u32::try_from(n) else {
        r.error(
            v.span(),
            format!("`instances` must be 1 to {MAX_INSTANCES}"),
            None,
        );
        return Some(1);
    };
    if n == 0 || n > MAX_INSTANCES {
        r.error(
            v.span(),
            format!("`instances` must be 1 to {MAX_INSTANCES}"),
            None,
        );
        return Some(1);
    }
    if name.contains('@') {
        r.error(
            v.span(),
            format!("`{name}` has `@` in its name, which would be read as an instance's: a job file with `instances` is named without it"),
            None,
        );
        return Some(1);
    }
    let longest = name.len() + 1 + (n - 1).to_string().len();
    if longest > limits::MAX_NAME {
        r.error(
            v.span(),
            format!(
                "instance names such as `{}` would be longer than the limit of {} for a job name",
                self::name(name, n - 1),
                limits::MAX_NAME
            ),
            Some("shorten the file's name".into()),
        );
        return Some(1);
    }
    Some(n)
}

/// `table` as instance `number` reads it: every string with its `$INSTANCE` forms
/// replaced. A malformed `$((...))` is an error in `r`.
pub fn substitute<'i>(r: &mut Reader<'_>, table: &DeTable<'i>, number: u32) -> DeTable<'i> {
    let mut t = table.clone();
    for (_, v) in t.iter_mut() {
        value(r, v, number);
    }
    t
}

fn value(r: &mut Reader<'_>, v: &mut Value<'_>, number: u32) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => match expand(s, number) {
            Ok(Some(new)) => *s = Cow::Owned(new),
            Ok(None) => {}
            Err(e) => r.error(span, e, Some(HINT.into())),
        },
        DeValue::Array(a) => {
            for e in a.iter_mut() {
                value(r, e, number);
            }
        }
        DeValue::Table(t) => {
            for (_, e) in t.iter_mut() {
                value(r, e, number);
            }
        }
        _ => {}
    }
}

const HINT: &str = "write `$INSTANCE`, `${INSTANCE}` or `$((8000 + INSTANCE))` (integers, INSTANCE, + - * and parentheses)";

/// `s` with `$INSTANCE`, `${INSTANCE}` and `$((EXPR))` replaced, or None if it holds
/// none of them. `$INSTANCE` followed by a letter, digit or `_` is another variable's
/// name, as in a shell, and is left alone.
pub fn expand(s: &str, number: u32) -> Result<Option<String>, String> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix("((") {
            let Some(end) = closing(inner) else {
                return Err(format!("`$((` without its `))` in `{s}`"));
            };
            let n = eval(&inner[..end], number)?;
            out.push_str(&n.to_string());
            rest = &inner[end + 2..];
            changed = true;
        } else if let Some(r) = after.strip_prefix("{INSTANCE}") {
            out.push_str(&number.to_string());
            rest = r;
            changed = true;
        } else if let Some(r) = after.strip_prefix("INSTANCE")
            && !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push_str(&number.to_string());
            rest = r;
            changed = true;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

/// Where the `))` that closes an expression begins in `s` (which follows its `$((`).
fn closing(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' if depth == 0 => return (b.get(i + 1) == Some(&b')')).then_some(i),
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of `expr`: integers, `INSTANCE` (or `$INSTANCE`, already replaced),
/// `+`, `-`, `*` and parentheses, in i64 without overflow.
pub fn eval(expr: &str, number: u32) -> Result<i64, String> {
    let tokens = tokens(expr, number)?;
    let mut p = Parser { t: &tokens, i: 0 };
    let v = p.sum(0).map_err(|e| format!("`{}`: {e}", expr.trim()))?;
    if p.i != tokens.len() {
        return Err(format!("`{}` is not an expression", expr.trim()));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(i64),
    Op(u8),
}

fn tokens(expr: &str, number: u32) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = expr[start..i]
                .parse::<i64>()
                .map_err(|_| format!("`{}` is out of range", &expr[start..i]))?;
            out.push(Tok::Num(n));
        } else if matches!(c, b'+' | b'-' | b'*' | b'(' | b')') {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            let word = expr[i..]
                .strip_prefix("${INSTANCE}")
                .map(|r| (r, 11))
                .or_else(|| expr[i..].strip_prefix("$INSTANCE").map(|r| (r, 9)))
                .or_else(|| expr[i..].strip_prefix("INSTANCE").map(|r| (r, 8)));
            match word {
                Some((r, len))
                    if !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    out.push(Tok::Num(i64::from(number)));
                    i += len;
                }
                _ => {
                    let shown: String = expr[i..].chars().take(12).collect();
                    return Err(format!(
                        "`{}` is not an expression: `{shown}` is neither a number nor INSTANCE",
                        expr.trim()
                    ));
                }
            }
        }
    }
    Ok(out)
}

struct Parser<'t> {
    t: &'t [Tok],
    i: usize,
}

impl Parser<'_> {
    fn sum(&mut self, depth: usize) -> Result<i64, String> {
        let mut v = self.product(depth)?;
        while let Some(Tok::Op(op @ (b'+' | b'-'))) = self.t.get(self.i).copied() {
            self.i += 1;
            let rhs = self.product(depth)?;
            v = if op == b'+' {
                v.checked_add(rhs)
            } else {
                v.checked_sub(rhs)
            }
            .ok_or("overflows")?;
        }
        Ok(v)
    }

    fn product(&mut self, depth: usize) -> Result<i64, String> {
        let mut v = self.atom(depth)?;
        while let Some(Tok::Op(b'*')) = self.t.get(self.i).copied() {
            self.i += 1;
            let rhs = self.atom(depth)?;
            v = v.checked_mul(rhs).ok_or("overflows")?;
        }
        Ok(v)
    }

    fn atom(&mut self, depth: usize) -> Result<i64, String> {
        if depth > limits::MAX_EXPR_DEPTH {
            return Err("is nested too deeply".into());
        }
        let t = self.t.get(self.i).copied();
        self.i += 1;
        match t {
            Some(Tok::Num(n)) => Ok(n),
            Some(Tok::Op(b'-')) => self
                .atom(depth + 1)?
                .checked_neg()
                .ok_or_else(|| "overflows".into()),
            Some(Tok::Op(b'(')) => {
                let v = self.sum(depth + 1)?;
                if self.t.get(self.i) != Some(&Tok::Op(b')')) {
                    return Err("a `(` is not closed".into());
                }
                self.i += 1;
                Ok(v)
            }
            _ => Err("is not a complete expression".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_instance() {
        let e = |s: &str| expand(s, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e("no dollar"), None);
        assert_eq!(e("$HOME"), None);
        assert_eq!(e("web-$INSTANCE.sock").as_deref(), Some("web-2.sock"));
        assert_eq!(e("web${INSTANCE}x").as_deref(), Some("web2x"));
        assert_eq!(e("$INSTANCES $INSTANCE_X"), None);
        assert_eq!(
            e("http://127.0.0.1:$((8000 + INSTANCE))/").as_deref(),
            Some("http://127.0.0.1:8002/")
        );
        assert_eq!(e("$(( ($INSTANCE + 1) * 10 ))").as_deref(), Some("30"));
        assert_eq!(e("echo $$ $1").as_deref(), None);
    }

    #[test]
    fn expressions() {
        assert_eq!(eval("8000 + $INSTANCE", 3), Ok(8003));
        assert_eq!(eval("8000+INSTANCE*2", 3), Ok(8006));
        assert_eq!(eval("-1 + 2", 0), Ok(1));
        assert_eq!(eval("42", 0), Ok(42));
        assert!(eval("8000 + PORT", 0).is_err());
        assert!(eval("8000 +", 0).is_err());
        assert!(eval("(1 + 2", 0).is_err());
        assert!(eval("9223372036854775807 + 1", 0).is_err());
        assert!(eval("99999999999999999999", 0).is_err());
        assert!(expand("$((1 + 2)", 0).is_err());
        let deep = format!("$(({}1{}))", "(".repeat(500), ")".repeat(500));
        assert!(expand(&deep, 0).is_err());
    }
}
