//! Who may use the HTTP interface: users with argon2 password hashes (`users-file`,
//! written by `guardian passwd`) and API tokens (`tokens-file`), each with a role.
//!
//! The users file has one user a line, `NAME:ROLE:PHC`, where PHC is an argon2 hash in
//! its PHC string form (`$argon2id$v=19$m=19456,t=2,p=1$...`). The tokens file has one
//! token a line, `ROLE TOKEN`. In both, empty lines and lines starting with `#` are
//! skipped, and ROLE is `admin` or `read-only`.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use subtle::ConstantTimeEq;

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: read and act.
    Admin,
    /// Read only: every action is refused with 403.
    ReadOnly,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "read-only" => Some(Role::ReadOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// The shortest token the tokens file takes.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest user name.
pub const MAX_USER_LEN: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct Users {
    entries: Vec<User>,
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    role: Role,
    hash: String,
}

/// Whether `name` may be a user's name: 1 to 64 bytes without `:`, spaces or controls.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_LEN
        && !name
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i.saturating_add(1), l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, String> {
        Users::parse(&read_text(path)?).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses a users file; an error names the line (`LINE: what`).
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut entries: Vec<User> = Vec::new();
        for (n, line) in content_lines(text) {
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("{n}: a user's line is NAME:ROLE:HASH"));
            };
            if !valid_user_name(name) {
                return Err(format!("{n}: `{name}` is not a user name"));
            }
            let Some(role) = Role::parse(role) else {
                return Err(format!(
                    "{n}: the role is `admin` or `read-only`, not `{role}`"
                ));
            };
            match PasswordHash::new(hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
                Ok(h) => {
                    return Err(format!(
                        "{n}: the hash is {}, not argon2",
                        h.algorithm.as_str()
                    ));
                }
                Err(e) => return Err(format!("{n}: not a PHC password hash: {e}")),
            }
            if entries.iter().any(|u| u.name == name) {
                return Err(format!("{n}: `{name}` is there twice"));
            }
            entries.push(User {
                name: name.to_string(),
                role,
                hash: hash.to_string(),
            });
        }
        Ok(Users { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of the user of that name, if there is one now (a session's user may
    /// have been removed or given another role since they logged in).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.entries.iter().find(|u| u.name == name).map(|u| u.role)
    }

    /// The user's role if the password is right. Slow on purpose (argon2): call it
    /// on a blocking thread. An unknown user costs the same as a wrong password.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let user = self.entries.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY_HASH, |u| u.hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        user.filter(|_| ok).map(|u| u.role)
    }
}

/// The hash of a password nobody has, verified for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0bMGv3a8S8kJ5iC4z2LcqkZFh0wNQm0l9yYb3a2E2rE";

/// A PHC string for `password` with a fresh salt and argon2's default parameters.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub(crate) fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))
}

/// Puts `name` with `role` and `hash` into a users file's text: its line is replaced
/// where it was, or added at the end. Other lines stay as they were.
pub fn set_user(text: &str, name: &str, role: Role, hash: &str) -> String {
    let entry = format!("{name}:{}:{hash}", role.as_str());
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        let is_it = line.trim().split(':').next() == Some(name) && !line.trim().starts_with('#');
        if is_it && !found {
            out.push_str(&entry);
            found = true;
        } else if !is_it {
            out.push_str(line);
        } else {
            continue;
        }
        out.push('\n');
    }
    if !found {
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(Role, Vec<u8>)>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        Tokens::parse(&read_text(path)?).map_err(|e| format!("{}:{e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (n, line) in content_lines(text) {
            let mut parts = line.split_whitespace();
            let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("{n}: a token's line is ROLE TOKEN"));
            };
            let Some(role) = Role::parse(role) else {
                return Err(format!(
                    "{n}: the role is `admin` or `read-only`, not `{role}`"
                ));
            };
            if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!(
                    "{n}: a token is at least {MIN_TOKEN_LEN} printable characters (such as `openssl rand -hex 32`)"
                ));
            }
            entries.push((role, token.as_bytes().to_vec()));
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token's role. Every token is compared, each in constant time, so that the
    /// time taken says nothing about how close a guess came.
    pub fn verify(&self, token: &str) -> Option<Role> {
        let mut found = None;
        for (role, t) in &self.entries {
            if bool::from(t.as_slice().ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(*role);
            }
        }
        found
    }
}

/// What a request's `Authorization` header offers.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    Basic { user: String, password: String },
    Bearer(String),
}

/// Reads an `Authorization` header: `Basic BASE64(user:password)` or `Bearer TOKEN`.
pub fn offered(header: &str) -> Option<Offered> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Offered::Bearer(rest.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    use base64ct::Encoding;
    let bytes = base64ct::Base64::decode_vec(rest).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Offered::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip_and_verify() {
        let hash = hash_password("s3cret").unwrap_or_default();
        let text = set_user("# users\n", "ann", Role::Admin, &hash);
        let text = set_user(&text, "bob", Role::ReadOnly, &hash);
        let users = Users::parse(&text).unwrap_or_default();
        assert_eq!(users.verify("ann", "s3cret"), Some(Role::Admin));
        assert_eq!(users.verify("bob", "s3cret"), Some(Role::ReadOnly));
        assert_eq!(users.verify("ann", "wrong"), None);
        assert_eq!(users.verify("nobody", "s3cret"), None);
        // Replacing keeps one line per user and the comment.
        let again = set_user(&text, "ann", Role::ReadOnly, &hash);
        assert_eq!(again.lines().count(), 3);
        assert!(again.starts_with("# users\n"));
        assert_eq!(
            Users::parse(&again)
                .unwrap_or_default()
                .verify("ann", "s3cret"),
            Some(Role::ReadOnly)
        );
    }

    #[test]
    fn bad_users_files_say_the_line() {
        let e = Users::parse("\nann:root:$argon2id$x")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("2: the role"), "{e}");
        let e = Users::parse("ann:admin:plain").err().unwrap_or_default();
        assert!(e.starts_with("1: not a PHC"), "{e}");
        let e = Users::parse("ann").err().unwrap_or_default();
        assert!(e.contains("NAME:ROLE:HASH"), "{e}");
    }

    #[test]
    fn tokens() {
        let t = Tokens::parse("admin 0123456789abcdef0123\nread-only fedcba9876543210fedc\n")
            .unwrap_or_default();
        assert_eq!(t.verify("0123456789abcdef0123"), Some(Role::Admin));
        assert_eq!(t.verify("fedcba9876543210fedc"), Some(Role::ReadOnly));
        assert_eq!(t.verify("0123456789abcdef012"), None);
        assert!(Tokens::parse("admin short").is_err());
        assert!(Tokens::parse("root 0123456789abcdef0123").is_err());
    }

    #[test]
    fn authorization_headers() {
        assert_eq!(
            offered("Basic YW5uOnMzY3JldA=="),
            Some(Offered::Basic {
                user: "ann".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(offered("Bearer abc"), Some(Offered::Bearer("abc".into())));
        assert_eq!(offered("Basic !!!"), None);
        assert_eq!(offered("Digest x"), None);
    }
}
