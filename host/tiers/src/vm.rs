//! The `micro_vm` tier: the runtime in a virtual machine of its own. One guest design
//! (an uncompressed kernel booted directly, a read-only root disk, the workspace's
//! directories as 9p shares, no network device, vsock to the host) behind a [`Vmm`]:
//! QEMU's `microvm` machine, with KVM when it works here and TCG otherwise; or
//! Firecracker, which has no shared-directory device: its guest mounts the workspace
//! from the runner's own 9P2000.L server over vsock ([`crate::share9p`]).
//!
//! The host speaks Firecracker's hybrid vsock, which `vhost-device-vsock` gives QEMU. The host connects to the VM's unix socket and says
//! `CONNECT <port>\n` ([`hybrid_connect`]); the guest's connections to the host's port
//! `P` arrive on `<uds>_P`, where the runner listens and forwards to its own sockets
//! (the egress proxy, the shell sidecar, MCP servers' containers).

use crate::vm_guest::{self, GuestPlan, GuestShare};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// KVM when [`kvm_usable`], else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Whether KVM can run a stock guest kernel here; `Err` says why not.
pub fn kvm_usable() -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("there is no /dev/kvm".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is PVM (kvm_pvm): stock guest kernels fail under it".into());
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpu
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    {
        return Err("the CPU shows no vmx or svm flag".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm cannot be opened: {e}"))
}

/// A share of a host directory, mounted at the same path inside.
#[derive(Debug, Clone)]
pub struct Share {
    pub path: PathBuf,
    pub read_only: bool,
}

/// The guest's images (`scripts/build-vm-images.sh` builds them).
#[derive(Debug, Clone)]
pub struct Images {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
}

impl Images {
    /// The three files of a directory built by `scripts/build-vm-images.sh`.
    pub fn in_dir(dir: &Path) -> Images {
        Images {
            kernel: dir.join("vmlinux"),
            initrd: dir.join("initrd.cpio"),
            rootfs: dir.join("runtime.ext4"),
        }
    }

    /// Each file exists; else what is missing and how to build it.
    pub fn check(&self, key: &str) -> Result<(), String> {
        for p in [&self.kernel, &self.initrd, &self.rootfs] {
            if !p.is_file() {
                return Err(format!(
                    "the micro_vm guest image {} is missing ({key}); build it with ./scripts/build-vm-images.sh",
                    p.display()
                ));
            }
        }
        Ok(())
    }
}

/// Which VMM runs the guest.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `qemu-system-x86_64 -M microvm`.
    Qemu { binary: PathBuf, accel: Accel },
    /// `firecracker --no-api --config-file …`, its config made from `template` (the
    /// operator's sections of a Firecracker config file, [`firecracker_template`]) and
    /// the guest design's boot source, disks and vsock.
    Firecracker {
        binary: PathBuf,
        template: serde_json::Map<String, serde_json::Value>,
    },
}

/// How one VM is started.
#[derive(Debug, Clone)]
pub struct VmLaunch {
    pub backend: Backend,
    /// `vhost-device-vsock` (QEMU's vsock device).
    pub vhost_vsock: PathBuf,
    pub images: Images,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub shares: Vec<Share>,
    /// What the guest's init does: its `shares` are filled in from [`Self::shares`].
    pub guest: GuestPlan,
    /// The VM's own directory (sockets, its plan disk): the runner's alone.
    pub dir: PathBuf,
    /// Host ports the guest may connect to, each forwarded to a host unix socket.
    pub forwards: Vec<(u32, PathBuf)>,
    /// When the runner is root: the user QEMU drops to before the guest runs.
    pub run_as: Option<(u32, u32)>,
}

/// The VMM behind a launch: how it is started, and what it is called.
pub trait Vmm {
    /// The VMM's command line (and what it needs written first). `vhu`: the vhost-user
    /// socket of the vsock device (QEMU); `uds`: the hybrid vsock socket; `plan`: the
    /// plan disk.
    fn command(
        &self,
        l: &VmLaunch,
        vhu: &Path,
        uds: &Path,
        plan: &Path,
    ) -> Result<tokio::process::Command, String>;
    /// What `status` shows, e.g. `qemu microvm (tcg: …)`.
    fn describe(&self) -> String;
    /// Whether QEMU's vsock device (`vhost-device-vsock`) runs beside it.
    fn needs_vhost_vsock(&self) -> bool;
    /// Whether the shares reach the guest over vsock from the runner's 9p server (the
    /// VMM has no shared-directory device).
    fn shares_over_vsock(&self) -> bool;
    /// The VMM's binary.
    fn binary(&self) -> &Path;
    /// Its name in messages: `QEMU`, `Firecracker`.
    fn name(&self) -> &'static str;
    /// What to do when it cannot be started.
    fn install_hint(&self) -> &'static str;
    /// What it is held to by its own means (its sandbox, its user).
    fn protections(&self, l: &VmLaunch) -> Vec<String>;
}

/// QEMU `-M microvm`.
pub struct Qemu {
    pub binary: PathBuf,
    pub kvm: bool,
    /// Why KVM is not used (with [`Accel::Auto`]).
    pub why_tcg: Option<String>,
}

/// The kernel command line: the serial console, quiet, no PCI (microvm has none), no
/// reboot loop, and a fixed TSC (under TCG the guest otherwise sometimes hangs
/// calibrating it).
const CMDLINE: &str =
    "console=ttyS0 quiet loglevel=3 pci=off panic=-1 tsc_early_khz=2500000 no_timer_check";

impl Vmm for Qemu {
    fn command(
        &self,
        l: &VmLaunch,
        vhu: &Path,
        _uds: &Path,
        plan: &Path,
    ) -> Result<tokio::process::Command, String> {
        let mut c = tokio::process::Command::new(&self.binary);
        let mem = l.memory_mib;
        let d = |p: &Path| p.display().to_string();
        c.args(["-M", "microvm,memory-backend=mem"]);
        if self.kvm {
            c.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            c.args(["-accel", "tcg", "-cpu", "max"]);
        }
        c.args(["-m", &format!("{mem}M"), "-smp", &l.vcpus.to_string()]);
        c.args([
            "-object",
            &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        ]);
        c.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ]);
        c.args([
            "-kernel",
            &d(&l.images.kernel),
            "-initrd",
            &d(&l.images.initrd),
        ]);
        c.args(["-append", CMDLINE]);
        c.args([
            "-chardev",
            &format!("socket,id=vsock,path={}", d(vhu)),
            "-device",
            "vhost-user-vsock-device,chardev=vsock",
        ]);
        for (id, file, serial) in [
            ("root", &l.images.rootfs, vm_guest::ROOT_SERIAL),
            ("plan", &plan.to_path_buf(), vm_guest::PLAN_SERIAL),
        ] {
            c.args([
                "-drive",
                &format!(
                    "id={id},file={},format=raw,if=none,readonly=on",
                    comma_safe(file)?
                ),
                "-device",
                &format!("virtio-blk-device,drive={id},serial={serial}"),
            ]);
        }
        for (i, s) in l.shares.iter().enumerate() {
            let ro = if s.read_only { ",readonly=on" } else { "" };
            c.args([
                "-fsdev",
                &format!(
                    "local,id=fs{i},path={},security_model=none{ro}",
                    comma_safe(&s.path)?
                ),
                "-device",
                &format!("virtio-9p-device,fsdev=fs{i},mount_tag={}", tag(i)),
            ]);
        }
        // QEMU's own seccomp filter; as root it drops to the runtime's user first.
        match l.run_as {
            Some((uid, gid)) => {
                c.args([
                    "-sandbox",
                    "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
                    "-runas",
                    &format!("{uid}:{gid}"),
                ]);
            }
            None => {
                c.args([
                    "-sandbox",
                    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
                ]);
            }
        }
        Ok(c)
    }

    fn describe(&self) -> String {
        match (&self.why_tcg, self.kvm) {
            (_, true) => "qemu microvm (kvm)".into(),
            (Some(why), false) => format!("qemu microvm (tcg: {why})"),
            (None, false) => "qemu microvm (tcg)".into(),
        }
    }

    fn needs_vhost_vsock(&self) -> bool {
        true
    }

    fn shares_over_vsock(&self) -> bool {
        false
    }

    fn binary(&self) -> &Path {
        &self.binary
    }

    fn name(&self) -> &'static str {
        "QEMU"
    }

    fn install_hint(&self) -> &'static str {
        "install it with `apt-get install qemu-system-x86`, or set [micro_vm] qemu in runner.toml"
    }

    fn protections(&self, l: &VmLaunch) -> Vec<String> {
        let mut a = vec!["QEMU's seccomp sandbox on".to_string()];
        if let Some((uid, gid)) = l.run_as {
            a.push(format!("QEMU runs as {uid}:{gid}, not root"));
        }
        a
    }
}

