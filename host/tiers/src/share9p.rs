//! The workspace for a VMM with no shared-directory device (Firecracker has no virtio-fs
//! and no 9p): a 9P2000.L server per share, on a unix socket the guest reaches over
//! vsock, which the guest's kernel mounts with `trans=fd`.
//!
//! It runs as `oxydra-host vm-share`, a child of the runner: as the user the VM runs as
//! (never root when the runner is root), confined like a `process`-tier runtime
//! (Landlock beneath its shares alone, seccomp, no capabilities, no_new_privs). The
//! protocol itself is the `p9` crate's server (crosvm's). In front of it every request
//! is checked here: a name that is not one path component (`..`, `.`, `/`, NUL, empty)
//! is refused, device nodes are never made, and on a read-only share everything that
//! would change a file is refused with `EROFS` — the guest's own read-only mount is
//! not what holds the vault read-only.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One share: the socket it is served on and the directory it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub read_only: bool,
}

impl Spec {
    /// `SOCKET=DIR` or `SOCKET=DIR:ro` (the `vm-share --share` argument).
    pub fn parse(s: &str) -> Result<Spec, String> {
        let (socket, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: a share is SOCKET=DIR or SOCKET=DIR:ro"))?;
        let (root, read_only) = match rest.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (socket, root) = (PathBuf::from(socket), PathBuf::from(root));
        if !socket.is_absolute() || !root.is_absolute() {
            return Err(format!("{s:?}: both paths must be absolute"));
        }
        Ok(Spec {
            socket,
            root,
            read_only,
        })
    }

    /// The `vm-share --share` argument for this share.
    pub fn arg(&self) -> String {
        format!(
            "{}={}{}",
            self.socket.display(),
            self.root.display(),
            if self.read_only { ":ro" } else { "" }
        )
    }
}

/// The largest message the server negotiates (the `p9` crate's: 64 KiB of payload and
/// its header); a frame over it ends the connection.
const MAX_FRAME: usize = 64 * 1024 + 24;
/// Connections served at once per share (one per mount; a guest that opens more waits).
const MAX_CONNECTIONS: usize = 8;

/// 9P2000.L message types (requests) this module looks into.
mod t {
    pub const LOPEN: u8 = 12;
    pub const LCREATE: u8 = 14;
    pub const SYMLINK: u8 = 16;
    pub const MKNOD: u8 = 18;
    pub const RENAME: u8 = 20;
    pub const SETATTR: u8 = 26;
    pub const XATTRCREATE: u8 = 32;
    pub const LINK: u8 = 70;
    pub const MKDIR: u8 = 72;
    pub const RENAMEAT: u8 = 74;
    pub const UNLINKAT: u8 = 76;
    pub const WALK: u8 = 110;
    pub const WRITE: u8 = 118;
    pub const REMOVE: u8 = 122;
}
const RLERROR: u8 = 7;

/// Open flags of `Tlopen` that write (Linux's values, which 9P2000.L carries).
const WRITE_FLAGS: u32 = 0o3 | 0o100 | 0o1000 | 0o2000;

/// A little-endian reader over a request's body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }
    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_le_bytes(self.0.get(..2)?.try_into().ok()?);
        self.0 = &self.0[2..];
        Some(v)
    }
    fn u32(&mut self) -> Option<u32> {
        let v = u32::from_le_bytes(self.0.get(..4)?.try_into().ok()?);
        self.0 = &self.0[4..];
        Some(v)
    }
    fn str(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        let s = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(s)
    }
}

