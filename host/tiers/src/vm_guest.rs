//! Inside the micro_vm guest: `oxydra-host vm-guest`, PID 1 once the initramfs has
//! mounted the read-only root (`guest-images/microvm/init`). It reads the plan the
//! runner wrote on the second disk ([`GuestPlan`]), mounts the workspace's shares (9p)
//! at the paths they have on the host, makes the root read-only, opens the bridges
//! between the runtime's unix sockets and vsock, starts `serve` as the unprivileged
//! user, reaps orphans, and ends the VM when `serve` exits, saying how on the console.
//!
//! Ports (the guest's own, reached from the host with `CONNECT <port>`): [`GATEWAY_PORT`]
//! (the gateway) and [`CONTROL_PORT`] (`stop`). The guest reaches the host's
//! `<uds>_<port>` for each [`Outbound`] bridge: the egress proxy, the shell sidecar, MCP
//! servers' containers.

use crate::vsock;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The guest's gateway bridge: connections are copied to the runtime's gateway socket.
pub const GATEWAY_PORT: u32 = 1024;
/// `stop\n` on this port: SIGTERM to the runtime (the VM ends when it has exited).
pub const CONTROL_PORT: u32 = 1025;
/// Host ports the guest connects to.
pub const EGRESS_PORT: u32 = 2048;
pub const SHELL_PORT: u32 = 2049;
/// MCP server `i` (in the order of the plan) is `MCP_PORT_BASE + i`.
pub const MCP_PORT_BASE: u32 = 2100;
/// With a VMM that has no shared-directory device (Firecracker), share `i` is served
/// by the runner's 9P2000.L server on host port `SHARE_PORT_BASE + i`
/// ([`crate::share9p`]).
pub const SHARE_PORT_BASE: u32 = 2300;

/// The console line that says how the runtime ended: `<prefix><code>` or
/// `<prefix>signal <n>`.
pub const EXIT_PREFIX: &str = "oxydra-vm: runtime exited with ";
/// The console line of a guest that could not start the runtime.
pub const BOOT_FAILED_PREFIX: &str = "oxydra-vm: boot failed: ";

/// The console line that says the guest has read its plan (the runner deletes it then).
pub const PLAN_READ: &str = "oxydra-vm: plan read";

/// The serial number of the disk that holds the plan (the root disk's is `oxydra-root`).
pub const PLAN_SERIAL: &str = "oxydra-plan";
pub const ROOT_SERIAL: &str = "oxydra-root";

/// Where the runtime's sockets live inside the guest (a tmpfs).
pub const GUEST_RUN: &str = "/run/oxydra";

/// What the runner tells the guest: the second disk holds it as JSON, then zeros.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuestPlan {
    pub shares: Vec<GuestShare>,
    /// Small files (config files named one by one) written read-only at their paths.
    pub files: Vec<GuestFile>,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The runtime's whole environment.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Who the runtime runs as (never root when the runner is root).
    pub uid: u32,
    pub gid: u32,
    /// `[resources] max_processes`: RLIMIT_NPROC of the runtime's user.
    pub max_processes: Option<u64>,
    /// Guest unix sockets whose connections go to a host port.
    pub outbound: Vec<Outbound>,
    /// The runtime's gateway socket, which [`GATEWAY_PORT`] reaches.
    pub gateway: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestShare {
    /// The 9p mount tag (virtio-9p).
    pub tag: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// Served over vsock on this host port instead (mounted with `trans=fd`).
    #[serde(default)]
    pub port: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestFile {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbound {
    pub path: PathBuf,
    pub port: u32,
}

/// Say why the guest cannot go on, and end the VM.
fn fail(why: &str) -> ! {
    println!("\n{BOOT_FAILED_PREFIX}{why}");
    end_vm()
}

/// Flush what was written and reset: both VMMs end the VM then (QEMU runs with
/// `-no-reboot`; Firecracker ends on a guest reset).
fn end_vm() -> ! {
    let _ = std::io::stdout().flush();
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The plan's disk: the one whose virtio serial is [`PLAN_SERIAL`] (QEMU), else the
/// one that starts with the plan's JSON (Firecracker gives its disks no serial we
/// choose).
fn plan_disk() -> PathBuf {
    let mut disks: Vec<PathBuf> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("vd"))
        .map(|e| e.path())
        .collect();
    disks.sort();
    for d in &disks {
        let s = std::fs::read_to_string(d.join("serial")).unwrap_or_default();
        if s.trim() == PLAN_SERIAL {
            return Path::new("/dev").join(d.file_name().unwrap_or_default());
        }
    }
    for d in &disks {
        let dev = Path::new("/dev").join(d.file_name().unwrap_or_default());
        let mut first = [0u8; 1];
        if std::fs::File::open(&dev)
            .and_then(|mut f| f.read_exact(&mut first))
            .is_ok()
            && first[0] == b'{'
        {
            return dev;
        }
    }
    PathBuf::from("/dev/vdb")
}

fn read_plan() -> Result<GuestPlan, String> {
    let dev = plan_disk();
    let mut bytes = Vec::new();
    std::fs::File::open(&dev)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("reading the plan from {}: {e}", dev.display()))?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).map_err(|e| format!("the plan is not valid: {e}"))
}

