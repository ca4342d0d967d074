//! Reading the files of a configuration without trusting them: only regular files (a
//! FIFO, a device, a directory or a socket is refused before it is read, and the file is
//! opened with `O_NONBLOCK` and judged again by `fstat` on the opened descriptor, so that
//! nothing swapped in between can block), at most [`MAX_FILE_BYTES`] of them, UTF-8, and,
//! for what guardian runs as root on the strength of, owned by root or guardian's own
//! user and writable by nobody else (as Monit demands of its control file).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::diag::Diagnostic;

/// The largest configuration file (`guardian.toml`, a job file, a `password-file`).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Whose writing a file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A file that says what guardian runs (as root, often): it must be owned by root or
    /// by the daemon's own user and writable by no one else.
    Config,
    /// A file that any job's user may write (a pid file): only its type and size count.
    Any,
}

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub hint: Option<String>,
    /// The file does not exist (for files that are optional).
    pub not_found: bool,
    /// The system refused (the file is missing, not readable...), rather than guardian.
    io: bool,
}

impl Refused {
    fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Refused {
            message: message.into(),
            hint,
            not_found: false,
            io: false,
        }
    }

    fn io(e: &std::io::Error) -> Self {
        Refused {
            message: e.to_string(),
            hint: None,
            not_found: e.kind() == std::io::ErrorKind::NotFound,
            io: true,
        }
    }

    /// As a diagnostic about the whole of `file`.
    pub fn about(self, file: &Path) -> Diagnostic {
        let message = if self.io {
            format!("cannot read: {}", self.message)
        } else {
            self.message
        };
        Diagnostic::file(file, message).with_hint(self.hint)
    }

    /// As a sentence that names `file`: "cannot read F: ...", "F is a FIFO, ...".
    pub fn naming(&self, file: &Path) -> String {
        if self.io {
            format!("cannot read {}: {}", file.display(), self.message)
        } else {
            format!("{} {}", file.display(), self.message)
        }
    }
}

/// What kind of file this is, in words, when it is not a regular file.
fn odd_kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

fn not_regular(kind: &str) -> Refused {
    Refused::new(
        format!("is {kind}, not a regular file"),
        Some("configuration files are plain files (a symbolic link to one is fine)".into()),
    )
}