/// One path component, and nothing that could leave the directory it is looked up in.
fn component(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// The errno a request is refused with, if it is; `None` lets the server carry it out.
/// `frame` is a whole message: size[4] type[1] tag[2] body.
pub fn refuse(frame: &[u8], read_only: bool) -> Option<i32> {
    let kind = *frame.get(4)?;
    let mut b = Body(frame.get(7..)?);
    let bad = Some(libc::EPERM);
    let names_ok = match kind {
        t::WALK => (|| {
            b.skip(8)?;
            let n = b.u16()?;
            for _ in 0..n {
                if !component(b.str()?) {
                    return Some(false);
                }
            }
            Some(true)
        })(),
        t::LCREATE | t::SYMLINK | t::MKDIR | t::UNLINKAT => {
            b.skip(4).and_then(|()| b.str()).map(component)
        }
        t::RENAME | t::LINK => b.skip(8).and_then(|()| b.str()).map(component),
        t::RENAMEAT => (|| {
            b.skip(4)?;
            let old = b.str()?;
            b.skip(4)?;
            let new = b.str()?;
            Some(component(old) && component(new))
        })(),
        // Device nodes, fifos and sockets on the host: never.
        t::MKNOD => return bad,
        _ => Some(true),
    };
    match names_ok {
        Some(true) => {}
        // A message too short to hold its names: the server's decoder refuses it.
        None => {}
        Some(false) => return bad,
    }
    if read_only {
        let writes = match kind {
            t::LOPEN => {
                b = Body(frame.get(7..)?);
                b.skip(4)?;
                b.u32()? & WRITE_FLAGS != 0
            }
            t::LCREATE
            | t::SYMLINK
            | t::RENAME
            | t::SETATTR
            | t::XATTRCREATE
            | t::LINK
            | t::MKDIR
            | t::RENAMEAT
            | t::UNLINKAT
            | t::WRITE
            | t::REMOVE => true,
            _ => false,
        };
        if writes {
            return Some(libc::EROFS);
        }
    }
    None
}

/// Serve one connection until the guest closes it.
pub fn serve_connection(stream: UnixStream, root: &Path, read_only: bool) -> io::Result<()> {
    let mut server = p9::Server::new(root, Default::default(), Default::default())?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = BufWriter::new(stream);
    let mut frame = Vec::with_capacity(MAX_FRAME);
    loop {
        let mut size = [0u8; 4];
        match r.read_exact(&mut size) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = u32::from_le_bytes(size) as usize;
        if !(7..=MAX_FRAME).contains(&n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a 9p message of {n} bytes (at most {MAX_FRAME})"),
            ));
        }
        frame.clear();
        frame.extend_from_slice(&size);
        frame.resize(n, 0);
        r.read_exact(&mut frame[4..])?;
        match refuse(&frame, read_only) {
            Some(errno) => {
                let mut reply = Vec::with_capacity(11);
                reply.extend_from_slice(&11u32.to_le_bytes());
                reply.push(RLERROR);
                reply.extend_from_slice(&frame[5..7]);
                reply.extend_from_slice(&(errno as u32).to_le_bytes());
                w.write_all(&reply)?;
                w.flush()?;
            }
            None => server.handle_message(&mut frame.as_slice(), &mut w)?,
        }
    }
}

/// Accept on `listener` for ever, a thread per connection (at most [`MAX_CONNECTIONS`]).
fn accept_loop(listener: UnixListener, root: PathBuf, read_only: bool) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("vm-share {}: accept: {e}", root.display());
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        while live.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        live.fetch_add(1, Ordering::AcqRel);
        let (root, live) = (root.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name("9p".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &root, read_only) {
                    eprintln!("vm-share {}: {e}", root.display());
                }
                live.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            eprintln!("vm-share: no thread for a connection: {e}");
        }
    }
}