/// Firecracker, from a config file the runner writes (`--no-api`: no API socket).
pub struct Firecracker {
    pub binary: PathBuf,
    pub template: serde_json::Map<String, serde_json::Value>,
}

/// Firecracker's kernel command line: a keyboard-controller reset ends the VM
/// (`reboot=k`), as does a panic.
const FIRECRACKER_CMDLINE: &str = "console=ttyS0 quiet loglevel=3 reboot=k panic=-1 pci=off";

/// The sections of a Firecracker config file an operator's template may hold, and why
/// the others are not theirs.
fn template_section(key: &str) -> Result<(), String> {
    match key {
        "machine-config" | "cpu-config" | "balloon" | "entropy" | "metrics" => Ok(()),
        "boot-source" | "drives" | "vsock" | "logger" => Err(format!(
            "\"{key}\" is the runner's: it boots the guest images of [micro_vm] images_dir with their disks, vsock and log; remove it"
        )),
        "network-interfaces" | "mmds-config" => Err(format!(
            "\"{key}\": the micro_vm guest has no network device (it reaches the model through the runner's egress proxy over vsock); remove it"
        )),
        _ => Err(format!(
            "\"{key}\" is not a section of a Firecracker config file the runner knows (machine-config, cpu-config, balloon, entropy, metrics)"
        )),
    }
}