fn mount(src: &str, target: &str, fstype: &str, flags: rustix::mount::MountFlags, data: &str) {
    if let Err(e) = std::fs::create_dir_all(target) {
        fail(&format!("mkdir {target}: {e}"));
    }
    let data = match std::ffi::CString::new(data) {
        Ok(d) => d,
        Err(e) => fail(&format!("mount options {data:?}: {e}")),
    };
    if let Err(e) = rustix::mount::mount(src, target, fstype, flags, Some(data.as_c_str())) {
        fail(&format!("mount {fstype} {src} on {target}: {e}"));
    }
}

/// A thread, or `None` when the guest cannot start one (the connection is dropped).
fn spawn(f: impl FnOnce() + Send + 'static) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().spawn(f).ok()
}

/// A bridge's accept loop: without it the guest cannot work.
fn spawn_loop(what: &str, f: impl FnOnce() + Send + 'static) {
    if spawn(f).is_none() {
        fail(&format!("no thread for {what}"));
    }
}

/// Copy both ways until either side ends.
fn splice(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let Some(one) = spawn(move || {
        let (mut from, mut to) = (a, b2);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    }) else {
        return;
    };
    let (mut from, mut to) = (b, a2);
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = one.join();
}

/// The runtime's outbound socket `o.path`: each connection goes to host port `o.port`.
fn outbound(o: Outbound) {
    let _ = std::fs::remove_file(&o.path);
    if let Some(d) = o.path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let listener = match UnixListener::bind(&o.path) {
        Ok(l) => l,
        Err(e) => fail(&format!("bind {}: {e}", o.path.display())),
    };
    // The runtime is not root: it must be able to connect.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&o.path, std::fs::Permissions::from_mode(0o666));
    let what = o.path.display().to_string();
    spawn_loop(&what, move || {
        for c in listener.incoming() {
            let Ok(c) = c else { continue };
            let port = o.port;
            spawn(move || match vsock::connect(vsock::HOST_CID, port) {
                Ok(v) => splice(c, v),
                Err(e) => eprintln!("oxydra-vm: host port {port}: {e}"),
            });
        }
    });
}

/// Connections to [`GATEWAY_PORT`] go to the runtime's gateway socket.
fn gateway(path: PathBuf) {
    let listener = match vsock::Listener::bind(GATEWAY_PORT) {
        Ok(l) => l,
        Err(e) => fail(&format!("vsock port {GATEWAY_PORT}: {e}")),
    };
    spawn_loop("the gateway bridge", move || {
        loop {
            let Ok(v) = listener.accept() else { continue };
            let path = path.clone();
            spawn(move || {
                if let Ok(u) = UnixStream::connect(&path) {
                    splice(v, u);
                }
            });
        }
    });
}