/// `oxydra-host vm-share`: bind every share's socket, confine this process to the
/// shares, say `ready` on stdout, and serve until the runner ends it.
pub fn run(specs: &[Spec]) -> Result<(), String> {
    crate::confine::die_with_parent();
    let mut listeners = Vec::new();
    for s in specs {
        if !s.root.is_dir() {
            return Err(format!("{}: not a directory", s.root.display()));
        }
        let _ = std::fs::remove_file(&s.socket);
        let l =
            UnixListener::bind(&s.socket).map_err(|e| format!("{}: {e}", s.socket.display()))?;
        listeners.push((l, s.root.clone(), s.read_only));
    }
    let plan = crate::confine::Plan {
        read_only: specs
            .iter()
            .filter(|s| s.read_only)
            .map(|s| s.root.clone())
            .collect(),
        read_write: specs
            .iter()
            .filter(|s| !s.read_only)
            .map(|s| s.root.clone())
            .collect(),
        max_open_files: 4096,
        ..Default::default()
    };
    let report = crate::confine::confine(&plan)?;
    // What could not be applied comes first, one line each, so the runner's status
    // names it; then `ready`.
    for d in &report.degraded {
        println!("degraded: {d}");
    }
    println!("ready: {}", report.applied.join("; "));
    let _ = io::stdout().flush();
    let mut threads = Vec::new();
    for (l, root, ro) in listeners {
        threads.push(
            std::thread::Builder::new()
                .name("9p-accept".into())
                .spawn(move || accept_loop(l, root, ro))
                .map_err(|e| e.to_string())?,
        );
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut f = ((7 + body.len()) as u32).to_le_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(body);
        f
    }

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = (x.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(x);
        v
    }

    fn walk(names: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&(names.len() as u16).to_le_bytes());
        for n in names {
            b.extend(s(n));
        }
        frame(t::WALK, &b)
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        assert_eq!(refuse(&walk(&[b"a", b"b"]), false), None);
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0"] {
            assert_eq!(refuse(&walk(&[b"a", bad]), false), Some(libc::EPERM));
        }
        let mut mkdir = vec![0u8; 4];
        mkdir.extend(s(b".."));
        mkdir.extend_from_slice(&[0; 8]);
        assert_eq!(refuse(&frame(t::MKDIR, &mkdir), false), Some(libc::EPERM));
        let mut ren = vec![0u8; 4];
        ren.extend(s(b"ok"));
        ren.extend_from_slice(&[0; 4]);
        ren.extend(s(b"../x"));
        assert_eq!(refuse(&frame(t::RENAMEAT, &ren), false), Some(libc::EPERM));
        assert_eq!(refuse(&frame(t::MKNOD, &[0; 20]), false), Some(libc::EPERM));
    }

    #[test]
    fn a_read_only_share_refuses_every_change() {
        let lopen = |flags: u32| {
            let mut b = vec![0u8; 4];
            b.extend_from_slice(&flags.to_le_bytes());
            frame(t::LOPEN, &b)
        };
        assert_eq!(refuse(&lopen(0), true), None);
        assert_eq!(refuse(&lopen(0o200000), true), None, "O_DIRECTORY reads");
        for w in [1, 2, 0o1000, 0o2000, 0o100] {
            assert_eq!(refuse(&lopen(w), true), Some(libc::EROFS), "{w:o}");
            assert_eq!(refuse(&lopen(w), false), None);
        }
        assert_eq!(refuse(&frame(t::WRITE, &[0; 16]), true), Some(libc::EROFS));
        assert_eq!(
            refuse(&frame(t::SETATTR, &[0; 60]), true),
            Some(libc::EROFS)
        );
        assert_eq!(refuse(&frame(t::REMOVE, &[0; 4]), true), Some(libc::EROFS));
        assert_eq!(refuse(&frame(t::WRITE, &[0; 16]), false), None);
    }

    #[test]
    fn specs_parse_and_print() {
        let sp = Spec::parse("/run/s.sock=/w/vault:ro").unwrap();
        assert!(sp.read_only);
        assert_eq!(Spec::parse(&sp.arg()).unwrap(), sp);
        assert!(Spec::parse("rel=/x").is_err());
        assert!(Spec::parse("/x").is_err());
    }
    /// A 9P client's exchange with the real server behind the checks.
    #[test]
    fn the_server_reads_files_and_holds_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("note.txt"), "hello 9p").unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let root = dir.path().to_path_buf();
        let server = std::thread::spawn(move || serve_connection(b, &root, true));
        let mut c = a;
        let mut ask = |kind: u8, body: &[u8]| -> (u8, Vec<u8>) {
            c.write_all(&frame(kind, body)).unwrap();
            let mut size = [0u8; 4];
            c.read_exact(&mut size).unwrap();
            let mut rest = vec![0u8; u32::from_le_bytes(size) as usize - 4];
            c.read_exact(&mut rest).unwrap();
            (rest[0], rest[3..].to_vec())
        };
        let mut v = 65560u32.to_le_bytes().to_vec();
        v.extend(s(b"9P2000.L"));
        assert_eq!(ask(100, &v).0, 101);
        let mut at = 0u32.to_le_bytes().to_vec();
        at.extend_from_slice(&u32::MAX.to_le_bytes());
        at.extend(s(b"oxydra"));
        at.extend(s(b""));
        at.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(ask(104, &at).0, 105, "attached");
        let walk_to = |newfid: u32, names: &[&[u8]]| {
            let mut b = 0u32.to_le_bytes().to_vec();
            b.extend_from_slice(&newfid.to_le_bytes());
            b.extend_from_slice(&(names.len() as u16).to_le_bytes());
            for n in names {
                b.extend(s(n));
            }
            b
        };
        assert_eq!(ask(t::WALK, &walk_to(1, &[b"note.txt"])).0, 111);
        let (kind, body) = ask(t::WALK, &walk_to(2, &[b".."]));
        assert_eq!(
            (kind, body),
            (RLERROR, (libc::EPERM as u32).to_le_bytes().to_vec())
        );
        let lopen = |fid: u32, flags: u32| {
            let mut b = fid.to_le_bytes().to_vec();
            b.extend_from_slice(&flags.to_le_bytes());
            b
        };
        let (kind, body) = ask(t::LOPEN, &lopen(1, 2));
        assert_eq!(
            (kind, body),
            (RLERROR, (libc::EROFS as u32).to_le_bytes().to_vec())
        );
        assert_eq!(ask(t::LOPEN, &lopen(1, 0)).0, 13, "opened for reading");
        let mut rd = 1u32.to_le_bytes().to_vec();
        rd.extend_from_slice(&0u64.to_le_bytes());
        rd.extend_from_slice(&4096u32.to_le_bytes());
        let (kind, body) = ask(116, &rd);
        assert_eq!(kind, 117);
        assert_eq!(&body[4..], b"hello 9p");
        drop(c);
        server.join().unwrap().unwrap();
    }
}
