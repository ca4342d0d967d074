//! supervisord.conf to job files.
use std::collections::BTreeSet;
use std::path::Path;

use super::{Error, Output};

pub fn import(_file: &Path, _existing: &BTreeSet<String>) -> Result<Output, Error> {
    Ok(Output::default())
}
