//! `start-on` / `stop-on` expressions, in Upstart's language:
//!
//! ```text
//! expr  := and ( "or" and )*
//! and   := atom ( "and" atom )*
//! atom  := "(" expr ")" | EVENT ARG* ( KEY=VALUE | KEY!=VALUE )*
//! ```
//!
//! `started redis` waits for the event `started` whose first variable (`JOB`) is `redis`.
//! Values may hold `*` and `?` wildcards.
//!
//! How an expression remembers what it has seen (its re-arming) is where this differs
//! from Upstart, whose `and` broke when a dependency restarted:
//!
//! - `started JOB` holds while JOB is up: it turns true when JOB emits `started` and false
//!   when JOB emits `stopping`. `stopped JOB` likewise holds until JOB emits `starting`.
//!   These are states, so `started a and started b` becomes true again when `a` restarts
//!   while `b` stays up.
//! - Every other event (`starting`, `stopping`, `startup`, `shutdown`, user events) is
//!   remembered once seen, and forgotten when the whole expression fires.

use std::fmt;

use super::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Atom(Atom),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub event: String,
    /// Positional values, matched against the event's variables in order.
    pub args: Vec<String>,
    /// `KEY=VALUE` (true) and `KEY!=VALUE` (false) matches.
    pub matches: Vec<(String, String, bool)>,
    /// Byte offset of the atom within the expression text.
    pub at: usize,
}

impl Atom {
    pub fn matches(&self, e: &Event) -> bool {
        if self.event != e.name {
            return false;
        }
        for (i, arg) in self.args.iter().enumerate() {
            match e.env.get(i) {
                Some((_, v)) if glob(arg, v) => {}
                _ => return false,
            }
        }
        self.matches.iter().all(|(k, v, eq)| match e.get(k) {
            Some(actual) => glob(v, actual) == *eq,
            None => !*eq,
        })
    }

    /// The job this atom watches, for `starting/started/stopping/stopped JOB`.
    pub fn job(&self) -> Option<&str> {
        if super::JOB_EVENTS.contains(&self.event.as_str()) {
            self.args.first().map(String::as_str).or_else(|| {
                self.matches
                    .iter()
                    .find(|(k, _, eq)| k == "JOB" && *eq)
                    .map(|(_, v, _)| v.as_str())
            })
        } else {
            None
        }
    }

    /// A state atom holds while its job stays where the event left it.
    fn is_state(&self) -> bool {
        matches!(self.event.as_str(), "started" | "stopped")
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.event)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        for (k, v, eq) in &self.matches {
            write!(f, " {k}{}{v}", if *eq { "=" } else { "!=" })?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Expr], word: &str| {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                match e {
                    Expr::Atom(_) => write!(f, "{e}")?,
                    _ => write!(f, "({e})")?,
                }
            }
            Ok(())
        };
        match self {
            Expr::Or(items) => join(f, items, "or"),
            Expr::And(items) => join(f, items, "and"),
            Expr::Atom(a) => write!(f, "{a}"),
        }
    }
}

impl Expr {
    pub fn atoms(&self) -> Vec<&Atom> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Atom>) {
        match self {
            Expr::Or(items) | Expr::And(items) => items.iter().for_each(|e| e.collect(out)),
            Expr::Atom(a) => out.push(a),
        }
    }
}

/// Where parsing failed: a byte offset into the text and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn lex(text: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push((i, Tok::Open));
            }
            ')' => {
                chars.next();
                out.push((i, Tok::Close));
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push((i, Tok::Word(word)));
            }
        }
    }
    out
}

