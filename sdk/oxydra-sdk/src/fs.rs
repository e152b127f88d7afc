//! Workspace files through `oxydra:fs/read` and `oxydra:fs/write`.
//!
//! Calling a function from [`read`](self) makes the component import `oxydra:fs/read`;
//! calling a write function makes it import `oxydra:fs/write`. The host grants the
//! profile those imports need, and refuses the component if the operator did not.

use crate::ToolError;
use crate::bindings::oxydra::fs::{read, types, write};

pub use types::{Entry, EntryKind, FsError, Metadata};

impl From<FsError> for ToolError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Denied(m) => ToolError::Denied(m),
            FsError::NotFound(m) => ToolError::NotFound(m),
            FsError::TooLarge(m) => ToolError::TooLarge(m),
            FsError::InvalidPath(m) => ToolError::InvalidArguments(m),
            FsError::AlreadyExists(m)
            | FsError::NotADirectory(m)
            | FsError::IsADirectory(m)
            | FsError::Io(m) => ToolError::Failed(m),
        }
    }
}

/// The whole file, or `too-large` past `max_bytes`.
pub fn read_file(path: &str, max_bytes: u64) -> Result<Vec<u8>, FsError> {
    read::read_file(path, max_bytes)
}

/// At most `max_bytes` of a file from byte `offset`, and the file's size: a window of a
/// file of any size.
pub fn read_range(path: &str, offset: u64, max_bytes: u64) -> Result<(Vec<u8>, u64), FsError> {
    read::read_range(path, offset, max_bytes)
}

/// The whole file as UTF-8 text.
pub fn read_to_string(path: &str, max_bytes: u64) -> Result<String, ToolError> {
    let bytes = read_file(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|_| {
        ToolError::Failed(format!(
            "{path} is not UTF-8 text; this tool reads text files only"
        ))
    })
}

/// Directory entries, sorted by name.
pub fn list_dir(path: &str) -> Result<Vec<Entry>, FsError> {
    read::list_dir(path)
}

pub fn stat(path: &str) -> Result<Metadata, FsError> {
    read::stat(path)
}

/// Create or replace a file atomically, creating parent directories.
pub fn write_file(path: &str, data: &[u8]) -> Result<(), FsError> {
    write::write_file(path, data)
}

/// Remove a file or a whole directory.
pub fn remove(path: &str) -> Result<(), FsError> {
    write::remove(path)
}

pub fn create_dir(path: &str) -> Result<(), FsError> {
    write::create_dir(path)
}
