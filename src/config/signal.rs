//! Signal names as operators write them: `TERM`, `SIGTERM`, `term` or `15`.

use nix::sys::signal::Signal;

pub fn parse(text: &str) -> Option<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = text.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

/// `TERM` for `SIGTERM`: the spelling used in configuration and output.
pub fn name(sig: Signal) -> &'static str {
    let s = sig.as_str();
    s.strip_prefix("SIG").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(parse("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse("sigkill"), Some(Signal::SIGKILL));
        assert_eq!(parse("1"), Some(Signal::SIGHUP));
        assert_eq!(parse("NOPE"), None);
        assert_eq!(name(Signal::SIGUSR2), "USR2");
    }
}