/// Parentheses nest at most this deep, so that parsing (and everything that walks an
/// expression) stays well inside the stack whatever the text.
pub const MAX_DEPTH: usize = 32;

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Parentheses open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&(usize, Tok)> {
        self.toks.get(self.pos)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |(at, _)| *at)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some((_, Tok::Word(x))) if x == w)
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.atom()?];
        while self.is_word("and") {
            self.pos += 1;
            items.push(self.atom()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let at = self.here();
        match self.peek().cloned() {
            Some((_, Tok::Open)) => {
                if self.depth >= MAX_DEPTH {
                    return Err(ParseError {
                        at,
                        message: format!(
                            "parentheses nested more than {MAX_DEPTH} deep (the limit)"
                        ),
                    });
                }
                self.pos += 1;
                self.depth += 1;
                let e = self.expr()?;
                self.depth -= 1;
                match self.peek() {
                    Some((_, Tok::Close)) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    _ => Err(ParseError {
                        at: self.here(),
                        message: "expected `)`".into(),
                    }),
                }
            }
            Some((_, Tok::Close)) => Err(ParseError {
                at,
                message: "expected an event, found `)`".into(),
            }),
            None => Err(ParseError {
                at,
                message: "expected an event".into(),
            }),
            Some((_, Tok::Word(w))) if w == "and" || w == "or" => Err(ParseError {
                at,
                message: format!("expected an event, found `{w}`"),
            }),
            Some((_, Tok::Word(event))) => {
                if !valid_name(&event) {
                    return Err(ParseError {
                        at,
                        message: format!("`{event}` is not an event name"),
                    });
                }
                self.pos += 1;
                let mut atom = Atom {
                    event,
                    args: Vec::new(),
                    matches: Vec::new(),
                    at,
                };
                while let Some((wat, Tok::Word(w))) = self.peek().cloned() {
                    if w == "and" || w == "or" {
                        break;
                    }
                    self.pos += 1;
                    if let Some((k, v)) = w.split_once("!=") {
                        atom.matches.push((key(k, wat)?, v.to_string(), false));
                    } else if let Some((k, v)) = w.split_once('=') {
                        atom.matches.push((key(k, wat)?, v.to_string(), true));
                    } else if atom.matches.is_empty() {
                        if super::JOB_EVENTS.contains(&atom.event.as_str()) && !atom.args.is_empty()
                        {
                            return Err(ParseError {
                                at: wat,
                                message: format!(
                                    "`{}` takes one job name; `and` or `or` missing before `{w}`?",
                                    atom.event
                                ),
                            });
                        }
                        atom.args.push(w);
                    } else {
                        return Err(ParseError {
                            at: wat,
                            message: format!(
                                "`{w}`: a positional value must come before KEY=VALUE matches"
                            ),
                        });
                    }
                }
                Ok(Expr::Atom(atom))
            }
        }
    }
}

fn key(k: &str, at: usize) -> Result<String, ParseError> {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(k.to_string())
    } else {
        Err(ParseError {
            at,
            message: format!("`{k}` is not a variable name"),
        })
    }
}

fn valid_name(w: &str) -> bool {
    w.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
}

pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: lex(text),
        pos: 0,
        end: text.len(),
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some((at, Tok::Close)) => Err(ParseError {
            at: *at,
            message: "unmatched `)`".into(),
        }),
        Some((at, Tok::Word(w))) => Err(ParseError {
            at: *at,
            message: format!("expected `and` or `or`, found `{w}`"),
        }),
        Some((at, Tok::Open)) => Err(ParseError {
            at: *at,
            message: "expected `and` or `or`, found `(`".into(),
        }),
    }
}

/// `*` matches any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// An expression with what it has seen so far.
#[derive(Debug, Clone)]
pub struct Watch {
    pub expr: Expr,
    /// The expression's atoms in order, kept flat: every event goes past every watch.
    atoms: Vec<Atom>,
    seen: Vec<bool>,
}

impl Watch {
    pub fn new(expr: Expr) -> Self {
        let atoms: Vec<Atom> = expr.atoms().into_iter().cloned().collect();
        Watch {
            seen: vec![false; atoms.len()],
            atoms,
            expr,
        }
    }

    /// Takes in one event; true when the expression fires because of it.
    pub fn feed(&mut self, e: &Event) -> bool {
        let mut touched = false;
        let job = e.job();
        for (i, atom) in self.atoms.iter().enumerate() {
            if atom.matches(e) {
                self.seen[i] = true;
                touched = true;
            } else if atom.is_state()
                && job.is_some()
                && atom.job().is_some_and(|j| glob(j, job.unwrap_or_default()))
            {
                // The job moved on: `started J` no longer holds once J is stopping,
                // nor `stopped J` once J is starting.
                let undo = match atom.event.as_str() {
                    "started" => e.name == "stopping" || e.name == "stopped",
                    _ => e.name == "starting" || e.name == "started",
                };
                if undo {
                    self.seen[i] = false;
                }
            }
        }
        if !touched {
            return false;
        }
        let mut idx = 0;
        let fired = eval(&self.expr, &self.seen, &mut idx);
        if fired {
            // Forget the one-off events; states hold as long as they are true.
            for (i, atom) in self.atoms.iter().enumerate() {
                if !atom.is_state() {
                    self.seen[i] = false;
                }
            }
        }
        fired
    }

    /// Whether the expression holds with what it has seen, without a new event.
    pub fn holds(&self) -> bool {
        let mut idx = 0;
        eval(&self.expr, &self.seen, &mut idx)
    }

