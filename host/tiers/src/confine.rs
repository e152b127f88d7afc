//! The `process` tier: a runtime confines itself, in this order, before it starts any
//! thread or reads any input:
//!
//! 1. rlimits: no core dumps, open files, data memory, processes;
//! 2. `no_new_privs` (nothing it executes gains privileges);
//! 3. Landlock: read-only access beneath the paths the runtime needs to read (its
//!    binary's directory and components, its config), read-write beneath its workspace
//!    and cache; no TCP bind or connect (ABI 4+); no signals or abstract unix sockets
//!    outside the sandbox (ABI 6+);
//! 4. a seccomp filter: no ptrace, mount, bpf, kexec, module loading, namespace creation,
//!    io_uring; sockets only `AF_UNIX`.
//!
//! Every step reports what it applied; a mechanism the kernel lacks is a degraded
//! reason, never silently claimed.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use rustix::process::{Resource, Rlimit, setrlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The environment variable the runner passes a [`Plan`] in (JSON) to `serve --confine`.
pub const PLAN_ENV: &str = "OXYDRA_CONFINE_PLAN";

/// What one runtime may touch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// Readable (files and directories beneath).
    pub read_only: Vec<PathBuf>,
    /// Readable and writable beneath.
    pub read_write: Vec<PathBuf>,
    /// `RLIMIT_DATA`: heap and writable private mappings (reserved-but-unused address
    /// space, such as WebAssembly guard regions, does not count).
    pub memory_bytes: Option<u64>,
    /// `RLIMIT_NPROC` (per user; not enforced for root).
    pub max_processes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
    /// Unix sockets it may connect to (Landlock ABI 9+ restricts connecting to named
    /// unix sockets; older kernels do not, and that is reported as degraded).
    pub connect_unix: Vec<PathBuf>,
    /// Files the confined process checks it can no longer read (see [`verify`]).
    pub must_not_read: Vec<PathBuf>,
    /// Files the confined process checks it can no longer write.
    pub must_not_write: Vec<PathBuf>,
}

/// What [`confine`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// Each protection in force, in words.
    pub applied: Vec<String>,
    /// Each protection asked for that the kernel (or the user) did not give.
    pub degraded: Vec<String>,
    /// What the process tried after confining itself and was refused ([`verify`]).
    pub verified: Vec<String>,
}

/// After [`confine`]: try what a compromised runtime would — open a TCP socket, read
/// and write the plan's forbidden files — and record each refusal as verified, each
/// success as degraded. Nothing is claimed that was not tried.
pub fn verify(plan: &Plan, r: &mut Report) {
    match std::net::UdpSocket::bind(("127.0.0.1", 0)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            r.verified.push(format!("no UDP socket ({e})"));
        }
        Err(e) => r.degraded.push(format!(
            "opening a UDP socket failed, but not as refused: {e}"
        )),
        Ok(_) => r
            .degraded
            .push("the process can still open a UDP socket".into()),
    }
    match std::net::TcpListener::bind(("127.0.0.1", 0)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            r.verified.push(format!("no TCP socket ({e})"));
        }
        Err(e) => r.degraded.push(format!(
            "opening a TCP socket failed, but not as refused: {e}"
        )),
        Ok(_) => r
            .degraded
            .push("the process can still open a TCP socket".into()),
    }
    for p in &plan.must_not_read {
        match std::fs::File::open(p) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                r.verified
                    .push(format!("cannot read {} ({e})", p.display()));
            }
            Err(e) => r.degraded.push(format!(
                "reading {} failed, but not as refused: {e}",
                p.display()
            )),
            Ok(_) => r
                .degraded
                .push(format!("the process can still read {}", p.display())),
        }
    }
    for p in &plan.must_not_write {
        match std::fs::OpenOptions::new().append(true).open(p) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                r.verified
                    .push(format!("cannot write {} ({e})", p.display()));
            }
            Err(e) => r.degraded.push(format!(
                "writing {} failed, but not as refused: {e}",
                p.display()
            )),
            Ok(_) => r
                .degraded
                .push(format!("the process can still write {}", p.display())),
        }
    }
}

/// SIGTERM to this process when its parent (the runner) dies, even by SIGKILL.
pub fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
}

/// Confine the calling process as `plan` says. Call it before any thread starts: Landlock
/// and seccomp bind the calling thread and the threads and processes it creates later.
/// `Err` only for a step that failed outright (the process should not go on).
pub fn confine(plan: &Plan) -> Result<Report, String> {
    let mut r = Report::default();
    rlimits(plan, &mut r)?;
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| format!("prctl(PR_SET_NO_NEW_PRIVS): {e}"))?;
    r.applied.push("no_new_privs".into());
    drop_capabilities(&mut r)?;
    landlock_rules(plan, &mut r)?;
    seccomp(&mut r)?;
    Ok(r)
}

fn set(resource: Resource, value: u64) -> rustix::io::Result<()> {
    setrlimit(
        resource,
        Rlimit {
            current: Some(value),
            maximum: Some(value),
        },
    )
}

fn rlimits(plan: &Plan, r: &mut Report) -> Result<(), String> {
    let mut one = |res, value: u64, what: String| -> Result<(), String> {
        set(res, value).map_err(|e| format!("setrlimit {what}: {e}"))?;
        r.applied.push(what);
        Ok(())
    };
    one(Resource::Core, 0, "no core dumps".into())?;
    one(
        Resource::Nofile,
        plan.max_open_files,
        format!("at most {} open files", plan.max_open_files),
    )?;
    if let Some(m) = plan.memory_bytes {
        one(
            Resource::Data,
            m,
            format!("at most {} MiB of data memory", m >> 20),
        )?;
    }
    if let Some(p) = plan.max_processes {
        one(
            Resource::Nproc,
            p,
            format!("at most {p} processes per user"),
        )?;
        if rustix::process::geteuid().is_root() {
            r.degraded.push(
                "running as root: the kernel does not enforce the process limit (RLIMIT_NPROC) for root"
                    .into(),
            );
        }
    }
    Ok(())
}

