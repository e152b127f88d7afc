//! The container tier: the runtime in a Docker container, through the Engine API
//! (bollard) on `DOCKER_HOST` (default `unix:///var/run/docker.sock`).
//!
//! The container has no network (`none`), drops every capability, runs read-only as a
//! non-root user with `no-new-privileges`, under memory, CPU and pids limits, and sees
//! only the paths it is given: the user's workspace directories (the vault read-only),
//! the runtime's socket directory and the egress proxy's socket. Paths are the same
//! inside as outside, so nothing in the config needs translating.

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Where the image keeps the binary (its entrypoint) and the bundled components.
pub const IMAGE_BINARY: &str = "/oxydra/bin/oxydra-host";
pub const IMAGE_COMPONENTS: &str = "/oxydra/components";

/// A path the container sees: at the same path as on the host, or at `inside`.
#[derive(Debug, Clone)]
pub struct Bind {
    pub path: PathBuf,
    pub read_only: bool,
    /// Where the container sees it, when not at `path` (the shell sidecar's `/shared`).
    pub inside: Option<PathBuf>,
}

/// How the runtime's container is made.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    /// A local image (`[guest_images] oxydra_vm`); never pulled.
    pub image: String,
    /// The container's name (one per user: a stale one is removed first).
    pub name: String,
    /// Arguments to the image's `oxydra-host`.
    pub args: Vec<String>,
    /// `KEY=value`: the whole environment (the image sets none).
    pub env: Vec<String>,
    pub binds: Vec<Bind>,
    pub working_dir: PathBuf,
    /// `uid:gid`, never root.
    pub user: String,
    pub memory_bytes: Option<u64>,
    /// CPUs, e.g. 1.5.
    pub cpus: Option<f64>,
    pub pids_limit: Option<u64>,
    /// `runsc` (gVisor) when configured; Docker's default (runc) otherwise.
    pub runtime: Option<String>,
    /// `runtime` or `shell` (the `oxydra.role` label, and messages).
    pub role: String,
    /// A small in-memory `/tmp` of its own (the runtime's); the shell sidecar binds the
    /// user's `tmp` there instead.
    pub scratch_tmp: bool,
    /// The engine sets it on the container's first process (the sidecar's daemon is
    /// made less likely than its commands to be killed at the memory limit).
    pub oom_score_adj: Option<i64>,
}

/// This process's effective `(uid, gid)`.
pub fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// The Engine API, version negotiated (Debian's 20.10 engine speaks 1.41).
pub async fn connect() -> Result<Docker, String> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("the container tier needs a Docker engine at {host}: {e}"))?;
    docker.negotiate_version().await.map_err(|e| {
        format!(
            "the container tier needs a Docker engine at {host} (set DOCKER_HOST to its socket, or start dockerd): {e}"
        )
    })
}

/// Fail, saying how to build it, when `image` (configured as `key` in runner.toml) is
/// not in the engine's local store.
pub async fn check_image(docker: &Docker, image: &str, key: &str) -> Result<(), String> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(format!(
            "the image {image} ({key} in runner.toml) is not in the Docker engine; build it with ./scripts/build-guest-images.sh (images are built locally, never pulled)"
        )),
        Err(e) => Err(format!("could not inspect the image {image}: {e}")),
    }
}

/// Fail, saying how to add it, when the engine has no OCI runtime `name`
/// (runner.toml `container_runtime`).
pub async fn check_runtime(docker: &Docker, name: &str) -> Result<(), String> {
    let info = docker
        .info()
        .await
        .map_err(|e| format!("could not ask the Docker engine for its runtimes: {e}"))?;
    let offered: Vec<String> = info
        .runtimes
        .map(|r| r.into_keys().collect())
        .unwrap_or_default();
    if offered.iter().any(|r| r == name) {
        return Ok(());
    }
    let gvisor = if name == "runsc" {
        " (gVisor: apt-get install runsc, then in the engine's daemon.json \"runtimes\": {\"runsc\": {\"path\": \"/usr/bin/runsc\", \"runtimeArgs\": [\"--platform=ptrace\", \"--network=none\", \"--host-uds=all\"]}} and restart dockerd)"
    } else {
        ""
    };
    Err(format!(
        "container_runtime = {name:?} in runner.toml: the Docker engine offers no such runtime (it offers {}){gvisor}; or remove the key for the engine's default",
        offered.join(", ")
    ))
}

/// What `l` needs of the engine before it is created: its image (`key` in runner.toml)
/// and, when one is configured, its OCI runtime.
pub async fn check(docker: &Docker, l: &ContainerLaunch, key: &str) -> Result<(), String> {
    check_image(docker, &l.image, key).await?;
    match &l.runtime {
        Some(r) => check_runtime(docker, r).await,
        None => Ok(()),
    }
}

