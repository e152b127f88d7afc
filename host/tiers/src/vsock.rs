//! AF_VSOCK stream sockets, as the micro_vm guest uses them: a listener on a port of
//! its own CID, and a connection to the host (CID 2). The host end is never a kernel
//! vsock: both backends give the host Firecracker's hybrid vsock, unix sockets
//! ([`crate::vm::hybrid_connect`]).
//!
//! `std` has no vsock type; the sockets are made with libc and handed out as
//! [`UnixStream`]s, whose `read`, `write` and `shutdown` are the plain socket calls
//! (their address methods do not apply and are not used).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The host's CID, as a guest reaches it.
pub const HOST_CID: u32 = libc::VMADDR_CID_HOST;

fn address(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A connection to `port` of `cid`.
pub fn connect(cid: u32, port: u32) -> io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    let fd = socket()?;
    let a = address(cid, port);
    // SAFETY: `a` is a valid sockaddr_vm of the size given; fd is open.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::from_ref(&a).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(UnixStream::from(fd))
}

/// A listener on `port` of this machine's own CID.
pub struct Listener(OwnedFd);

impl Listener {
    pub fn bind(port: u32) -> io::Result<Listener> {
        use std::os::fd::AsRawFd;
        let fd = socket()?;
        let a = address(libc::VMADDR_CID_ANY, port);
        // SAFETY: as in `connect`.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&a).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        })?;
        // SAFETY: listen(2) on an open, bound socket.
        check(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
        Ok(Listener(fd))
    }

    /// The next connection (blocking).
    pub fn accept(&self) -> io::Result<UnixStream> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: accept4(2) on a listening socket, not asking for the peer address.
            let fd = unsafe {
                libc::accept4(
                    self.0.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: fd is a new socket that nothing else owns.
                return Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
