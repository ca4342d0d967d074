//! The files and directories guardian creates (job logs, saved state, the outbox, the
//! socket's lock file) get their mode set explicitly, whatever the process umask: job
//! logs and alert bodies hold what jobs print and what went wrong, which may well be
//! secrets. Private by default (files 0600, directories 0700); `log-group` opens the
//! logs to one group on purpose (0640 and 0750).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who may read what guardian writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub file_mode: u32,
    pub dir_mode: u32,
    /// The group the files and directories are given, when they are opened to one.
    pub gid: Option<u32>,
}

/// Only guardian's own user.
pub const PRIVATE: Access = Access {
    file_mode: 0o600,
    dir_mode: 0o700,
    gid: None,
};

/// The mode of the parent directories guardian creates on the way to one of its own:
/// they hold nothing but its directories, and members of a `log-group` must be able to
/// pass through them.
const PARENT_MODE: u32 = 0o755;

impl Access {
    /// Readable by the members of one group, writable only by guardian's user.
    pub fn group(gid: u32) -> Access {
        Access {
            file_mode: 0o640,
            dir_mode: 0o750,
            gid: Some(gid),
        }
    }

    /// For directories that others must be able to pass through (the parents of
    /// guardian's own, the socket's directory): 0755.
    pub fn passable() -> Access {
        Access {
            file_mode: 0o644,
            dir_mode: PARENT_MODE,
            gid: None,
        }
    }

    /// [`PRIVATE`], or opened to `gid`.
    pub fn private_or_group(gid: Option<u32>) -> Access {
        gid.map_or(PRIVATE, Access::group)
    }
}

fn set_mode(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(())
}

/// Creates `path` and whatever parents are missing. `path` gets `access`'s directory
/// mode and group, parents 0755, set explicitly after each `mkdir`. A directory that
/// already exists is left as it is (it may be shared, such as `/var/log`). Returns
/// whether `path` was created.
pub fn create_dir(path: &Path, access: Access) -> io::Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        create_dir(parent, Access::passable())?;
    }
    match std::fs::DirBuilder::new()
        .mode(access.dir_mode)
        .create(path)
    {
        Ok(()) => {}
        // Created meanwhile by someone else: theirs, so left alone.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(false),
        Err(e) => return Err(e),
    }
    set_mode(path, access.dir_mode, access.gid)?;
    Ok(true)
}

/// Gives an open file `access`'s mode and group if it has others.
pub fn fix(file: &File, access: Access) -> io::Result<()> {
    let meta = file.metadata()?;
    if meta.mode() & 0o7777 != access.file_mode {
        file.set_permissions(std::fs::Permissions::from_mode(access.file_mode))?;
    }
    if let Some(gid) = access.gid
        && meta.gid() != gid
    {
        std::os::unix::fs::fchown(file, None, Some(gid))?;
    }
    Ok(())
}

/// Opens `path` with `options` (which should create it), then makes its mode and group
/// `access`'s: a new file never has more than that while it is created, and an existing
/// one (written by an older guardian under another umask) is put right.
pub fn open(path: &Path, options: &mut OpenOptions, access: Access) -> io::Result<File> {
    let file = options.mode(access.file_mode).open(path)?;
    fix(&file, access)?;
    Ok(file)
}

/// Sets the mode (and group) of an existing file by path.
pub fn fix_path(path: &Path, access: Access) -> io::Result<()> {
    set_mode(path, access.file_mode, access.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_set_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/log");
        assert!(create_dir(&deep, PRIVATE).expect("created"));
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o7777).unwrap_or(0);
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o755);
        assert!(!create_dir(&deep, PRIVATE).expect("exists"));
        let f = deep.join("x.log");
        std::fs::write(&f, "old").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        open(&f, OpenOptions::new().append(true).create(true), PRIVATE).expect("open");
        assert_eq!(mode(&f), 0o600);
    }
}