/// A running runtime container.
pub struct Running {
    docker: Docker,
    pub id: String,
    name: String,
}

/// Create and start the container (removing a stale one of the same name); its
/// output is copied, as it comes, to `stdout` and `stderr`.
pub async fn start(
    docker: &Docker,
    l: &ContainerLaunch,
    stdout: tokio::io::DuplexStream,
    stderr: tokio::io::DuplexStream,
) -> Result<Running, String> {
    let _ = docker
        .remove_container(
            &l.name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let binds = l
        .binds
        .iter()
        .map(|b| {
            let p = b.path.display();
            let inside = b.inside.as_ref().unwrap_or(&b.path).display();
            if b.read_only {
                format!("{p}:{inside}:ro")
            } else {
                format!("{p}:{inside}:rw")
            }
        })
        .collect();
    let host = HostConfig {
        binds: Some(binds),
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(true),
        // The runtime's scratch space that is not the agent's: small, in memory.
        tmpfs: l
            .scratch_tmp
            .then(|| [("/tmp".to_string(), "size=64m,mode=1777".to_string())].into()),
        oom_score_adj: l.oom_score_adj,
        memory: l.memory_bytes.map(|m| m as i64),
        memory_swap: l.memory_bytes.map(|m| m as i64),
        nano_cpus: l.cpus.map(|c| (c * 1e9) as i64),
        pids_limit: l.pids_limit.map(|p| p as i64),
        runtime: l.runtime.clone(),
        // The engine's init (tini) as PID 1: it forwards SIGTERM to the runtime, which a
        // PID 1 without a handler yet (still loading) would ignore.
        init: Some(true),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(l.image.clone()),
        entrypoint: Some(vec![IMAGE_BINARY.into()]),
        cmd: Some(l.args.clone()),
        env: Some(l.env.clone()),
        user: Some(l.user.clone()),
        working_dir: Some(l.working_dir.display().to_string()),
        host_config: Some(host),
        labels: Some([("oxydra.role".to_string(), l.role.clone())].into()),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&l.name).build()),
            body,
        )
        .await
        .map_err(|e| {
            format!(
                "could not create the {}'s container from {}: {e}",
                l.role, l.image
            )
        })?;
    let id = created.id;
    if let Err(e) = docker.start_container(&id, None).await {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        return Err(format!("could not start the {}'s container: {e}", l.role));
    }
    let logs = docker.logs(
        &id,
        Some(
            LogsOptionsBuilder::new()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    tokio::spawn(copy_logs(logs, stdout, stderr));
    Ok(Running {
        docker: docker.clone(),
        id,
        name: l.name.clone(),
    })
}

async fn copy_logs(
    logs: impl futures_util::Stream<
        Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
    >,
    mut stdout: tokio::io::DuplexStream,
    mut stderr: tokio::io::DuplexStream,
) {
    use bollard::container::LogOutput;
    tokio::pin!(logs);
    while let Some(Ok(chunk)) = logs.next().await {
        let r = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                stdout.write_all(&message).await
            }
            LogOutput::StdErr { message } => stderr.write_all(&message).await,
            LogOutput::StdIn { .. } => Ok(()),
        };
        if r.is_err() {
            break;
        }
    }
}

