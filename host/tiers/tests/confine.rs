//! The process tier's confinement, applied for real: a child process (this test binary
//! again) confines itself and tries what a compromised runtime would.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_tiers::confine::{Plan, confine};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

const CHILD: &str = "OXYDRA_CONFINE_TEST_CHILD";

/// What the child tried, one `name=ok` or `name=err:<why>` per line.
fn attempt(name: &str, r: std::io::Result<impl Sized>) {
    match r {
        Ok(_) => println!("{name}=ok"),
        Err(e) => println!("{name}=err:{e}"),
    }
}

/// Runs only in the child.
#[test]
fn child_entry() {
    let Ok(dirs) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<PathBuf> = dirs.split('|').map(PathBuf::from).collect();
    let (ro, rw, outside, port) = (&parts[0], &parts[1], &parts[2], &parts[3]);
    let report = confine(&Plan {
        read_only: vec![ro.clone()],
        read_write: vec![rw.clone()],
        memory_bytes: Some(4 << 30),
        max_processes: Some(10_000),
        max_open_files: 256,
        ..Plan::default()
    })
    .unwrap();
    for a in &report.applied {
        println!("applied={a}");
    }
    for d in &report.degraded {
        println!("degraded={d}");
    }
    attempt("read_ro", std::fs::read(ro.join("in.txt")));
    attempt("write_ro", std::fs::write(ro.join("new.txt"), b"x"));
    attempt("read_rw", std::fs::read(rw.join("in.txt")));
    attempt("write_rw", std::fs::write(rw.join("new.txt"), b"x"));
    attempt("read_outside", std::fs::read(outside.join("secret.txt")));
    attempt("read_etc", std::fs::read("/etc/hostname"));
    attempt(
        "tcp_connect",
        std::net::TcpStream::connect(format!("127.0.0.1:{}", port.display())),
    );
    attempt("tcp_bind", TcpListener::bind("127.0.0.1:0"));
    attempt("udp_bind", std::net::UdpSocket::bind("127.0.0.1:0"));
    let sock = rw.join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock);
    attempt(
        "unix_bind",
        listener
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
    );
    attempt(
        "unix_connect",
        std::os::unix::net::UnixStream::connect(&sock),
    );
    attempt(
        "thread",
        std::thread::spawn(|| 1)
            .join()
            .map_err(|_| std::io::Error::other("panicked")),
    );
    attempt("unshare", unshare_user());
    std::io::stdout().flush().unwrap();
}

/// `unshare(CLONE_NEWUSER)` in this process: the seccomp filter must refuse it (a
/// spawned `unshare` binary would only show that Landlock forbids executing it).
#[allow(unsafe_code)]
fn unshare_user() -> std::io::Result<()> {
    // SAFETY: unshare takes a flags integer; on success only this test process changes.
    match unsafe { libc::unshare(libc::CLONE_NEWUSER) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn value<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
}

#[test]
fn a_confined_process_touches_only_its_paths_and_opens_no_network_socket() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let (ro, rw, outside) = (
        base.path().join("ro"),
        base.path().join("rw"),
        base.path().join("outside"),
    );
    for d in [&ro, &rw, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("in.txt"), "ro").unwrap();
    std::fs::write(rw.join("in.txt"), "rw").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD,
            format!(
                "{}|{}|{}|{port}",
                ro.display(),
                rw.display(),
                outside.display()
            ),
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // What it needs works.
    assert_eq!(value(&out, "read_ro"), "ok");
    assert_eq!(value(&out, "read_rw"), "ok");
    assert_eq!(value(&out, "write_rw"), "ok");
    assert_eq!(value(&out, "unix_bind"), "ok");
    assert_eq!(value(&out, "unix_connect"), "ok");
    assert_eq!(value(&out, "thread"), "ok");
    // Nothing else does.
    // Landlock: EACCES outside the plan's paths (the files exist).
    for denied in ["write_ro", "read_outside", "read_etc"] {
        assert!(
            value(&out, denied).contains("os error 13"),
            "{denied}: {out}"
        );
    }
    // seccomp: EPERM for sockets other than AF_UNIX and for namespaces.
    for refused in ["tcp_connect", "tcp_bind", "udp_bind", "unshare"] {
        assert!(
            value(&out, refused).contains("os error 1)"),
            "{refused}: {out}"
        );
    }
    assert!(!std::fs::exists(ro.join("new.txt")).unwrap());
    assert!(out.contains("applied=no_new_privs"), "{out}");
    assert!(out.contains("applied=seccomp"), "{out}");
    assert!(out.contains("applied=landlock"), "{out}");
}