/// `guest_images.firecracker_oxydra_vm_config`: a Firecracker config file (JSON) whose
/// sections the runner adds to the ones it makes. `machine-config`'s `vcpu_count` and
/// `mem_size_mib` are the user's `[resources]` (or `[micro_vm] memory_mib`) whatever
/// it says.
pub fn firecracker_template(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let key = "guest_images.firecracker_oxydra_vm_config";
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{key} = {}: {e}; write a Firecracker config file there (machine-config, cpu-config, balloon, entropy or metrics) or remove the key",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{key} = {}: not JSON ({e}); it is a Firecracker config file",
            path.display()
        )
    })?;
    let serde_json::Value::Object(map) = v else {
        return Err(format!(
            "{key} = {}: a Firecracker config file is a JSON object",
            path.display()
        ));
    };
    for (k, v) in &map {
        template_section(k).map_err(|e| format!("{key} = {}: {e}", path.display()))?;
        if !v.is_object() {
            return Err(format!(
                "{key} = {}: \"{k}\" is an object in a Firecracker config file",
                path.display()
            ));
        }
    }
    Ok(map)
}

impl Firecracker {
    /// The config file for one launch.
    pub fn config(&self, l: &VmLaunch, uds: &Path, plan: &Path) -> serde_json::Value {
        use serde_json::{Value, json};
        let d = |p: &Path| p.display().to_string();
        let mut cfg = self.template.clone();
        let mut machine = match cfg.remove("machine-config") {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        machine.insert("vcpu_count".into(), json!(l.vcpus));
        machine.insert("mem_size_mib".into(), json!(l.memory_mib));
        cfg.insert("machine-config".into(), Value::Object(machine));
        cfg.insert(
            "boot-source".into(),
            json!({
                "kernel_image_path": d(&l.images.kernel),
                "initrd_path": d(&l.images.initrd),
                "boot_args": FIRECRACKER_CMDLINE,
            }),
        );
        cfg.insert(
            "drives".into(),
            json!([
                {"drive_id": "oxydra_root", "path_on_host": d(&l.images.rootfs), "is_root_device": false, "is_read_only": true},
                {"drive_id": "oxydra_plan", "path_on_host": d(plan), "is_root_device": false, "is_read_only": true},
            ]),
        );
        cfg.insert(
            "vsock".into(),
            json!({"guest_cid": GUEST_CID, "uds_path": d(uds)}),
        );
        cfg.insert(
            "logger".into(),
            json!({"log_path": d(&l.dir.join("firecracker.log")), "level": "Warning"}),
        );
        Value::Object(cfg)
    }
}

impl Vmm for Firecracker {
    fn command(
        &self,
        l: &VmLaunch,
        _vhu: &Path,
        uds: &Path,
        plan: &Path,
    ) -> Result<tokio::process::Command, String> {
        let path = l.dir.join("firecracker.json");
        let cfg = serde_json::to_vec_pretty(&self.config(l, uds, plan))
            .map_err(|e| format!("the Firecracker config: {e}"))?;
        write_private(&path, &cfg).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = l.dir.join("firecracker.log");
        write_private(&log, b"").map_err(|e| format!("{}: {e}", log.display()))?;
        if let Some((uid, gid)) = l.run_as {
            // It reads its config and writes its log as the user it runs as.
            for p in [&path, &log] {
                let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
            }
        }
        let mut c = tokio::process::Command::new(&self.binary);
        c.arg("--no-api").arg("--config-file").arg(&path);
        if let Some((uid, gid)) = l.run_as
            && kvm_usable_by(uid, gid)
        {
            c.uid(uid).gid(gid);
        }
        Ok(c)
    }

    fn describe(&self) -> String {
        "firecracker (kvm)".into()
    }

    fn needs_vhost_vsock(&self) -> bool {
        false
    }

    fn shares_over_vsock(&self) -> bool {
        true
    }

    fn binary(&self) -> &Path {
        &self.binary
    }

    fn name(&self) -> &'static str {
        "Firecracker"
    }

