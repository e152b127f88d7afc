//! The path-escape suite: every way out of a root we could think of, against the host
//! capability that every file tool goes through.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::Workspace;
use oxydra_runtime::capabilities::fs;
use oxydra_runtime::capabilities::paths::PathError;
use oxydra_runtime::capabilities::vault;
use std::os::unix::fs::symlink;
use std::path::Path;

struct Fixture {
    _dir: tempfile::TempDir,
    ws: Workspace,
    outside: std::path::PathBuf,
}

/// A workspace with files in each root, a secret file outside it, and symlinks.
fn fixture() -> Fixture {
    // Not under /tmp: a host path there would read as the virtual /tmp root.
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(base).unwrap();
    let root = dir.path().join("ws");
    let ws = Workspace::open(&root).unwrap();
    let outside = dir.path().join("outside-secret.txt");
    std::fs::write(&outside, "OUTSIDE").unwrap();
    std::fs::write(root.join("shared/ok.txt"), "ok").unwrap();
    std::fs::create_dir_all(root.join("shared/sub/deeper")).unwrap();
    std::fs::write(root.join("shared/sub/deeper/f.txt"), "deep").unwrap();
    std::fs::write(root.join("tmp/t.txt"), "tmp").unwrap();
    std::fs::write(root.join("vault/key.txt"), "VAULT-SECRET").unwrap();
    // symlinks that leave the root
    symlink(&outside, root.join("shared/abs-out")).unwrap();
    symlink("../../outside-secret.txt", root.join("shared/rel-out")).unwrap();
    symlink("/etc", root.join("shared/etc-dir")).unwrap();
    symlink("../vault/key.txt", root.join("shared/to-vault")).unwrap();
    symlink("../vault", root.join("tmp/vault-dir")).unwrap();
    symlink("/", root.join("shared/rootlink")).unwrap();
    // symlinks that stay inside (allowed)
    symlink("ok.txt", root.join("shared/in-link")).unwrap();
    symlink("sub/deeper", root.join("shared/in-dir")).unwrap();
    // a loop
    symlink("loop-b", root.join("shared/loop-a")).unwrap();
    symlink("loop-a", root.join("shared/loop-b")).unwrap();
    Fixture {
        _dir: dir,
        ws,
        outside,
    }
}