    /// Marks `started JOB` / `stopped JOB` atoms from the jobs' current states, for a
    /// watch set up after those events went by (at start-up or on reload).
    pub fn assume(&mut self, is_up: impl Fn(&str) -> Option<bool>) {
        for (i, atom) in self.atoms.iter().enumerate() {
            if let Some(job) = atom.job()
                && atom.is_state()
                && atom.args.len() <= 1
                && atom.matches.is_empty()
                && let Some(up) = is_up(job)
            {
                self.seen[i] = if atom.event == "started" { up } else { !up };
            }
        }
    }
}

fn eval(e: &Expr, seen: &[bool], idx: &mut usize) -> bool {
    match e {
        Expr::Atom(_) => {
            let v = seen[*idx];
            *idx += 1;
            v
        }
        Expr::And(items) => {
            let mut all = true;
            for i in items {
                all &= eval(i, seen, idx);
            }
            all
        }
        Expr::Or(items) => {
            let mut any = false;
            for i in items {
                any |= eval(i, seen, idx);
            }
            any
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, job: &str) -> Event {
        Event::new(name).with("JOB", job)
    }

    #[test]
    fn parses_and_prints() {
        let e = parse("started redis and (started a or stopped web RESULT=failed)").expect("parse");
        assert_eq!(
            e.to_string(),
            "started redis and (started a or stopped web RESULT=failed)"
        );
        assert_eq!(e.atoms().len(), 3);
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = parse("started redis and").expect_err("incomplete");
        assert_eq!(err.at, 17);
        let err = parse("started a or (started b").expect_err("unclosed");
        assert_eq!(err.message, "expected `)`");
        let err = parse("started a started b").expect_err("no operator");
        assert_eq!(err.at, 10);
        assert!(err.message.contains("`and` or `or` missing"), "{err:?}");
        let err = parse("started a KEY=1 b").expect_err("order");
        assert_eq!(err.at, 16);
        let err = parse("started a)").expect_err("unmatched");
        assert_eq!(err.at, 9);
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(8000), ")".repeat(8000));
        let err = parse(&deep).expect_err("too deep");
        assert_eq!(err.at, MAX_DEPTH);
        assert!(err.message.contains("32"), "{err:?}");
    }

    #[test]
    fn matching_with_values_and_globs() {
        let e = parse("stopped web RESULT=failed").expect("parse");
        let a = e.atoms()[0].clone();
        assert!(a.matches(&job("stopped", "web").with("RESULT", "failed")));
        assert!(!a.matches(&job("stopped", "web").with("RESULT", "ok")));
        assert!(!a.matches(&job("stopped", "api").with("RESULT", "failed")));
        let g = parse("deploy-done APP=web-* ENV!=staging").expect("parse");
        let g = g.atoms()[0].clone();
        assert!(
            g.matches(
                &Event::new("deploy-done")
                    .with("APP", "web-1")
                    .with("ENV", "prod")
            )
        );
        assert!(
            !g.matches(
                &Event::new("deploy-done")
                    .with("APP", "web-1")
                    .with("ENV", "staging")
            )
        );
        assert!(glob("a*c", "abbbc") && glob("?b", "ab") && !glob("a*d", "abc"));
    }

    #[test]
    fn and_rearms_when_a_dependency_restarts() {
        let mut w = Watch::new(parse("started a and started b").expect("parse"));
        assert!(!w.feed(&job("started", "a")));
        assert!(w.feed(&job("started", "b")));
        // a restarts while b stays up: the expression fires again when a is back.
        assert!(!w.feed(&job("stopping", "a")));
        assert!(!w.feed(&job("stopped", "a")));
        assert!(!w.feed(&job("starting", "a")));
        assert!(w.feed(&job("started", "a")));
    }

    #[test]
    fn one_off_events_are_forgotten_when_fired() {
        let mut w = Watch::new(parse("deploy and started db").expect("parse"));
        assert!(!w.feed(&job("started", "db")));
        assert!(w.feed(&Event::new("deploy")));
        // Another restart of db alone does not fire: the deploy was used up.
        w.feed(&job("stopping", "db"));
        assert!(!w.feed(&job("started", "db")));
        assert!(w.feed(&Event::new("deploy")));
    }

    #[test]
    fn or_fires_on_either() {
        let mut w = Watch::new(parse("stopping a or stopping b").expect("parse"));
        assert!(w.feed(&job("stopping", "b")));
        assert!(w.feed(&job("stopping", "a")));
        assert!(!w.feed(&job("stopped", "a")));
    }

    #[test]
    fn assume_reads_current_states() {
        let mut w = Watch::new(parse("started a and started b").expect("parse"));
        w.assume(|j| Some(j == "a"));
        assert!(!w.holds());
        assert!(w.feed(&job("started", "b")));
        assert!(w.holds(), "states stay true after firing");
    }
}