/// `stop` on [`CONTROL_PORT`]: SIGTERM to the runtime.
fn control(runtime: Arc<Mutex<Option<rustix::process::Pid>>>) {
    let listener = match vsock::Listener::bind(CONTROL_PORT) {
        Ok(l) => l,
        Err(e) => fail(&format!("vsock port {CONTROL_PORT}: {e}")),
    };
    spawn_loop("the control port", move || {
        loop {
            let Ok(mut c) = listener.accept() else {
                continue;
            };
            let mut line = String::new();
            let _ = BufReader::new(&c).read_line(&mut line);
            let pid = *runtime
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let answer = match (line.trim(), pid) {
                ("stop", Some(pid)) => {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                    "ok\n"
                }
                ("stop", None) => "not running\n",
                _ => "unknown request\n",
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
}

/// PID 1 of the guest. Never returns: the VM ends with the runtime.
pub fn run() -> ! {
    use rustix::mount::MountFlags;
    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        eprintln!(
            "vm-guest is the micro_vm guest's init (PID 1 inside the VM the runner boots); it does not run on a host"
        );
        std::process::exit(2);
    }
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount("proc", "/proc", "proc", quiet, "");
    mount("sys", "/sys", "sysfs", quiet, "");
    mount("run", "/run", "tmpfs", quiet, "mode=0755,size=16m");
    mount(
        "tmp",
        "/tmp",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777,size=64m",
    );
    let plan = match read_plan() {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    println!("{PLAN_READ}");
    // Parents before children.
    let mut shares = plan.shares.clone();
    shares.sort_by_key(|s| s.path.components().count());
    for s in &shares {
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
        if s.read_only {
            flags |= MountFlags::RDONLY;
        }
        let path = s.path.display().to_string();
        match s.port {
            None => mount(
                &s.tag,
                &path,
                "9p",
                flags,
                "trans=virtio,version=9p2000.L,msize=262144,cache=mmap",
            ),
            Some(port) => {
                // The kernel keeps its own reference to the connection once mounted.
                let conn = match vsock::connect(vsock::HOST_CID, port) {
                    Ok(c) => c,
                    Err(e) => fail(&format!(
                        "connecting to the runner's 9p server for {path} (vsock port {port}): {e}"
                    )),
                };
                use std::os::fd::AsRawFd;
                let fd = conn.as_raw_fd();
                mount(
                    &s.tag,
                    &path,
                    "9p",
                    flags,
                    &format!(
                        "trans=fd,rfdno={fd},wfdno={fd},version=9p2000.L,msize=65560,cache=mmap"
                    ),
                );
            }
        }
    }
    for f in &plan.files {
        if let Some(d) = f.path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::write(&f.path, &f.text).and_then(|()| {
            std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o444))
        }) {
            fail(&format!("writing {}: {e}", f.path.display()));
        }
    }
    if let Err(e) = std::fs::create_dir_all(GUEST_RUN) {
        fail(&format!("mkdir {GUEST_RUN}: {e}"));
    }
    let _ = rustix::fs::chown(
        GUEST_RUN,
        Some(rustix::fs::Uid::from_raw(plan.uid)),
        Some(rustix::fs::Gid::from_raw(plan.gid)),
    );
    // Everything is mounted: the root (the overlay over the read-only disk) is made
    // read-only too; /run and /tmp stay the guest's scratch.
    if let Err(e) = rustix::mount::mount_remount("/", MountFlags::RDONLY, "") {
        fail(&format!("remounting / read-only: {e}"));
    }
    for o in plan.outbound.clone() {
        outbound(o);
    }
    gateway(plan.gateway.clone());
    let runtime = Arc::new(Mutex::new(None));
    control(runtime.clone());
    if let Some(n) = plan.max_processes {
        // Inherited by the runtime; counted against its (non-root) user.
        let limit = rustix::process::Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nproc, limit) {
            fail(&format!("RLIMIT_NPROC {n}: {e}"));
        }
    }
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(&plan.program)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.cwd)
        .uid(plan.uid)
        .gid(plan.gid)
        .stdin(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => fail(&format!("starting {}: {e}", plan.program.display())),
    };
    let pid = rustix::process::Pid::from_child(&child);
    *runtime
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pid);
    // Reap every orphan; the runtime's end is the VM's.
    let how = loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((p, status))) if p == pid => {
                break if let Some(code) = status.exit_status() {
                    format!("status {code}")
                } else if let Some(sig) = status.terminating_signal() {
                    format!("signal {sig}")
                } else {
                    "an unknown status".to_string()
                };
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => break format!("an unknown status (wait: {e})"),
        }
    };
    // On a line of its own, whatever the runtime wrote last.
    println!("\n{EXIT_PREFIX}{how}");
    end_vm()
}

/// `serve --in-vm`: this process and its children gain no privileges (set before it
/// reads any input).
pub fn set_no_new_privs() -> Result<(), String> {
    rustix::thread::set_no_new_privs(true).map_err(|e| e.to_string())
}
