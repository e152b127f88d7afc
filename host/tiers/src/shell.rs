//! The shell daemon (`oxydra-host shell-daemon`): what runs in the shell sidecar. It
//! answers the runtime's `oxydra:shell/exec` requests on a unix socket (one JSON line
//! each way, `oxydra_runtime::capabilities::shell::wire`) by running `/bin/sh -c` in a
//! directory under its roots (`/shared`, `/tmp`), with an empty environment but `PATH`,
//! `HOME` and `TZ`.
//!
//! Each command gets its own process group, and the group is killed when the command
//! ends or times out, so nothing it started outlives it (a fork bomb included: the group
//! is killed until it is empty). Each command's `oom_score_adj` is raised to 1000, so
//! when the sidecar's memory limit is hit the kernel kills the command, not the daemon.
//! The container's limits (pids, memory, no network, no vault) are the boundary; the
//! daemon only keeps one command from taking the others down with it.

use oxydra_runtime::capabilities::shell::wire::{Output, Request, Response};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commands running at once; more are refused with a message (each holds a thread).
const MAX_RUNNING: usize = 8;
/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// The `PATH` commands get.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Listen on `socket` and answer until the process is stopped. `roots` are the
/// directories a command may run in (and below).
pub fn serve(socket: &Path, roots: &[PathBuf]) -> Result<(), String> {
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| {
            r.canonicalize()
                .map_err(|e| format!("root {}: {e}", r.display()))
        })
        .collect::<Result<_, _>>()?;
    if roots.is_empty() {
        return Err("give at least one --root directory".into());
    }
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).map_err(|e| format!("socket {}: {e}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("socket {}: {e}", socket.display()))?;
    println!("shell-daemon ready on {}", socket.display());
    let roots = Arc::new(roots);
    let running = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let (roots, running) = (roots.clone(), running.clone());
        let spawned = std::thread::Builder::new()
            .name("shell-exec".into())
            .spawn(move || connection(conn, &roots, &running));
        if let Err(e) = spawned {
            eprintln!("shell-daemon: no thread for a request: {e}");
        }
    }
    Ok(())
}

fn connection(conn: UnixStream, roots: &[PathBuf], running: &AtomicUsize) {
    let mut line = String::new();
    let read = BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line);
    let response = match read {
        Ok(0) | Err(_) => return,
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("the request is not valid: {e}"),
            },
            Ok(Request::Ping) => Response::Pong,
            Ok(Request::Exec {
                command,
                cwd,
                timeout_ms,
                max_output_bytes,
            }) => {
                if running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
                    running.fetch_sub(1, Ordering::SeqCst);
                    Response::Error {
                        message: format!(
                            "{MAX_RUNNING} commands are already running in the shell; wait for one to finish"
                        ),
                    }
                } else {
                    let r = exec(
                        &command,
                        &cwd,
                        roots,
                        Duration::from_millis(u64::from(timeout_ms)),
                        max_output_bytes,
                    );
                    running.fetch_sub(1, Ordering::SeqCst);
                    match r {
                        Ok(o) => Response::Done(o),
                        Err(message) => Response::Error { message },
                    }
                }
            }
        },
    };
    if let Ok(mut text) = serde_json::to_vec(&response) {
        text.push(b'\n');
        let _ = (&conn).write_all(&text);
    }
}

/// `dir`, resolved, when it is one of `roots` or below one.
fn inside(dir: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let real = Path::new(dir)
        .canonicalize()
        .map_err(|e| format!("working directory {dir}: {e}"))?;
    if !real.is_dir() {
        return Err(format!("working directory {dir} is not a directory"));
    }
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(real)
    } else {
        Err(format!(
            "working directory {dir} resolves to {}, outside {}",
            real.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ))
    }
}

/// One stream, read to its end: the first `max` bytes kept, the rest counted as cut.
struct Capture {
    bytes: Mutex<Vec<u8>>,
    cut: std::sync::atomic::AtomicBool,
}