    fn install_hint(&self) -> &'static str {
        "install Firecracker (github.com/firecracker-microvm/firecracker releases) and set [micro_vm] firecracker in runner.toml, or remove guest_images.firecracker_oxydra_vm_config to use QEMU"
    }

    fn protections(&self, l: &VmLaunch) -> Vec<String> {
        let mut a = vec![
            "Firecracker's seccomp filters on".to_string(),
            "workspace over vsock from the runner's 9p server (confined to the shares)".to_string(),
        ];
        if let Some((uid, gid)) = l.run_as
            && kvm_usable_by(uid, gid)
        {
            a.push(format!("Firecracker runs as {uid}:{gid}, not root"));
        }
        a
    }
}

/// The guest's vsock context id (the host is 2).
const GUEST_CID: u32 = 3;

/// Whether `uid:gid` may open /dev/kvm read-write (from its mode bits), so Firecracker
/// can run as that user.
fn kvm_usable_by(uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata("/dev/kvm") else {
        // No KVM here: Firecracker cannot run at all, as whichever user.
        return true;
    };
    let mode = m.mode();
    if m.uid() == uid {
        mode & 0o600 == 0o600
    } else if m.gid() == gid {
        mode & 0o060 == 0o060
    } else {
        mode & 0o006 == 0o006
    }
}

/// A path QEMU's option syntax can carry (a comma would start another option).
fn comma_safe(p: &Path) -> Result<String, String> {
    let s = p.display().to_string();
    if s.contains(',') {
        return Err(format!(
            "{s}: the micro_vm tier cannot pass a path with a comma to QEMU; move it"
        ));
    }
    Ok(s)
}

/// The 9p mount tag of share `i`.
fn tag(i: usize) -> String {
    format!("oxydra{i}")
}

/// The VMM of a launch.
pub fn vmm(l: &VmLaunch) -> Box<dyn Vmm + Send + Sync> {
    match &l.backend {
        Backend::Qemu { binary, accel } => {
            let (kvm, why_tcg) = match accel {
                Accel::Tcg => (false, Some("asked for in runner.toml".to_string())),
                Accel::Kvm => (true, None),
                Accel::Auto => match kvm_usable() {
                    Ok(()) => (true, None),
                    Err(why) => (false, Some(why)),
                },
            };
            Box::new(Qemu {
                binary: binary.clone(),
                kvm,
                why_tcg,
            })
        }
        Backend::Firecracker { binary, template } => Box::new(Firecracker {
            binary: binary.clone(),
            template: template.clone(),
        }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

impl VmLaunch {
    /// The directory of the VM's sockets (the vsock device's, the guest-facing
    /// `vm.sock_<port>` listeners). When the VMM and its vsock device drop to another
    /// user, a directory that user can surely reach, `/run/oxydra-vm/<hash>` (the
    /// workspace may lie below a directory it cannot search, such as /root); else the
    /// VM's own `vsock/`.
    pub fn sockets(&self) -> PathBuf {
        if self.run_as.is_none() {
            return self.dir.join("vsock");
        }
        use std::os::unix::ffi::OsStrExt;
        let h = self
            .dir
            .as_os_str()
            .as_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        let base = if Path::new("/run").is_dir() {
            PathBuf::from("/run")
        } else {
            std::env::temp_dir()
        };
        base.join("oxydra-vm").join(format!("{h:016x}"))
    }

    /// The VM's hybrid vsock socket.
    pub fn vsock_socket(&self) -> PathBuf {
        self.sockets().join("vm.sock")
    }
}

/// A connection to the guest's `port` through the hybrid vsock socket `uds`.
pub async fn hybrid_connect(uds: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds).await?;
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    // The answer is one line, `OK <host port>`; read it byte by byte so that nothing
    // after it is consumed.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .map_err(|_| std::io::Error::other("the VM's vsock did not answer CONNECT"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("nothing listens on the guest's vsock port {port}"),
            ));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::other(format!(
            "the VM's vsock answered {:?} to CONNECT {port}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(s)
}

/// What the VM is held to, as the runner set it up (the runtime checks the rest from
/// inside).
pub fn protections(l: &VmLaunch, describe: &str) -> Vec<String> {
    let vmm = vmm(l);
    let mut a = vec![
        format!("micro_vm tier: {describe}"),
        "no network device: the guest has vsock to the runner only".into(),
        "root disk read-only".into(),
        format!("memory {} MiB, {} vCPUs", l.memory_mib, l.vcpus),
    ];
    let ro = l.shares.iter().filter(|s| s.read_only).count();
    a.push(format!(
        "{} directories shared ({ro} read-only), nothing else of the host",
        l.shares.len()
    ));
    a.extend(vmm.protections(l));
    a
}

/// Lines kept from the console (and from the VMM's stderr) to explain a VM that ended.
const CONSOLE_TAIL: usize = 20;

/// A running VM.
pub struct Running {
    vmm: Child,
    vhost: Option<Child>,
    /// The workspace's 9p server (`vm-share`), for a VMM with no shared directories.
    share: Option<Child>,
    vmm_name: &'static str,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Reads the console to its end.
    console_task: Option<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
    sockets: PathBuf,
    describe: String,
    console: Arc<Mutex<Console>>,
    _plan: Arc<PlanFile>,
    /// What could not be held as planned.
    pub degraded: Vec<String>,
}

type Child = tokio::process::Child;

#[derive(Default)]
struct Console {
    tail: std::collections::VecDeque<String>,
    vmm_err: std::collections::VecDeque<String>,
    exit: Option<String>,
    boot_failed: Option<String>,
}

fn keep(q: &mut std::collections::VecDeque<String>, line: String) {
    q.push_back(line);
    if q.len() > CONSOLE_TAIL {
        q.pop_front();
    }
}

/// The plan disk: it holds the runtime's secrets, so it is removed as soon as the guest
/// has read it, and whatever happens (a failed start included).
struct PlanFile(PathBuf);

impl PlanFile {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The longest unix socket path (`sun_path`, with its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// A process an earlier runner left (it was killed before it could stop its VM): its
/// pid file names it, and it is still `binary`. Killed, so that two VMs never share a
/// workspace.
fn kill_stale(pidfile: &Path, binary: &Path) {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let want = binary.canonicalize().ok();
    if exe.is_some()
        && exe == want
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        tracing::warn!(
            "killing {} (pid {pid}), left by an earlier runner",
            binary.display()
        );
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pidfile);
}

/// Run `c` as the VM's user when that user may run `binary`; otherwise it stays root
/// and `degraded` says so, with what to do (`hint`).
fn as_vm_user(
    l: &VmLaunch,
    c: &mut tokio::process::Command,
    binary: &Path,
    what: &str,
    hint: &str,
    degraded: &mut Vec<String>,
) {
    if let Some((uid, gid)) = l.run_as {
        if usable_by(binary, uid, gid) {
            c.uid(uid).gid(gid);
        } else {
            degraded.push(format!(
                "{what} runs as root: {uid}:{gid} cannot run {} ({hint})",
                binary.display()
            ));
        }
    }
}

/// Whether `uid:gid` may reach `path` (search every directory above it) and use it:
/// execute a file, or create in a directory. Judged from the mode bits (no ACLs).
fn usable_by(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allows = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.mode();
        if m.uid() == uid {
            mode & (bit << 6) != 0
        } else if m.gid() == gid {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    for a in path.ancestors().skip(1) {
        match std::fs::metadata(a) {
            Ok(m) if allows(&m, 0o1) => {}
            _ => return false,
        }
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => allows(&m, 0o3),
        Ok(m) => allows(&m, 0o1),
        Err(_) => false,
    }
}

/// `name` on PATH.
pub fn on_path(name: impl AsRef<Path>) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name.as_ref()))
            .find(|f| f.is_file())
    })
}

