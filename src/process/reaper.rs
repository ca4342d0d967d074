//! guardian as the reaper of its descendants' orphans. The waiting itself is done by
//! the process table ([`super::table`]), the one owner of `wait`.

/// Makes this process the reaper of every orphan among its descendants.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}
