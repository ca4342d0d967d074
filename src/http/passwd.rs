//! `guardian passwd USER [--role read-only] [--file F]`: writes a user's argon2 hash
//! into the users file of the HTTP interface (mode 0600, replaced in one rename).

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::auth::{Role, hash_password, set_user, valid_user_name};
use crate::cli::Exit;

/// The users file `[http] users-file` of guardian.toml names, relative to `dir`.
fn configured_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let toml_path = dir.join("guardian.toml");
    let text = std::fs::read_to_string(&toml_path)
        .with_context(|| format!("cannot read {} (or give --file)", toml_path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not valid TOML (`guardian check` says where)",
            toml_path.display()
        )
    })?;
    let Some(file) = table
        .get("http")
        .and_then(|h| h.get("users-file"))
        .and_then(|f| f.as_str())
    else {
        bail!(
            "{} has no [http] users-file: give the file with --file",
            toml_path.display()
        );
    };
    Ok(dir.join(file))
}

/// Reads the password: twice without echo from a terminal, else stdin's first line.
fn read_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn echo off")?;
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    };
    let first = ask(&format!("Password for {user}: "));
    let second = ask("Again: ");
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let (first, second) = (first?, second?);
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

pub fn run(dir: &Path, user: &str, role: &str, file: Option<&Path>) -> anyhow::Result<Exit> {
    if !valid_user_name(user) {
        bail!(
            "`{user}` is not a user name: 1 to 64 characters without `:`, spaces or control characters"
        );
    }
    let Some(role) = Role::parse(role) else {
        bail!("the role is `admin` or `read-only`, not `{role}`");
    };
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => configured_file(dir)?,
    };
    let password = read_password(user)?;
    if password.is_empty() {
        bail!("an empty password is not taken; nothing was changed");
    }
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // What is there must parse, so that a mistake in it is not carried along unseen.
    super::auth::Users::parse(&old)
        .map_err(|e| anyhow::anyhow!("{}:{e}; fix it first", path.display()))?;
    let hash = hash_password(&password).map_err(anyhow::Error::msg)?;
    let text = set_user(&old, user, role, &hash);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    println!(
        "guardian: {}: {user} ({}) set; a running daemon reads it on SIGHUP (guardian reload)",
        path.display(),
        role.as_str()
    );
    Ok(Exit::Ok)
}