/// Reads `path` (following a symbolic link: the target is what is judged), refusing
/// anything but a regular file of at most `cap` bytes that `trust` accepts.
pub fn read(path: &Path, trust: Trust, cap: u64) -> Result<Vec<u8>, Refused> {
    // Judged before it is opened, so that a device is never opened at all...
    let meta = std::fs::metadata(path).map_err(|e| Refused::io(&e))?;
    if let Some(kind) = odd_kind(&meta) {
        return Err(not_regular(kind));
    }
    if trust == Trust::Config {
        judge(path, &meta)?;
    }
    // ...and again once it is, on the descriptor, in case it was swapped meanwhile.
    // O_NONBLOCK: a FIFO put there in between opens at once instead of waiting for a
    // writer, and is then refused.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Refused::io(&e))?;
    let meta = file.metadata().map_err(|e| Refused::io(&e))?;
    if let Some(kind) = odd_kind(&meta) {
        return Err(not_regular(kind));
    }
    if trust == Trust::Config {
        judge(path, &meta)?;
    }
    let too_big = || {
        Refused::new(
            format!("is larger than the limit of {} bytes", cap),
            Some("a configuration file is at most 1 MiB".into()),
        )
    };
    if meta.len() > cap {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // One byte more than the cap tells a file that grew since fstat.
    File::take(file, cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Refused::io(&e))?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The name of a user id, for messages.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Whether guardian may take `path` (a file or a directory of the configuration) as
/// written by someone it trusts: owned by root or by the daemon's own user, and not
/// writable by group or others.
pub fn judge(path: &Path, meta: &Metadata) -> Result<(), Refused> {
    let me = nix::unistd::geteuid().as_raw();
    let uid = meta.uid();
    let mode = meta.mode() & 0o7777;
    let owner = user_name(uid);
    // A symbolic link is judged by its target: say which file that is, and fix that.
    let target = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .and_then(|_| std::fs::canonicalize(path).ok());
    let (subject, fixed) = match &target {
        Some(t) => (format!("links to {}, which ", t.display()), t.as_path()),
        None => (String::new(), path),
    };
    let shown = fixed.display();
    if uid != 0 && uid != me {
        let fix = if me == 0 {
            format!("chown root {shown}")
        } else {
            format!("chown {} {shown}", user_name(me))
        };
        return Err(Refused::new(
            format!(
                "{subject}is owned by {owner} (mode {mode:04o}), not by root or by the user guardian runs as ({}): whoever owns it could make guardian run anything",
                user_name(me)
            ),
            Some(format!("if its contents are right, `{fix}`")),
        ));
    }
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(Refused::new(
            format!(
                "{subject}is writable by {who} (mode {mode:04o}, owner {owner}): whoever can write it could make guardian run anything"
            ),
            Some(format!(
                "`chmod go-w {shown}`; a checkout made under umask 002 is group-writable throughout: `chmod -R go-w` on the configuration directory fixes it"
            )),
        ));
    }
    Ok(())
}

/// Checks a directory of the configuration (the directory itself, `jobs/`): a
/// directory, owned and writable as [`judge`] wants.
pub fn check_dir(path: &Path) -> Result<(), Refused> {
    let meta = std::fs::metadata(path).map_err(|e| Refused::io(&e))?;
    if !meta.is_dir() {
        return Err(Refused::new(
            "is not a directory (give the configuration directory with -c DIR)",
            None,
        ));
    }
    judge(path, &meta)
}

/// The text of a file's bytes, or where its first byte that is not UTF-8 stands.
pub fn text<'a>(file: &Path, bytes: &'a [u8]) -> Result<&'a str, Box<Diagnostic>> {
    match std::str::from_utf8(bytes) {
        Ok(t) => Ok(t),
        Err(e) => {
            let good = e.valid_up_to();
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
            let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
            let line = prefix.matches('\n').count() + 1;
            let col = prefix[line_start..].chars().count() + 1;
            let rest = &bytes[good..];
            let line_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            let mut d = Diagnostic::at_line_col(
                file,
                line,
                col,
                format!(
                    "is not UTF-8: byte 0x{:02x} cannot start a character here",
                    bytes.get(good).copied().unwrap_or(0)
                ),
            )
            .with_hint(Some(
                "configuration files are UTF-8 text; convert with iconv -t UTF-8".into(),
            ));
            let shown = format!(
                "{}{}",
                &prefix[line_start..],
                String::from_utf8_lossy(&rest[..line_end])
            );
            let skip = (col - 1).saturating_sub(40);
            d.source_line = Some(shown.chars().skip(skip).take(120).collect());
            d.caret = col - 1 - skip;
            d.width = 1;
            Err(Box::new(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bad_byte_has_a_line_and_column() {
        let bytes = b"a = 1\nb = \"\xc3\xa9\xff\"\n";
        let d = text(Path::new("x.toml"), bytes).expect_err("not UTF-8");
        assert_eq!((d.line, d.col), (2, 7));
        assert!(d.message.contains("0xff"), "{}", d.message);
        assert!(text(Path::new("x.toml"), "é".as_bytes()).is_ok());
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("f.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let e = read(&fifo, Trust::Any, MAX_FILE_BYTES).expect_err("a FIFO");
        assert!(e.message.contains("FIFO"), "{e:?}");
        let e = read(Path::new("/dev/zero"), Trust::Any, MAX_FILE_BYTES).expect_err("a device");
        assert!(e.message.contains("character device"), "{e:?}");
        let e = read(dir.path(), Trust::Any, MAX_FILE_BYTES).expect_err("a directory");
        assert!(e.message.contains("directory"), "{e:?}");
    }

    #[test]
    fn sizes_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.toml");
        std::fs::write(&f, vec![b'#'; 11]).expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(read(&f, Trust::Config, 11).map(|b| b.len()), Ok(11));
        let e = read(&f, Trust::Config, 10).expect_err("too big");
        assert!(e.message.contains("limit"), "{e:?}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        let e = read(&f, Trust::Config, 100).expect_err("group-writable");
        assert!(e.message.contains("mode 0664"), "{e:?}");
        assert!(e.hint.unwrap_or_default().contains("chmod go-w"));
        assert!(read(&f, Trust::Any, 100).is_ok());
        let missing = read(&dir.path().join("nope"), Trust::Config, 100).expect_err("missing");
        assert!(missing.not_found);
    }
}