/// Where a binary is, for [`kill_stale`]: as given, else on PATH.
fn resolve(binary: &Path) -> PathBuf {
    if binary.components().count() > 1 {
        return binary.to_path_buf();
    }
    on_path(binary).unwrap_or_else(|| binary.to_path_buf())
}

/// Start the VM: its vsock device, the host ends of its outbound bridges, the VMM.
/// The console (the guest's serial port: the kernel's and the runtime's output) is
/// copied to `out`, the VMM's own messages to `err`.
pub async fn start(
    l: &VmLaunch,
    out: impl AsyncWrite + Unpin + Send + 'static,
    err: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<Running, String> {
    use std::os::unix::fs::PermissionsExt;
    let vmm = vmm(l);
    l.images.check("runner.toml [micro_vm] images")?;
    // The VM's directory is the runner's alone (the plan, the pid files); its sockets are
    // in `vsock/`, which belongs to the user the VMM and its vsock device run as.
    let sockets = l.sockets();
    for d in [&l.dir, &sockets] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
    }
    if let Some(parent) = sockets.parent().filter(|_| l.run_as.is_some()) {
        // /run/oxydra-vm: searchable, not listable, by others.
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711));
    }
    if let Some((uid, gid)) = l.run_as {
        std::os::unix::fs::chown(&sockets, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", sockets.display()))?;
    }
    let uds = l.vsock_socket();
    let vhu = sockets.join("vhost-user.sock");
    let longest = l
        .forwards
        .iter()
        .map(|(port, _)| format!("{}_{port}", uds.display()).len())
        .max()
        .unwrap_or(0);
    if longest > SOCKET_PATH_MAX {
        return Err(format!(
            "the VM's sockets under {} would be {longest} bytes long, over the {SOCKET_PATH_MAX} a unix socket path may have: set a shorter workspace_root in runner.toml",
            sockets.display()
        ));
    }
    let qemu_pid = l.dir.join("vmm.pid");
    let vhost_pid = l.dir.join("vhost-device-vsock.pid");
    let share_pid = l.dir.join("vm-share.pid");
    kill_stale(&qemu_pid, &resolve(vmm.binary()));
    kill_stale(&vhost_pid, &resolve(&l.vhost_vsock));
    if let Ok(exe) = std::env::current_exe() {
        kill_stale(&share_pid, &exe);
    }
    // Stale sockets of an earlier VM.
    if let Ok(d) = std::fs::read_dir(&sockets) {
        for e in d.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut plan = l.guest.clone();
    plan.shares = l
        .shares
        .iter()
        .enumerate()
        .map(|(i, s)| GuestShare {
            tag: tag(i),
            path: s.path.clone(),
            read_only: s.read_only,
            port: vmm
                .shares_over_vsock()
                .then_some(vm_guest::SHARE_PORT_BASE + i as u32),
        })
        .collect();
    let plan_file = Arc::new(PlanFile(l.dir.join("plan.img")));
    let mut bytes = serde_json::to_vec(&plan).map_err(|e| format!("the guest's plan: {e}"))?;
    bytes.resize(bytes.len().div_ceil(4096).max(1) * 4096 + 4096, 0);
    write_private(&plan_file.0, &bytes).map_err(|e| format!("{}: {e}", plan_file.0.display()))?;
    let mut c = vmm.command(l, &vhu, &uds, &plan_file.0)?;
    let mut tasks = Vec::new();
    let mut degraded = Vec::new();
    let mut forwards = l.forwards.clone();
    let share = if vmm.shares_over_vsock() && !l.shares.is_empty() {
        let specs: Vec<crate::share9p::Spec> = l
            .shares
            .iter()
            .enumerate()
            .map(|(i, s)| crate::share9p::Spec {
                socket: sockets.join(format!("share-{i}.sock")),
                root: s.path.clone(),
                read_only: s.read_only,
            })
            .collect();
        for (i, sp) in specs.iter().enumerate() {
            forwards.push((vm_guest::SHARE_PORT_BASE + i as u32, sp.socket.clone()));
        }
        let child = start_share_server(l, &specs, &mut degraded).await?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(&share_pid, pid.to_string());
        }
        Some(child)
    } else {
        None
    };
    for (port, target) in &forwards {
        let path = PathBuf::from(format!("{}_{port}", uds.display()));
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some((uid, gid)) = l.run_as {
            // The vsock device connects to it.
            let _ = std::os::unix::fs::chown(&path, Some(uid), Some(gid));
        }
        tasks.push(tokio::spawn(forward_out(listener, target.clone())));
    }
    let abort = |tasks: &[tokio::task::JoinHandle<()>]| tasks.iter().for_each(|t| t.abort());
    let vhost = if vmm.needs_vhost_vsock() {
        let mut c = tokio::process::Command::new(&l.vhost_vsock);
        c.args(["--guest-cid", "3", "--socket"])
            .arg(&vhu)
            .arg("--uds-path")
            .arg(&uds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Not the runner's terminal's Ctrl-C: the runner stops the VM in order.
            .process_group(0)
            .kill_on_drop(true);
        // It maps the guest's memory and parses what the guest queues: not root, when
        // that user can run it and reach its sockets' directory.
        as_vm_user(
            l,
            &mut c,
            &resolve(&l.vhost_vsock),
            "vhost-device-vsock",
            "install it where every user may run it, e.g. /usr/local/bin",
            &mut degraded,
        );
        let mut child = c.spawn().map_err(|e| {
            abort(&tasks);
            format!(
                "could not start vhost-device-vsock ({}): {e}; install it with `cargo install --locked vhost-device-vsock --version 0.3.0`, or set [micro_vm] vhost_device_vsock in runner.toml",
                l.vhost_vsock.display()
            )
        })?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(&vhost_pid, pid.to_string());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vhu.exists() {
            if let Ok(Some(s)) = child.try_wait() {
                let mut text = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut text).await;
                }
                abort(&tasks);
                return Err(format!(
                    "vhost-device-vsock ({}) exited ({s}) before it listened: {}",
                    l.vhost_vsock.display(),
                    text.trim()
                ));
            }
            if Instant::now() > deadline {
                abort(&tasks);
                return Err(format!(
                    "vhost-device-vsock ({}) did not listen on {} within 10 s; check that it runs (`{} --help`)",
                    l.vhost_vsock.display(),
                    vhu.display(),
                    l.vhost_vsock.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(e) = child.stderr.take() {
            tasks.push(tokio::spawn(async move {
                let mut lines = BufReader::new(e).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::debug!("vhost-device-vsock: {l}");
                }
            }));
        }
        Some(child)
    } else {
        None
    };
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(|e| {
        abort(&tasks);
        format!(
            "could not start {} ({}): {e}; {}",
            vmm.name(),
            vmm.binary().display(),
            vmm.install_hint()
        )
    })?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(&qemu_pid, pid.to_string());
    }
    let console = Arc::new(Mutex::new(Console::default()));
    let console_task = child
        .stdout
        .take()
        .map(|o| tokio::spawn(read_console(o, out, console.clone(), plan_file.clone())));
    if let Some(e) = child.stderr.take() {
        let console = console.clone();
        tasks.push(tokio::spawn(async move {
            let mut err = err;
            let mut lines = BufReader::new(e).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep(
                    &mut console
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .vmm_err,
                    line.clone(),
                );
                if err.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        }));
    }
    let describe = format!(
        "{}, pid {}",
        vmm.describe(),
        child.id().map_or("?".into(), |p| p.to_string())
    );
    Ok(Running {
        vmm: child,
        vhost,
        share,
        vmm_name: vmm.name(),
        tasks,
        console_task,
        dir: l.dir.clone(),
        sockets,
        describe,
        console,
        _plan: plan_file,
        degraded,
    })
}

/// `oxydra-host vm-share` for `specs`: as the VM's user when the runner is root (and
/// that user can run the binary), told to die with the runner; ready once it says so.
async fn start_share_server(
    l: &VmLaunch,
    specs: &[crate::share9p::Spec],
    degraded: &mut Vec<String>,
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the runner's own binary: {e}"))?;
    let mut c = tokio::process::Command::new(&exe);
    c.arg("vm-share");
    for s in specs {
        c.arg("--share").arg(s.arg());
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    as_vm_user(
        l,
        &mut c,
        &exe,
        "the workspace's 9p server",
        "install oxydra-host where every user may run it",
        degraded,
    );
    let mut child = c.spawn().map_err(|e| {
        format!(
            "could not start the workspace's 9p server ({}): {e}",
            exe.display()
        )
    })?;
    let mut out = BufReader::new(child.stdout.take().ok_or("vm-share has no stdout")?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    let ready = loop {
        line.clear();
        let said = tokio::time::timeout_at(deadline, out.read_line(&mut line)).await;
        match said {
            Ok(Ok(n)) if n > 0 => match line.trim_end().strip_prefix("degraded: ") {
                Some(d) => degraded.push(format!("the workspace's 9p server: {d}")),
                None => break line.starts_with("ready"),
            },
            _ => break false,
        }
    };
    if !ready {
        let mut text = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut text)).await;
        }
        let _ = child.kill().await;
        return Err(format!(
            "the workspace's 9p server (oxydra-host vm-share) did not start: {}",
            text.trim()
        ));
    }
    if let Some(e) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(e).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::warn!("{l}");
            }
        });
    }
    Ok(child)
}