impl Running {
    /// `name (short id)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, &self.id[..self.id.len().min(12)])
    }

    /// The pid of the container's first process on this host.
    pub async fn pid(&self) -> Option<u32> {
        let info = self.docker.inspect_container(&self.id, None).await.ok()?;
        info.state?
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
    }

    /// Wait until the container ends: how, and its exit code.
    pub async fn wait(&self) -> (String, Option<i32>) {
        let mut waits = self.docker.wait_container(
            &self.id,
            Some(
                WaitContainerOptionsBuilder::new()
                    .condition("not-running")
                    .build(),
            ),
        );
        let code = match waits.next().await {
            Some(Ok(r)) => Some(r.status_code),
            // A non-zero exit is reported as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(e)) => return (format!("could not be waited for: {e}"), None),
            None => None,
        };
        let oom = self
            .docker
            .inspect_container(&self.id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        match code {
            Some(c) if oom => (
                format!("was killed for using more than its memory limit (status {c})"),
                Some(c as i32),
            ),
            Some(c) => (format!("exited with status {c}"), Some(c as i32)),
            None => ("ended".into(), None),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; the container is removed either way.
    pub async fn terminate(&self, grace: Duration) -> String {
        let stopped = self
            .docker
            .stop_container(
                &self.id,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(grace.as_secs() as i32)
                        .build(),
                ),
            )
            .await;
        let (what, _) = self.wait().await;
        self.remove().await;
        match stopped {
            Ok(()) => what,
            Err(e) => format!("{what} (stop: {e})"),
        }
    }

    pub async fn remove(&self) {
        let _ = self
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
    }

    /// The protections the engine reports for this container, checked after it
    /// started (not assumed from what was asked): (applied, degraded).
    pub async fn protections(&self, asked: &ContainerLaunch) -> (Vec<String>, Vec<String>) {
        let mut applied = Vec::new();
        let mut degraded = Vec::new();
        let Ok(info) = self.docker.inspect_container(&self.id, None).await else {
            degraded.push(format!("could not inspect container {}", self.name));
            return (applied, degraded);
        };
        let h = info.host_config.unwrap_or_default();
        let c = info.config.unwrap_or_default();
        let mut check = |ok: bool, what: String| {
            if ok {
                applied.push(what);
            } else {
                degraded.push(format!("{what}: not in force"));
            }
        };
        check(
            h.network_mode.as_deref() == Some("none"),
            "network: none (only lo)".into(),
        );
        check(
            h.cap_drop
                .as_ref()
                .is_some_and(|d| d.iter().any(|c| c.eq_ignore_ascii_case("ALL"))),
            "capabilities: all dropped".into(),
        );
        check(
            h.readonly_rootfs == Some(true),
            "root filesystem read-only".into(),
        );
        check(
            h.security_opt
                .as_ref()
                .is_some_and(|o| o.iter().any(|s| s.starts_with("no-new-privileges"))),
            "no-new-privileges".into(),
        );
        check(
            c.user
                .as_deref()
                .is_some_and(|u| !u.is_empty() && !u.starts_with("0:") && u != "0" && u != "root"),
            format!("user {}", c.user.clone().unwrap_or_default()),
        );
        if let Some(m) = asked.memory_bytes {
            check(
                h.memory == Some(m as i64),
                format!("memory limit {} MiB", m >> 20),
            );
        }
        if let Some(p) = asked.pids_limit {
            check(h.pids_limit == Some(p as i64), format!("pids limit {p}"));
        }
        if let Some(cpus) = asked.cpus {
            check(
                h.nano_cpus == Some((cpus * 1e9) as i64),
                format!("CPU limit {cpus}"),
            );
        }
        let runtime = h.runtime.clone().unwrap_or_else(|| "runc".into());
        match &asked.runtime {
            Some(r) => check(&runtime == r, format!("OCI runtime {r}")),
            None => applied.push(format!("OCI runtime {runtime} (gVisor not configured)")),
        }
        for b in &asked.binds {
            applied.push(format!(
                "mount {} {}",
                b.path.display(),
                if b.read_only {
                    "read-only"
                } else {
                    "read-write"
                }
            ));
        }
        (applied, degraded)
    }
}

/// Inside the runtime's container: try what a compromised runtime would — reach an
/// address off this host, write the vault and the root filesystem — and read what the
/// kernel says of this process (user, capabilities, no_new_privs, interfaces). Each
/// refusal is recorded as verified, each success as degraded; nothing is sent anywhere
/// (a UDP `connect` only asks for a route).
pub fn verify_inside(ws: &std::path::Path, tier: &str) -> crate::confine::Report {
    let mut r = crate::confine::Report::default();
    r.applied.push(tier.into());
    match std::net::UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| s.connect(("192.0.2.1", 9))) {
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {
            r.verified.push(format!("no route off this host ({e})"));
        }
        Err(e) => r.degraded.push(format!(
            "reaching another host failed, but not for want of a route: {e}"
        )),
        Ok(()) => r
            .degraded
            .push("the runtime has a route to other hosts".into()),
    }
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    if interfaces.iter().all(|i| i == "lo") {
        r.verified.push("network interfaces: lo only".into());
    } else {
        r.degraded
            .push(format!("network interfaces: {}", interfaces.join(", ")));
    }
    for (what, dir) in [
        ("the vault", ws.join("vault")),
        ("the root filesystem", std::path::PathBuf::from("/")),
    ] {
        let probe = dir.join(".oxydra-write-probe");
        match std::fs::File::create(&probe) {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                r.verified.push(format!("{what} is read-only ({e})"));
            }
            Err(e) => r
                .degraded
                .push(format!("writing {what} failed, but not as read-only: {e}")),
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                r.degraded.push(format!("the runtime can write {what}"));
            }
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        r.degraded.push("the runtime runs as root".into());
    } else {
        r.verified.push(format!("runs as uid {uid}, not root"));
    }
    match field("CapEff:").as_str() {
        "0000000000000000" => r.verified.push("no effective capabilities".into()),
        other => r.degraded.push(format!("effective capabilities {other}")),
    }
    match field("NoNewPrivs:").as_str() {
        "1" => r.verified.push("no_new_privs set".into()),
        "" => r.degraded.push(
            "no_new_privs: not verified from inside (this kernel's /proc/self/status does not show it, as under gVisor); the engine was asked for no-new-privileges".into(),
        ),
        other => r.degraded.push(format!("no_new_privs is {other:?}")),
    }
    r
}