fn denied(r: Result<impl std::fmt::Debug, PathError>) -> String {
    match r {
        Err(e @ (PathError::Denied { .. } | PathError::Invalid { .. })) => e.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn read(f: &Fixture, p: &str) -> Result<String, PathError> {
    fs::read_file(&f.ws, p, 1 << 20).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn allowed_paths_work() {
    let f = fixture();
    assert_eq!(read(&f, "/shared/ok.txt").unwrap(), "ok");
    assert_eq!(
        read(&f, "ok.txt").unwrap(),
        "ok",
        "relative paths mean /shared"
    );
    assert_eq!(read(&f, "/shared/./sub//deeper/f.txt").unwrap(), "deep");
    assert_eq!(read(&f, "/tmp/t.txt").unwrap(), "tmp");
    assert_eq!(
        read(&f, "/shared/in-link").unwrap(),
        "ok",
        "a symlink inside the root is followed"
    );
    assert_eq!(read(&f, "/shared/in-dir/f.txt").unwrap(), "deep");
    assert!(
        fs::list_dir(&f.ws, "/shared")
            .unwrap()
            .iter()
            .any(|e| e.name == "ok.txt")
    );
}

#[test]
fn dotdot_is_denied_everywhere() {
    let f = fixture();
    for p in [
        "../outside-secret.txt",
        "/shared/../vault/key.txt",
        "/shared/../../outside-secret.txt",
        "/shared/sub/../../tmp/t.txt",
        "/tmp/..",
        "..",
        "/shared/sub/deeper/../../../..",
        "shared/../../../etc/passwd",
    ] {
        let msg = denied(read(&f, p));
        assert!(msg.contains("`..` is not allowed"), "{p}: {msg}");
    }
}

#[test]
fn host_and_foreign_absolute_paths_are_denied() {
    let f = fixture();
    for p in [
        "/etc/passwd",
        "/",
        "/home",
        "/proc/self/environ",
        "/dev/zero",
        "/sharedx/ok.txt",
        "/usr/../etc/passwd",
    ] {
        let msg = denied(read(&f, p));
        assert!(
            msg.contains("outside the workspace") || msg.contains("`..`"),
            "{p}: {msg}"
        );
    }
    // Host paths of the workspace's own files, and of a file outside it, never read the
    // host file. (When the checkout lives under /tmp they name a file inside the virtual
    // /tmp root instead, which does not exist.)
    let host_path = f.ws.host_root().join("shared/ok.txt");
    for (p, content) in [
        (host_path.as_path(), "ok"),
        (f.outside.as_path(), "OUTSIDE"),
    ] {
        let r = read(&f, p.to_str().unwrap());
        assert!(
            !matches!(&r, Ok(text) if text == content),
            "{}: {r:?}",
            p.display()
        );
        if p.starts_with("/tmp") {
            assert!(matches!(r, Err(PathError::NotFound(_))), "{r:?}");
        } else {
            assert!(denied(r).contains("outside the workspace"));
        }
    }
    // A host path under /tmp names a file inside the virtual /tmp root, never the host's.
    std::fs::write("/tmp/oxydra-host-file.txt", "HOST").unwrap();
    let r = read(&f, "/tmp/oxydra-host-file.txt");
    assert!(matches!(r, Err(PathError::NotFound(_))), "{r:?}");
}

#[test]
fn symlinks_that_leave_the_root_are_denied() {
    let f = fixture();
    for p in [
        "/shared/abs-out",
        "/shared/rel-out",
        "/shared/etc-dir/passwd",
        "/shared/to-vault",
        "/tmp/vault-dir/key.txt",
        "/shared/rootlink/etc/passwd",
    ] {
        let msg = denied(read(&f, p));
        assert!(
            msg.contains("leads outside the root") || msg.contains("refused"),
            "{p}: {msg}"
        );
    }
    // listing through an escaping symlink
    denied(fs::list_dir(&f.ws, "/shared/etc-dir"));
    // writing through an escaping directory symlink must not create anything outside
    denied(fs::write_file(&f.ws, "/shared/etc-dir/oxydra-test", b"x"));
    assert!(!Path::new("/etc/oxydra-test").exists());
    // the outside file is untouched after a write attempt through the link
    let _ = fs::write_file(&f.ws, "/shared/abs-out", b"overwritten");
    assert_eq!(std::fs::read_to_string(&f.outside).unwrap(), "OUTSIDE");
}

#[test]
fn symlink_loops_are_refused() {
    let f = fixture();
    let r = read(&f, "/shared/loop-a");
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn nul_bytes_and_overlong_paths_are_invalid() {
    let f = fixture();
    assert!(denied(read(&f, "/shared/ok.txt\0.png")).contains("NUL byte"));
    assert!(denied(read(&f, "\0")).contains("NUL byte"));
    let long_component = format!("/shared/{}", "a".repeat(256));
    assert!(denied(read(&f, &long_component)).contains("component is 256 bytes"));
    let long_path = format!("/shared/{}", "d/".repeat(2100));
    assert!(denied(read(&f, &long_path)).contains("limit is 4096"));
    assert!(denied(read(&f, "")).contains("empty"));
}

#[test]
fn the_vault_is_unreachable_for_file_tools() {
    let f = fixture();
    for p in [
        "/vault/key.txt",
        "/vault",
        "/vault/",
        "//vault/key.txt",
        "/./vault/key.txt",
    ] {
        let msg = denied(read(&f, p));
        assert!(
            msg.contains("cannot read the vault") && msg.contains("vault_copyto"),
            "{p}: {msg}"
        );
    }
    assert!(denied(fs::list_dir(&f.ws, "/vault")).contains("root /vault"));
    denied(fs::stat(&f.ws, "/vault/key.txt"));
    assert!(denied(fs::write_file(&f.ws, "/vault/new.txt", b"x")).contains("not writable"));
    denied(fs::remove(&f.ws, "/vault/key.txt"));
    denied(fs::create_dir(&f.ws, "/vault/d"));
    assert_eq!(
        std::fs::read_to_string(f.ws.host_root().join("vault/key.txt")).unwrap(),
        "VAULT-SECRET"
    );
}

#[test]
fn the_vault_capability_reads_only_the_vault() {
    let f = fixture();
    assert_eq!(
        vault::read_file(&f.ws, "/vault/key.txt", 1024).unwrap(),
        b"VAULT-SECRET"
    );
    for p in ["/shared/ok.txt", "/tmp/t.txt", "ok.txt"] {
        assert!(
            denied(vault::read_file(&f.ws, p, 1024)).contains("reads only /vault"),
            "{p}"
        );
    }
    denied(vault::read_file(&f.ws, "/vault/../shared/ok.txt", 1024));
}

#[test]
fn device_files_and_fifos_are_never_opened() {
    let f = fixture();
    let root = f.ws.host_root().to_path_buf();
    symlink("/dev/zero", root.join("shared/zero")).unwrap(); // leaves the root too
    denied(read(&f, "/shared/zero"));
    let fifo = root.join("shared/pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let msg = denied(read(&f, "/shared/pipe"));
    assert!(msg.contains("not a regular file"), "{msg}");
    let msg = denied(fs::write_file(&f.ws, "/shared/pipe", b"x"));
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn roots_cannot_be_deleted_or_overwritten() {
    let f = fixture();
    for p in ["/shared", "/tmp", "/shared/", "/tmp/."] {
        assert!(
            denied(fs::remove(&f.ws, p)).contains("a root cannot be deleted"),
            "{p}"
        );
    }
    assert!(matches!(
        fs::write_file(&f.ws, "/shared", b"x"),
        Err(PathError::IsADirectory(_))
    ));
}

#[test]
fn delete_removes_a_symlink_not_its_target() {
    let f = fixture();
    fs::remove(&f.ws, "/shared/abs-out").unwrap();
    assert_eq!(std::fs::read_to_string(&f.outside).unwrap(), "OUTSIDE");
    fs::remove(&f.ws, "/tmp/vault-dir").unwrap();
    assert!(f.ws.host_root().join("vault/key.txt").exists());
}

#[test]
fn writes_are_atomic_and_create_parents() {
    let f = fixture();
    fs::write_file(&f.ws, "/tmp/a/b/c.txt", b"one").unwrap();
    fs::write_file(&f.ws, "/tmp/a/b/c.txt", b"two").unwrap();
    assert_eq!(read(&f, "/tmp/a/b/c.txt").unwrap(), "two");
    let leftovers: Vec<_> = std::fs::read_dir(f.ws.host_root().join("tmp/a/b"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files are left behind");
}

#[test]
fn size_limits_are_reported() {
    let f = fixture();
    std::fs::write(f.ws.host_root().join("shared/big.bin"), vec![b'x'; 5000]).unwrap();
    let r = fs::read_file(&f.ws, "/shared/big.bin", 4096);
    assert!(
        matches!(&r, Err(PathError::TooLarge(m)) if m.contains("5000 bytes") && m.contains("4096")),
        "{r:?}"
    );
}

#[test]
fn errors_name_virtual_paths_never_host_paths() {
    let f = fixture();
    let host = f.ws.host_root().display().to_string();
    for r in [
        read(&f, "/shared/missing.txt"),
        read(&f, "/shared/abs-out"),
        read(&f, "/shared/sub"),
    ] {
        let msg = r.unwrap_err().to_string();
        assert!(!msg.contains(&host), "{msg}");
        assert!(msg.contains("/shared/"), "{msg}");
    }
}
