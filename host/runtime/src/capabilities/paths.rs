//! Virtual paths (`/shared`, `/tmp`, `/vault`) and their openat-style resolution inside
//! one user's workspace.
//!
//! A virtual path is parsed without touching the disk: NUL bytes, over-long paths and
//! components, `..` anywhere, and paths outside the three roots are denied here. What is
//! left is a root and a relative path that is opened through that root's `cap_std::fs::Dir`,
//! which resolves every component (symlinks included) beneath the root and fails when
//! one would leave it. No string-prefix check decides containment.

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Longest virtual path accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single path component, in bytes (Linux NAME_MAX).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// The three virtual roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    Shared,
    Tmp,
    Vault,
}

impl Root {
    pub const ALL: [Root; 3] = [Root::Shared, Root::Tmp, Root::Vault];

    pub fn name(self) -> &'static str {
        match self {
            Root::Shared => "shared",
            Root::Tmp => "tmp",
            Root::Vault => "vault",
        }
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.name())
    }
}

/// Why a path was refused or an operation failed. Every message names the virtual path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("denied: {path} (root {root}): {reason}")]
    Denied {
        path: String,
        root: String,
        reason: String,
    },
    #[error("invalid path {path:?}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not a directory: {0}")]
    NotADirectory(String),
    #[error("is a directory: {0}")]
    IsADirectory(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// A path that passed the syntactic checks: a root and a clean relative path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualPath {
    pub root: Root,
    /// Components joined by `/`; empty for the root itself.
    pub rel: String,
}

impl VirtualPath {
    pub fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    /// The relative path to hand to the root's `Dir` (`.` for the root).
    pub fn rel_path(&self) -> &Path {
        if self.rel.is_empty() {
            Path::new(".")
        } else {
            Path::new(&self.rel)
        }
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rel.is_empty() {
            write!(f, "{}", self.root)
        } else {
            write!(f, "{}/{}", self.root, self.rel)
        }
    }
}

fn shown(path: &str) -> String {
    // Never echo megabytes or control characters back.
    let clipped: String = path.chars().take(200).collect();
    let clipped = clipped.replace('\0', "\\0");
    if path.chars().count() > 200 {
        format!("{clipped}...")
    } else {
        clipped
    }
}

/// Parse a virtual path. A relative path is taken relative to `/shared`.
pub fn parse(path: &str) -> Result<VirtualPath, PathError> {
    let invalid = |reason: &str| PathError::Invalid {
        path: shown(path),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(invalid(
            "the path is empty; use a path under /shared or /tmp",
        ));
    }
    if path.contains('\0') {
        return Err(invalid("the path contains a NUL byte"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid(&format!(
            "the path is {} bytes long; the limit is {MAX_PATH_BYTES}",
            path.len()
        )));
    }
    let absolute = path.starts_with('/');
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => continue,
            ".." => {
                return Err(PathError::Denied {
                    path: shown(path),
                    root: "none".into(),
                    reason: "`..` is not allowed in paths; name the file from its root, e.g. /shared/dir/file".into(),
                });
            }
            p if p.len() > MAX_COMPONENT_BYTES => {
                return Err(invalid(&format!(
                    "a path component is {} bytes long; the limit is {MAX_COMPONENT_BYTES}",
                    p.len()
                )));
            }
            p => parts.push(p),
        }
    }
    let (root, rest) = if absolute {
        let root = match parts.first().copied() {
            Some("shared") => Root::Shared,
            Some("tmp") => Root::Tmp,
            Some("vault") => Root::Vault,
            _ => {
                return Err(PathError::Denied {
                    path: shown(path),
                    root: "none".into(),
                    reason:
                        "the path is outside the workspace; the roots are /shared, /tmp and /vault"
                            .into(),
                });
            }
        };
        (root, &parts[1..])
    } else {
        (Root::Shared, &parts[..])
    };
    Ok(VirtualPath {
        root,
        rel: rest.join("/"),
    })
}

