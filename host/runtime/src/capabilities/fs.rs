//! `oxydra:fs/read` and `oxydra:fs/write`: workspace files for tools, `/shared` and
//! `/tmp` only. `/vault` is refused here for reads and writes alike; only the
//! vault-read-step profile (see `vault.rs`) can read it.

use super::paths::{
    self, HasWorkspace, PathError, Root, VirtualPath, Workspace, WorkspaceCtx, WorkspaceView,
    io_error,
};
use crate::bindings::imports::oxydra::fs;
use crate::bindings::{Entry, EntryKind, FsError, Metadata};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;
use wasmtime::component::Linker;

/// Largest file the host reads for a guest, whatever the guest asks for.
pub const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;
/// Largest file the host writes for a guest.
pub const MAX_WRITE_BYTES: usize = 64 * 1024 * 1024;
/// Most entries `list-dir` returns.
pub const MAX_DIR_ENTRIES: usize = 10_000;

const VAULT_READ_REASON: &str =
    "file tools cannot read the vault; use vault_copyto to copy a vault file into /shared or /tmp";
const VAULT_WRITE_REASON: &str = "the vault is not writable by tools";

fn denied(vp: &VirtualPath, reason: &str) -> PathError {
    PathError::Denied {
        path: vp.to_string(),
        root: vp.root.to_string(),
        reason: reason.to_string(),
    }
}

/// Parse a path for `oxydra:fs/read`: anything but `/vault`.
pub fn for_read(path: &str) -> Result<VirtualPath, PathError> {
    let vp = paths::parse(path)?;
    if vp.root == Root::Vault {
        return Err(denied(&vp, VAULT_READ_REASON));
    }
    Ok(vp)
}

/// Parse a path for `oxydra:fs/write`: anything but `/vault`.
pub fn for_write(path: &str) -> Result<VirtualPath, PathError> {
    let vp = paths::parse(path)?;
    if vp.root == Root::Vault {
        return Err(denied(&vp, VAULT_WRITE_REASON));
    }
    Ok(vp)
}

fn kind_of(ft: cap_std::fs::FileType) -> EntryKind {
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// Open a regular file beneath `dir` for reading: its handle and size. Directories,
/// devices, FIFOs and sockets are refused (checked again on the opened handle).
fn open_regular(dir: &Dir, vp: &VirtualPath) -> Result<(cap_std::fs::File, u64), PathError> {
    let meta = dir.metadata(vp.rel_path()).map_err(|e| io_error(vp, e))?;
    if meta.is_dir() {
        return Err(PathError::IsADirectory(vp.to_string()));
    }
    if !meta.is_file() {
        return Err(denied(
            vp,
            "not a regular file (device, FIFO or socket files are never opened)",
        ));
    }
    // O_NONBLOCK: if the file was swapped for a FIFO after the check, open must not hang.
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(libc_o_nonblock());
    let file = dir
        .open_with(vp.rel_path(), &opts)
        .map_err(|e| io_error(vp, e))?;
    let opened = file.metadata().map_err(|e| io_error(vp, e))?;
    if !opened.is_file() {
        return Err(denied(
            vp,
            "not a regular file (device, FIFO or socket files are never opened)",
        ));
    }
    Ok((file, opened.len()))
}

/// At most `max_bytes` (capped at [`MAX_READ_BYTES`]) of a file from byte `offset`, and
/// the file's size: a window of a file of any size.
pub fn read_range(
    ws: &Workspace,
    path: &str,
    offset: u64,
    max_bytes: u64,
) -> Result<(Vec<u8>, u64), PathError> {
    use std::io::{Seek, SeekFrom};
    let vp = for_read(path)?;
    let (mut file, size) = open_regular(ws.dir(vp.root), &vp)?;
    let limit = max_bytes.min(MAX_READ_BYTES);
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(&vp, e))?;
    let mut buf = Vec::with_capacity(limit.min(size - offset) as usize);
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(&vp, e))?;
    Ok((buf, size))
}

