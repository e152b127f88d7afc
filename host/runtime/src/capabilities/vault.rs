//! `oxydra:vault/read`: reads under `/vault` and nowhere else. Only the vault-read-step
//! profile links it, and that profile has no write or network import.

use super::fs::read_in;
use super::paths::{self, HasWorkspace, PathError, Root, Workspace, WorkspaceCtx, WorkspaceView};
use crate::bindings::VaultError;
use crate::bindings::imports::oxydra::vault;
use wasmtime::component::Linker;

pub fn read_file(ws: &Workspace, path: &str, max_bytes: u64) -> Result<Vec<u8>, PathError> {
    let vp = paths::parse(path)?;
    if vp.root != Root::Vault {
        return Err(PathError::Denied {
            path: vp.to_string(),
            root: vp.root.to_string(),
            reason: "the vault step reads only /vault".into(),
        });
    }
    read_in(ws.dir(Root::Vault), &vp, max_bytes)
}

impl From<PathError> for VaultError {
    fn from(e: PathError) -> Self {
        let text = e.to_string();
        match e {
            PathError::Denied { .. } => VaultError::Denied(text),
            PathError::Invalid { .. } => VaultError::InvalidPath(text),
            PathError::NotFound(_) => VaultError::NotFound(text),
            PathError::TooLarge(_) => VaultError::TooLarge(text),
            _ => VaultError::Io(text),
        }
    }
}

impl vault::read::Host for WorkspaceCtx {
    fn read_file(&mut self, path: String, max_bytes: u64) -> Result<Vec<u8>, VaultError> {
        Ok(read_file(self.ws()?, &path, max_bytes)?)
    }
}

/// `oxydra:vault/read`.
pub fn add_to_linker<T: WorkspaceView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    vault::read::add_to_linker::<T, HasWorkspace>(l, |t| t.workspace())
}