/// The directories of one user's workspace, each opened once as a capability.
#[derive(Debug)]
pub struct Workspace {
    host_root: PathBuf,
    shared: Dir,
    tmp: Dir,
    vault: Dir,
}

impl Workspace {
    /// Open (creating if needed) `<dir>/shared`, `<dir>/tmp` and `<dir>/vault`.
    pub fn open(dir: &Path) -> io::Result<Workspace> {
        for root in Root::ALL {
            std::fs::create_dir_all(dir.join(root.name()))?;
        }
        let open = |root: Root| Dir::open_ambient_dir(dir.join(root.name()), ambient_authority());
        Ok(Workspace {
            host_root: dir.canonicalize()?,
            shared: open(Root::Shared)?,
            tmp: open(Root::Tmp)?,
            vault: open(Root::Vault)?,
        })
    }

    /// The workspace directory on the host (for scrubbing host paths out of output).
    pub fn host_root(&self) -> &Path {
        &self.host_root
    }

    pub fn dir(&self, root: Root) -> &Dir {
        match root {
            Root::Shared => &self.shared,
            Root::Tmp => &self.tmp,
            Root::Vault => &self.vault,
        }
    }
}

/// Map an I/O error from a root-relative operation to a message about the virtual path.
/// cap-std reports an attempt to leave the root (through a symlink or an absolute link
/// target) as PermissionDenied with "a path led outside of the filesystem".
pub fn io_error(vp: &VirtualPath, e: io::Error) -> PathError {
    let path = vp.to_string();
    let text = e.to_string();
    if text.contains("outside of the filesystem") {
        return PathError::Denied {
            path,
            root: vp.root.to_string(),
            reason: "a symlink on this path leads outside the root".into(),
        };
    }
    match e.kind() {
        io::ErrorKind::NotFound => PathError::NotFound(path),
        io::ErrorKind::AlreadyExists => PathError::AlreadyExists(path),
        io::ErrorKind::NotADirectory => PathError::NotADirectory(path),
        io::ErrorKind::IsADirectory => PathError::IsADirectory(path),
        io::ErrorKind::PermissionDenied => PathError::Denied {
            path,
            root: vp.root.to_string(),
            reason: "the operating system refused access".into(),
        },
        // ELOOP: too many symlinks, or a symlink where none may be
        _ if e.raw_os_error() == Some(40) => PathError::Denied {
            path,
            root: vp.root.to_string(),
            reason: "too many levels of symlinks".into(),
        },
        _ => PathError::Io {
            path,
            message: text,
        },
    }
}

/// The per-call context of the workspace capabilities (`oxydra:fs/*`,
/// `oxydra:vault/read`): the call's workspace, or none while a component describes
/// itself. Store data hands it out through [`WorkspaceView`], as wasmtime-wasi's
/// `WasiCtx` through `WasiView`.
pub struct WorkspaceCtx {
    workspace: Option<std::sync::Arc<Workspace>>,
}

impl WorkspaceCtx {
    pub fn new(workspace: Option<std::sync::Arc<Workspace>>) -> WorkspaceCtx {
        WorkspaceCtx { workspace }
    }

    /// The workspace, or a denial while a component describes itself.
    pub fn ws(&self) -> Result<&Workspace, PathError> {
        self.workspace.as_deref().ok_or_else(|| PathError::Denied {
            path: String::new(),
            root: "none".into(),
            reason: "no workspace is attached while a component describes itself".into(),
        })
    }
}

/// Store data that carries a [`WorkspaceCtx`].
pub trait WorkspaceView: Send {
    fn workspace(&mut self) -> &mut WorkspaceCtx;
}

/// `HasData` of the workspace capabilities: their host traits are implemented on
/// [`WorkspaceCtx`] itself.
pub struct HasWorkspace;

impl wasmtime::component::HasData for HasWorkspace {
    type Data<'a> = &'a mut WorkspaceCtx;
}