/// Read a regular file beneath `dir`, at most `max_bytes`. Shared with the vault capability.
pub fn read_in(dir: &Dir, vp: &VirtualPath, max_bytes: u64) -> Result<Vec<u8>, PathError> {
    let limit = max_bytes.min(MAX_READ_BYTES);
    let (file, size) = open_regular(dir, vp)?;
    if size > limit {
        return Err(PathError::TooLarge(format!(
            "{vp} is {size} bytes; the limit is {limit} bytes"
        )));
    }
    let opened_len = size;
    let mut buf = Vec::with_capacity(opened_len.min(limit) as usize);
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(vp, e))?;
    if buf.len() as u64 > limit {
        return Err(PathError::TooLarge(format!(
            "{vp} is larger than the limit of {limit} bytes"
        )));
    }
    Ok(buf)
}

const fn libc_o_nonblock() -> i32 {
    // O_NONBLOCK on Linux (x86_64 and aarch64).
    0o4000
}

pub fn read_file(ws: &Workspace, path: &str, max_bytes: u64) -> Result<Vec<u8>, PathError> {
    let vp = for_read(path)?;
    read_in(ws.dir(vp.root), &vp, max_bytes)
}

pub fn list_dir(ws: &Workspace, path: &str) -> Result<Vec<Entry>, PathError> {
    let vp = for_read(path)?;
    let dir = ws.dir(vp.root);
    let meta = dir.metadata(vp.rel_path()).map_err(|e| io_error(&vp, e))?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(vp.to_string()));
    }
    let mut out = Vec::new();
    for entry in dir.read_dir(vp.rel_path()).map_err(|e| io_error(&vp, e))? {
        let entry = entry.map_err(|e| io_error(&vp, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type().map_err(|e| io_error(&vp, e))?;
        let kind = kind_of(ft);
        let size = if kind == EntryKind::File {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        out.push(Entry { name, kind, size });
        if out.len() >= MAX_DIR_ENTRIES {
            break;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn stat(ws: &Workspace, path: &str) -> Result<Metadata, PathError> {
    let vp = for_read(path)?;
    let meta = ws
        .dir(vp.root)
        .metadata(vp.rel_path())
        .map_err(|e| io_error(&vp, e))?;
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    Ok(Metadata {
        kind: kind_of(meta.file_type()),
        size: meta.len(),
        modified_ms,
    })
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn write_file(ws: &Workspace, path: &str, data: &[u8]) -> Result<(), PathError> {
    let vp = for_write(path)?;
    if vp.is_root() {
        return Err(PathError::IsADirectory(vp.to_string()));
    }
    if data.len() > MAX_WRITE_BYTES {
        return Err(PathError::TooLarge(format!(
            "{vp}: {} bytes is more than the write limit of {MAX_WRITE_BYTES} bytes",
            data.len()
        )));
    }
    let dir = ws.dir(vp.root);
    let (parent, name) = match vp.rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", vp.rel.as_str()),
    };
    if !parent.is_empty()
        && let Err(e) = dir.create_dir_all(parent)
    {
        // A parent that is a symlink leaving the root shows up as "already exists";
        // resolving it says why.
        return Err(match dir.metadata(parent) {
            Err(resolve) => io_error(&vp, resolve),
            Ok(_) => io_error(&vp, e),
        });
    }
    match dir.symlink_metadata(vp.rel_path()) {
        Ok(m) if m.is_dir() => return Err(PathError::IsADirectory(vp.to_string())),
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(denied(
                &vp,
                "not a regular file (device, FIFO or socket files are never written)",
            ));
        }
        _ => {}
    }
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.oxydra-tmp-{}-{n}", std::process::id());
    let tmp = if parent.is_empty() {
        tmp_name
    } else {
        format!("{parent}/{tmp_name}")
    };
    dir.write(&tmp, data).map_err(|e| io_error(&vp, e))?;
    if let Err(e) = dir.rename(&tmp, dir, vp.rel_path()) {
        let _ = dir.remove_file(&tmp);
        return Err(io_error(&vp, e));
    }
    Ok(())
}

pub fn remove(ws: &Workspace, path: &str) -> Result<(), PathError> {
    let vp = for_write(path)?;
    if vp.is_root() {
        return Err(denied(
            &vp,
            "a root cannot be deleted; delete the files inside it instead",
        ));
    }
    let dir = ws.dir(vp.root);
    // symlink_metadata: a symlink is removed itself, its target is left alone.
    let meta = dir
        .symlink_metadata(vp.rel_path())
        .map_err(|e| io_error(&vp, e))?;
    if meta.is_dir() {
        dir.remove_dir_all(vp.rel_path())
            .map_err(|e| io_error(&vp, e))
    } else {
        dir.remove_file(vp.rel_path()).map_err(|e| io_error(&vp, e))
    }
}

pub fn create_dir(ws: &Workspace, path: &str) -> Result<(), PathError> {
    let vp = for_write(path)?;
    if vp.is_root() {
        return Ok(());
    }
    ws.dir(vp.root)
        .create_dir_all(vp.rel_path())
        .map_err(|e| io_error(&vp, e))
}

impl From<PathError> for FsError {
    fn from(e: PathError) -> Self {
        let text = e.to_string();
        match e {
            PathError::Denied { .. } => FsError::Denied(text),
            PathError::Invalid { .. } => FsError::InvalidPath(text),
            PathError::NotFound(_) => FsError::NotFound(text),
            PathError::AlreadyExists(_) => FsError::AlreadyExists(text),
            PathError::NotADirectory(_) => FsError::NotADirectory(text),
            PathError::IsADirectory(_) => FsError::IsADirectory(text),
            PathError::TooLarge(_) => FsError::TooLarge(text),
            PathError::Io { .. } => FsError::Io(text),
        }
    }
}

impl fs::types::Host for WorkspaceCtx {}

impl fs::read::Host for WorkspaceCtx {
    fn read_file(&mut self, path: String, max_bytes: u64) -> Result<Vec<u8>, FsError> {
        Ok(read_file(self.ws()?, &path, max_bytes)?)
    }
    fn read_range(
        &mut self,
        path: String,
        offset: u64,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64), FsError> {
        Ok(read_range(self.ws()?, &path, offset, max_bytes)?)
    }
    fn list_dir(&mut self, path: String) -> Result<Vec<Entry>, FsError> {
        Ok(list_dir(self.ws()?, &path)?)
    }
    fn stat(&mut self, path: String) -> Result<Metadata, FsError> {
        Ok(stat(self.ws()?, &path)?)
    }
}

impl fs::write::Host for WorkspaceCtx {
    fn write_file(&mut self, path: String, data: Vec<u8>) -> Result<(), FsError> {
        Ok(write_file(self.ws()?, &path, &data)?)
    }
    fn remove(&mut self, path: String) -> Result<(), FsError> {
        Ok(remove(self.ws()?, &path)?)
    }
    fn create_dir(&mut self, path: String) -> Result<(), FsError> {
        Ok(create_dir(self.ws()?, &path)?)
    }
}

/// `oxydra:fs/types`: types only, no function, no authority; every tool linker has it.
pub fn add_types_to_linker<T: WorkspaceView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    fs::types::add_to_linker::<T, HasWorkspace>(l, |t| t.workspace())
}

/// `oxydra:fs/read`.
pub fn add_read_to_linker<T: WorkspaceView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    fs::read::add_to_linker::<T, HasWorkspace>(l, |t| t.workspace())
}

/// `oxydra:fs/write`.
pub fn add_write_to_linker<T: WorkspaceView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    fs::write::add_to_linker::<T, HasWorkspace>(l, |t| t.workspace())
}