/// The console, line by line, to `out`; the runtime's exit line and a boot failure are
/// kept, and the last lines. The plan disk goes once the guest says it read it.
async fn read_console(
    stream: impl tokio::io::AsyncRead + Unpin,
    mut out: impl AsyncWrite + Unpin,
    console: Arc<Mutex<Console>>,
    plan: Arc<PlanFile>,
) {
    let mut r = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut r).take(64 * 1024).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']).to_string();
        if line == vm_guest::PLAN_READ {
            plan.remove();
        }
        {
            let mut c = console
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(how) = line.strip_prefix(vm_guest::EXIT_PREFIX) {
                c.exit = Some(how.to_string());
            }
            if let Some(why) = line.strip_prefix(vm_guest::BOOT_FAILED_PREFIX) {
                c.boot_failed = Some(why.to_string());
            }
            keep(&mut c.tail, line.clone());
        }
        if out.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            break;
        }
    }
}

/// Each connection to a guest-facing `<uds>_<port>`, copied to the host socket.
async fn forward_out(listener: UnixListener, target: PathBuf) {
    loop {
        let Ok((mut from, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut to) = UnixStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
            }
        });
    }
}

impl Running {
    /// The VMM's pid.
    pub fn pid(&self) -> Option<u32> {
        self.vmm.id()
    }

    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Until the VM ends (the VMM exits, or its vsock device does, which leaves the VM
    /// cut off: the VMM is killed then): how (the runtime's exit, as the guest said it,
    /// or why the VM ended without it, with the console's last lines), and the
    /// runtime's exit code.
    pub async fn wait(&mut self) -> (String, Option<i32>) {
        let vhost_died = async {
            match self.vhost.as_mut() {
                Some(v) => v.wait().await.ok(),
                None => std::future::pending().await,
            }
        };
        let share_died = async {
            match self.share.as_mut() {
                Some(v) => v.wait().await.ok(),
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            s = self.vmm.wait() => s.ok(),
            s = share_died => {
                let _ = self.vmm.kill().await;
                self.drain_console().await;
                let status = s.map_or("?".to_string(), |s| s.to_string());
                return (
                    format!("ended: the workspace's 9p server (vm-share) exited ({status}), so the VMM was killed"),
                    None,
                );
            }
            s = vhost_died => {
                let _ = self.vmm.kill().await;
                self.drain_console().await;
                let status = s.map_or("?".to_string(), |s| s.to_string());
                return (
                    format!("ended: its vsock device (vhost-device-vsock) exited ({status}), so the VMM was killed"),
                    None,
                );
            }
        };
        self.drain_console().await;
        self.outcome(status)
    }

    /// The console is read to its end (the VMM has exited) before it is judged.
    async fn drain_console(&mut self) {
        if let Some(t) = self.console_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }

    fn outcome(&self, status: Option<std::process::ExitStatus>) -> (String, Option<i32>) {
        let c = self
            .console
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(how) = &c.exit {
            let code = how.strip_prefix("status ").and_then(|n| n.parse().ok());
            return match code {
                Some(n) => (
                    format!("exited with status {n} (the VM ended with it)"),
                    Some(n),
                ),
                None => (format!("ended with {how} (the VM ended with it)"), None),
            };
        }
        let tail: Vec<String> = c.tail.iter().cloned().collect();
        if let Some(why) = &c.boot_failed {
            // A guest that cannot boot will not boot on a retry: the images are wrong.
            return (
                format!(
                    "failed to boot the VM: {why}; its console's last lines:\n{}",
                    tail.join("\n")
                ),
                Some(3),
            );
        }
        let vmm_err: Vec<String> = c.vmm_err.iter().cloned().collect();
        match status.and_then(|s| s.code()) {
            // QEMU refused its command line or a device before the guest said a word:
            // starting it again will not help.
            Some(code) if code != 0 && tail.is_empty() => (
                format!(
                    "failed to start the VM: {} exited with status {code}; it said:\n{}",
                    self.vmm_name,
                    vmm_err.join("\n")
                ),
                Some(3),
            ),
            _ => {
                let vmm = status.map_or("was killed".to_string(), |s| format!("exited ({s})"));
                (
                    format!(
                        "ended: the VMM {vmm} before the runtime said how it ended; the console's last lines:\n{}{}",
                        tail.join("\n"),
                        if vmm_err.is_empty() {
                            String::new()
                        } else {
                            format!("\n{} said:\n{}", self.vmm_name, vmm_err.join("\n"))
                        }
                    ),
                    None,
                )
            }
        }
    }

    /// Stop: ask the guest (SIGTERM to the runtime, then the VM ends), and kill the VMM
    /// after `grace`.
    pub async fn terminate(&mut self, grace: Duration) -> String {
        let what = self.ask_to_stop(grace).await;
        self.remove().await;
        what
    }

    async fn ask_to_stop(&mut self, grace: Duration) -> String {
        let uds = self.sockets.join("vm.sock");
        let asked = async {
            let mut s = hybrid_connect(&uds, vm_guest::CONTROL_PORT).await?;
            s.write_all(b"stop\n").await?;
            let mut answer = String::new();
            BufReader::new(&mut s).read_line(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let asked = tokio::time::timeout(Duration::from_secs(5), asked).await;
        if matches!(&asked, Ok(Ok(a)) if a.trim() == "ok") {
            if let Ok(s) = tokio::time::timeout(grace, self.vmm.wait()).await {
                self.drain_console().await;
                return self.outcome(s.ok()).0;
            }
            let _ = self.vmm.kill().await;
            return format!(
                "killed: the VM did not end within {} s of stop",
                grace.as_secs()
            );
        }
        let _ = self.vmm.kill().await;
        let why = match asked {
            Ok(Ok(a)) => a.trim().to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".into(),
        };
        format!("killed: the guest could not be asked to stop ({why})")
    }

    /// What is left once it ended: the vsock device, the bridges, the sockets, the plan,
    /// the pid files.
    pub async fn remove(&mut self) {
        if let Some(v) = &mut self.vhost {
            let _ = v.kill().await;
        }
        if let Some(v) = &mut self.share {
            let _ = v.kill().await;
        }
        let _ = self.vmm.kill().await;
        for t in &self.tasks {
            t.abort();
        }
        self._plan.remove();
        for dir in [self.sockets.clone(), self.dir.clone()] {
            if let Ok(d) = std::fs::read_dir(&dir) {
                for e in d.flatten() {
                    if e.file_type().is_ok_and(|t| !t.is_dir()) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        if self.sockets != self.dir.join("vsock") {
            let _ = std::fs::remove_dir(&self.sockets);
        }
    }

    /// The plan disk holds the runtime's secrets: gone once the guest is ready, if the
    /// guest's word that it read it was missed.
    pub fn forget_plan(&self) {
        self._plan.remove();
    }
}