/// No capabilities at all (a runtime started as root keeps none: no device access, no
/// DAC override, nothing to regain, since `no_new_privs` also holds).
fn drop_capabilities(r: &mut Report) -> Result<(), String> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let _ = rustix::thread::clear_ambient_capability_set();
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("capset (dropping every capability): {e}"))?;
    r.applied
        .push("no capabilities (effective, permitted, inheritable, ambient)".into());
    Ok(())
}

/// The newest Landlock ABI this code asks for; older kernels give what they have.
const LANDLOCK_ABI: ABI = ABI::V9;

fn landlock_rules(plan: &Plan, r: &mut Report) -> Result<(), String> {
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(
            &plan.read_only,
            AccessFs::from_read(LANDLOCK_ABI),
        ))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            &plan.read_write,
            // No device nodes, even beneath its own directories.
            AccessFs::from_all(LANDLOCK_ABI) & !(AccessFs::MakeBlock | AccessFs::MakeChar),
        ))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            &plan.connect_unix,
            AccessFs::ResolveUnix,
        ))
        .map_err(err)?;
    let status = ruleset.restrict_self().map_err(err)?;
    let fs = format!(
        "landlock: files read-only beneath {}, read-write beneath {}; no TCP bind or connect",
        list(&plan.read_only),
        list(&plan.read_write)
    );
    let abi = kernel_abi();
    match status.ruleset {
        RulesetStatus::FullyEnforced => r.applied.push(fs),
        RulesetStatus::PartiallyEnforced => {
            r.applied.push(format!("{fs} (partially: kernel Landlock ABI {abi})"));
            if abi < 6 {
                r.degraded.push(format!(
                    "landlock is only partly enforced: this kernel's Landlock ABI is {abi}, older than 6 (some file, network or scope rights are not restricted)"
                ));
            }
            if abi < 9 {
                r.degraded.push(format!(
                    "named unix sockets are not restricted: connecting to one needs Landlock ABI 9 to be confined (this kernel has {abi}), so the runtime can reach any unix socket on the host it has permission for (D-Bus, docker.sock); the runner's own control socket requires a secret the runtime cannot read, and its egress proxy one only this runtime holds"
                ));
            }
        }
        RulesetStatus::NotEnforced => r.degraded.push(
            "landlock is not enforced: the kernel has no Landlock (or it is disabled); files outside the workspace are not restricted by the kernel"
                .into(),
        ),
    }
    Ok(())
}

/// The kernel's Landlock ABI version (0: none).
fn kernel_abi() -> i64 {
    // The newest ABI whose every file right the kernel takes as a hard requirement.
    for abi in (1..=9).rev() {
        let probe: ABI = match abi {
            9 => ABI::V9,
            8 => ABI::V8,
            7 => ABI::V7,
            6 => ABI::V6,
            5 => ABI::V5,
            4 => ABI::V4,
            3 => ABI::V3,
            2 => ABI::V2,
            _ => ABI::V1,
        };
        let full = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(probe))
            .and_then(|r| r.create());
        if full.is_ok() {
            return abi;
        }
    }
    0
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// System calls a runtime never needs; each fails with `EPERM`.
fn denied_syscalls() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_bpf,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_open_by_handle_at,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mknodat,
    ];
    #[cfg(target_arch = "x86_64")]
    v.push(libc::SYS_mknod);
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    v
}

/// The namespace flags `clone` may not carry.
const NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
];

fn filter(errno: u32) -> Result<BpfProgram, String> {
    let e = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        rules.insert(nr, vec![]);
    }
    // socket(domain != AF_UNIX, …): no network of its own.
    rules.insert(
        libc::SYS_socket,
        vec![
            SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Ne,
                    libc::AF_UNIX as u64,
                )
                .map_err(e)?,
            ])
            .map_err(e)?,
        ],
    );
    // clone(flags with a CLONE_NEW*): no namespaces.
    let mut clone = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = flag as u64;
        clone.push(
            SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(flag),
                    flag,
                )
                .map_err(e)?,
            ])
            .map_err(e)?,
        );
    }
    rules.insert(libc::SYS_clone, clone);
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("seccomp: no filter for {}", std::env::consts::ARCH))?;
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .map_err(e)?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp: {e}"))
}

/// clone3 passes its flags in memory a filter cannot read: it fails with `ENOSYS`, which
/// makes the C library fall back to `clone`, whose flags the filter checks.
fn clone3_filter() -> Result<BpfProgram, String> {
    let e = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("seccomp: no filter for {}", std::env::consts::ARCH))?;
    let f = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(e)?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp: {e}"))
}

fn seccomp(r: &mut Report) -> Result<(), String> {
    for prog in [filter(libc::EPERM as u32)?, clone3_filter()?] {
        seccompiler::apply_filter(&prog).map_err(|e| format!("seccomp: {e}"))?;
    }
    r.applied.push(
        "seccomp: no ptrace, mount, bpf, kexec, modules, namespaces, io_uring or mknod; sockets only AF_UNIX"
            .into(),
    );
    Ok(())
}
