//! `/vault` through `oxydra:vault/read`: only for the first step of a vault copy.

use crate::ToolError;
use crate::bindings::oxydra::vault::read;

pub use read::VaultError;

impl From<VaultError> for ToolError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Denied(m) => ToolError::Denied(m),
            VaultError::NotFound(m) => ToolError::NotFound(m),
            VaultError::TooLarge(m) => ToolError::TooLarge(m),
            VaultError::InvalidPath(m) => ToolError::InvalidArguments(m),
            VaultError::Io(m) => ToolError::Failed(m),
        }
    }
}

/// Read a file under `/vault`.
pub fn read_file(path: &str, max_bytes: u64) -> Result<Vec<u8>, VaultError> {
    read::read_file(path, max_bytes)
}