fn capture(
    mut from: impl Read + Send + 'static,
    max: usize,
) -> (Arc<Capture>, std::sync::mpsc::Receiver<()>) {
    let c = Arc::new(Capture {
        bytes: Mutex::new(Vec::new()),
        cut: std::sync::atomic::AtomicBool::new(false),
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let out = c.clone();
    let _ = std::thread::Builder::new()
        .name("shell-output".into())
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut kept = out
                            .bytes
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let room = max.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                        if n > room {
                            out.cut.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
    (c, done_rx)
}

/// Kill the process group `pgid` until it is empty (a fork bomb forks while it dies).
fn kill_group(pgid: i32) {
    let Some(pid) = rustix::process::Pid::from_raw(pgid) else {
        return;
    };
    for _ in 0..500 {
        if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exec(
    command: &str,
    cwd: &str,
    roots: &[PathBuf],
    timeout: Duration,
    max: usize,
) -> Result<Output, String> {
    let dir = inside(cwd, roots)?;
    let started = Instant::now();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", roots.last().unwrap_or(&dir))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    if let Ok(tz) = std::env::var("TZ") {
        cmd.env("TZ", tz);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start /bin/sh in the sidecar: {e}"))?;
    let pid = child.id() as i32;
    // The command, not the daemon, is what the kernel kills at the memory limit (its
    // children inherit the score).
    let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "1000");
    let (out, out_done) = match child.stdout.take() {
        Some(s) => capture(s, max),
        None => return Err("no stdout pipe".into()),
    };
    let (err, err_done) = match child.stderr.take() {
        Some(s) => capture(s, max),
        None => return Err("no stderr pipe".into()),
    };
    let deadline = started + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    // Whatever it left behind (background jobs, a fork bomb) goes with it.
    kill_group(pid);
    let status = match status {
        Some(s) => Some(s),
        None => child.wait().ok(),
    };
    // The pipes close when the group is gone; a process that left the group (setsid)
    // and kept them open is not waited for.
    let _ = out_done.recv_timeout(Duration::from_secs(2));
    let _ = err_done.recv_timeout(Duration::from_secs(2));
    let text = |c: &Capture| {
        String::from_utf8_lossy(
            &c.bytes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    };
    Ok(Output {
        stdout: text(&out),
        stderr: text(&err),
        truncated: out.cut.load(Ordering::SeqCst) || err.cut.load(Ordering::SeqCst),
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        signal: status.and_then(|s| s.signal()),
        timed_out,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn run(cmd: &str, root: &Path, timeout_ms: u64, max: usize) -> Result<Output, String> {
        exec(
            cmd,
            &root.display().to_string(),
            &[root.canonicalize().unwrap()],
            Duration::from_millis(timeout_ms),
            max,
        )
    }

    #[test]
    fn a_command_runs_in_its_directory_and_its_output_is_capped() {
        let d = tempfile::tempdir().unwrap();
        let o = run("pwd; echo err >&2; exit 3", d.path(), 5000, 1024).unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(
            o.stdout.trim(),
            d.path().canonicalize().unwrap().display().to_string()
        );
        assert_eq!(o.stderr, "err\n");
        assert!(!o.truncated && !o.timed_out);
        let o = run("yes | head -c 100000", d.path(), 5000, 1000).unwrap();
        assert_eq!(o.stdout.len(), 1000);
        assert!(o.truncated);
        // The environment is empty but PATH, HOME (and TZ).
        let o = run(
            "env | sort | cut -d= -f1 | tr '\\n' ' '",
            d.path(),
            5000,
            1024,
        )
        .unwrap();
        assert!(!o.stdout.contains("CARGO"), "{}", o.stdout);
        assert!(o.stdout.contains("PATH"), "{}", o.stdout);
    }

    #[test]
    fn a_timeout_kills_the_command_and_what_it_started() {
        let d = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let o = run("sleep 30 & sleep 30; echo never", d.path(), 300, 1024).unwrap();
        assert!(o.timed_out);
        assert_eq!(o.exit_code, None);
        assert_eq!(o.signal, Some(9));
        assert!(!o.stdout.contains("never"));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // Background jobs do not outlive a command that ended by itself either.
        let o = run("sleep 30 & echo $!", d.path(), 5000, 1024).unwrap();
        assert_eq!(o.exit_code, Some(0));
        let pid: i32 = o.stdout.trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                // A zombie reaped by init shortly; its state says so.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
            }
        );
    }

    #[test]
    fn directories_outside_the_roots_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let roots = [root.canonicalize().unwrap()];
        for bad in [
            d.path().to_path_buf(),
            root.join("out"),
            root.join("missing"),
        ] {
            let e = exec(
                "true",
                &bad.display().to_string(),
                &roots,
                Duration::from_secs(1),
                10,
            )
            .unwrap_err();
            assert!(e.contains("working directory"), "{e}");
        }
    }
}
