//! The runner role: `start` launches the user's runtime (`serve`) in a tier and stays in
//! the foreground as its lifecycle manager; `status`, `stop`, `restart` and `logs` speak
//! to it from another terminal through its control socket (`ipc/runner-control.sock`).
//! The machinery is `oxydra_tiers::runner`; this module turns the config into its plan.

use crate::{Failure, exit};
use oxydra_gateway::token::{self, TOKEN_ENV};
use oxydra_session::config::{self, Sources, runner::Tier};
use oxydra_tiers::confine::{PLAN_ENV, Plan};
use oxydra_tiers::container::{Bind, ContainerLaunch, IMAGE_COMPONENTS};
use oxydra_tiers::control::{Client, Request, Status};
use oxydra_tiers::egress::Grants;
use oxydra_tiers::runner::{self, Launch, Spec, Start};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct StartArgs {
    /// The user whose runtime to run (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
    /// Run the runtime in the `process` tier: a host process that confines itself
    /// (Landlock, seccomp, no_new_privs, rlimits), with no network of its own.
    #[arg(long)]
    insecure: bool,
    /// Where the runner's gateway listener binds; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
}

#[derive(clap::Args)]
pub struct TargetArgs {
    /// The user whose runner (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Keep printing lines as they are written, until interrupted.
    #[arg(long, short)]
    follow: bool,
}

/// The user's workspace, absolute (made when missing).
fn workspace(sources: &Sources, user: Option<String>) -> Result<(String, PathBuf), Failure> {
    let (user, ws) = oxydra_session::compose::user_and_workspace(sources, user)?;
    std::fs::create_dir_all(&ws)
        .and_then(|()| ws.canonicalize())
        .map(|ws| (user, ws))
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws.display())))
}

/// Paths that exist, made absolute.
fn existing(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if let Ok(c) = p.canonicalize()
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

/// Variables the runtime gets from the runner's environment, when set: where config and
/// caches live, logging, `OXYDRA__*` overrides, and the credentials the config names.
fn runtime_env(key_envs: &[String]) -> Vec<(OsString, OsString)> {
    let mut names: Vec<String> = [
        "PATH",
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "LANG",
        "TZ",
        "OXYDRA_LOG",
        "NO_COLOR",
        "OXYDRA_COMPONENTS_DIR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(key_envs.iter().cloned());
    let mut env: Vec<(OsString, OsString)> = names
        .iter()
        .filter_map(|n| std::env::var_os(n).map(|v| (OsString::from(n), v)))
        .collect();
    env.extend(
        std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("OXYDRA__"))),
    );
    env
}

pub fn start(args: StartArgs, sources: &Sources, global: &GlobalArgs) -> Result<(), Failure> {
    let (user, ws) = workspace(sources, args.user)?;
    let runner_cfg = config::load_runner(sources)?.value;
    let user_cfg = oxydra_session::compose::user_config(sources, &user)?;
    let tier = if args.insecure {
        Tier::Process
    } else {
        user_cfg
            .behavior
            .sandbox_tier
            .unwrap_or(runner_cfg.default_tier)
    };
    if tier == Tier::Process && user_cfg.behavior.shell_enabled == Some(true) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "[behavior] shell_enabled = true of user {user} needs the container tier: the process tier has no shell sidecar (shell tools are off there); remove the key, or run without --insecure"
            ),
        ));
    }
    if tier == Tier::Process && user_cfg.resources.max_vcpus.is_some() {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "resources.max_vcpus of user {user} is a CPU limit the process tier cannot apply (it has no cgroup of its own); remove it, or use the container tier"
            ),
        ));
    }
    runner::prepare(&ws)
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws.display())))?;
    // What the runtime may reach: its providers (a managed local model is started here,
    // outside the tier), its channel's API, and what the web policy allows.
    let system = oxydra_session::System::load(sources)?;
    for w in &system.warnings {
        tracing::warn!("{w}");
    }
    let egress = system.egress()?;
    let egress_secret = runner::random_secret()
        .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("a random secret: {e}")))?;
    let mut grants = Grants {
        origins: egress.origins.clone(),
        web: egress.web.clone(),
        secret: Some(egress_secret.clone()),
    };
    let mut key_envs = egress.key_envs.clone();
    if let Some(t) = &user_cfg.channels.telegram
        && t.enabled
    {
        let api = t
            .api_base_url
            .clone()
            .unwrap_or_else(|| oxydra_session::telegram::DEFAULT_API.to_string());
        let o = oxydra_runtime::capabilities::http::Origin::parse(&api).map_err(|e| {
            Failure::new(exit::USAGE, format!("channels.telegram.api_base_url: {e}"))
        })?;
        grants.origins.push((o.host, o.port));
        key_envs.extend(t.bot_token_env.clone());
    }
    let components = oxydra_session::tools::bundled_dir(&system.config.components);
    let configured_cache = system.config.components.cache_dir.clone();
    let cache = oxydra_session::tools::cache_dir(&system.config.components);
    // The runtime's gateway token: the runner makes it (the runtime cannot write ipc/).
    let env_token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let token = token::load_or_create(&ws, env_token)
        .map_err(|e| Failure::new(exit::USAGE, format!("gateway token: {e}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("this binary's path: {e}")))?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("the current directory: {e}")))?;
    if let Some(c) = &cache {
        let _ = std::fs::create_dir_all(c);
    }
    // What the runtime reads: its config (and in the process tier its binary and
    // components; a container has them in its image) and the vault.
    let mut config_paths: Vec<PathBuf> = sources.dirs.clone();
    config_paths.extend(sources.extra_file.clone());
    config_paths.push(cwd.join(".oxydra"));
    if let Some(b) = &system.base_dir {
        config_paths.push(b.clone());
    }
    let mut read_only = config_paths.clone();
    if tier == Tier::Process {
        read_only.extend(exe.parent().map(Path::to_path_buf));
        read_only.push(components);
        // The time zone database (scheduled jobs' cron times); the image has its own.
        read_only.extend(["/usr/share/zoneinfo".into(), "/etc/localtime".into()]);
    }
    read_only.push(ws.join("vault"));
    // Stdio MCP servers. In the process tier they run as the runtime's children, inside
    // its confinement: it must reach what each may (their own confinement narrows it
    // again). In the container tier each runs in its own container (the runtime's image,
    // the server's paths mounted read-only, no network), bridged to `ipc/mcp/<name>.sock`.
    let mut mcp_read_write = Vec::new();
    let mut mcp_containers = Vec::new();
    for (name, s) in system.config.mcp.servers.iter().filter(|(_, s)| s.enabled) {
        if s.transport() != oxydra_mcp::config::Transport::Stdio {
            continue;
        }
        if tier == Tier::Process {
            let access =
                oxydra_mcp::config::access(name, s).map_err(|e| Failure::new(exit::USAGE, e))?;
            read_only.extend(access.read_only);
            mcp_read_write.extend(access.read_write);
        } else {
            let launch = oxydra_mcp::StdioCommand::new(name, s, None, &ws)
                .map_err(|e| Failure::new(exit::USAGE, e))?;
            mcp_containers.push((
                name.clone(),
                mcp_launch(
                    &user,
                    &ws,
                    name,
                    &launch,
                    runner_cfg.guest_images.oxydra_vm.clone(),
                    &user_cfg.resources,
                    runner_cfg.container_runtime.clone(),
                )?,
            ));
        }
    }
    let log = runner::log_path(&ws);
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log);
    // A read-only root above the workspace would let the runtime read every user's
    // workspace (their vaults and gateway tokens).
    let read_only = existing(read_only);
    let root = ws.parent().unwrap_or(&ws).to_path_buf();
    if let Some(p) = read_only.iter().find(|p| root.starts_with(p)) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "the runtime must read {} (its binary, components or config), which contains the workspaces in {}: the runtime could read every user's workspace. Keep the binary and the config outside workspace_root (runner.toml), or set workspace_root elsewhere",
                p.display(),
                root.display()
            ),
        ));
    }
    let mut env = runtime_env(&key_envs);
    env.push((
        oxydra_runtime::capabilities::egress::EGRESS_SOCKET_ENV.into(),
        runner::egress_socket(&ws).into(),
    ));
    env.push((TOKEN_ENV.into(), token.value.clone().into()));
    env.push((
        oxydra_runtime::capabilities::egress::EGRESS_SECRET_ENV.into(),
        egress_secret.into(),
    ));
    if let Some(url) = &egress.local_model_url {
        env.push((oxydra_session::local::URL_ENV.into(), url.into()));
    }
    let mut args_out: Vec<OsString> = Vec::new();
    if let Some(c) = &global.config {
        args_out.extend([
            "--config".into(),
            c.canonicalize().unwrap_or(c.clone()).into(),
        ]);
    }
    for s in &global.sets {
        args_out.extend(["--set".into(), s.into()]);
    }
    if global.verbose {
        args_out.push("--verbose".into());
    }
    args_out.extend([
        "serve".into(),
        "--user".into(),
        user.clone().into(),
        "--workspace".into(),
        ws.clone().into(),
        "--listen".into(),
        if tier == Tier::MicroVm {
            format!("unix:{}", vm_guest_path("gateway.sock").display()).into()
        } else {
            format!("unix:{}", runner::gateway_socket(&ws).display()).into()
        },
    ]);
    // The shell sidecar (a container) runs beside the runtime unless the user turned it
    // off; the micro_vm tier's runtime reaches it over vsock.
    let shell_on = matches!(tier, Tier::Container | Tier::MicroVm)
        && user_cfg.behavior.shell_enabled != Some(false);
    let read_write = [
        ws.join("shared"),
        ws.join("tmp"),
        ws.join(".oxydra"),
        runner::runtime_dir(&ws),
    ];
    // The sidecars' sockets (never in the process tier; in a VM, vm_launch maps these
    // paths to the guest's /run/oxydra).
    if !mcp_containers.is_empty() {
        env.push((
            oxydra_mcp::BRIDGE_DIR_ENV.into(),
            runner::mcp_dir(&ws).into(),
        ));
    }
    if shell_on {
        env.push((
            oxydra_runtime::capabilities::shell::SHELL_SOCKET_ENV.into(),
            runner::shell_socket(&ws).into(),
        ));
    }
    let (launch, runtime_owner) = if tier == Tier::Process {
        let mut read_write = read_write.to_vec();
        read_write.push(PathBuf::from("/dev/null"));
        read_write.extend(cache);
        read_write.extend(mcp_read_write);
        let plan = Plan {
            read_only,
            read_write: existing(read_write),
            memory_bytes: user_cfg.resources.max_memory_mib.map(|m| m << 20),
            max_processes: user_cfg.resources.max_processes,
            max_open_files: 4096,
            connect_unix: vec![runner::egress_socket(&ws)],
            must_not_read: existing([PathBuf::from("/etc/passwd"), log.clone()]),
            must_not_write: existing([log.clone()]),
        };
        env.push((
            PLAN_ENV.into(),
            serde_json::to_string(&plan).unwrap_or_default().into(),
        ));
        args_out.push("--confine".into());
        (
            Start::Process(Launch {
                program: exe,
                args: args_out,
                env,
                cwd,
            }),
            None,
        )
    } else if tier == Tier::MicroVm {
        args_out.push("--in-vm".into());
        vm_launch(
            ContainerParts {
                user: &user,
                ws: &ws,
                image: None,
                resources: &user_cfg.resources,
                read_only,
                read_write: read_write.to_vec(),
                configured_cache,
                args: args_out,
                env,
                cwd,
                shell: shell_on,
                mcp: !mcp_containers.is_empty(),
                runtime: None,
            },
            &runner_cfg.micro_vm,
            runner_cfg
                .guest_images
                .firecracker_oxydra_vm_config
                .as_deref(),
            &exe,
            &mcp_containers
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        )?
    } else {
        args_out.push("--in-container".into());
        container_launch(ContainerParts {
            user: &user,
            ws: &ws,
            image: runner_cfg.guest_images.oxydra_vm.clone(),
            resources: &user_cfg.resources,
            read_only,
            read_write: read_write.to_vec(),
            configured_cache,
            args: args_out,
            env,
            cwd,
            shell: shell_on,
            mcp: !mcp_containers.is_empty(),
            runtime: runner_cfg.container_runtime.clone(),
        })?
    };
    let shell = shell_on.then(|| runner::Sidecar {
        launch: shell_launch(
            &user,
            &ws,
            runner_cfg.guest_images.shell_vm.clone(),
            &user_cfg.resources,
            runner_cfg.container_runtime.clone(),
        ),
        required: user_cfg.behavior.shell_enabled == Some(true),
    });
    let tier_name = match tier {
        Tier::Process => "process",
        Tier::Container => "container",
        Tier::MicroVm => "micro_vm",
    };
    let spec = Spec {
        user: user.clone(),
        ws: ws.clone(),
        tier: tier_name.into(),
        listen: args.listen,
        grants,
        launch,
        runtime_owner,
        shell,
        mcp: mcp_containers,
    };
    // The managed local model's server (if any) lives as long as the runner; the rest
    // of the system (the engine, the loaded components) is not needed any more.
    let local = system.local_server();
    drop(system);
    let endpoint = token::endpoint_path(&ws);
    let ep = endpoint.clone();
    eprintln!(
        "runner: user {user}, {tier_name} tier, workspace {}",
        ws.display()
    );
    let result = runner::run(spec, move |url| {
        let _ = token::write_private(&ep, &format!("{url}\n"));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "gateway {url}").and_then(|()| out.flush());
    });
    let _ = std::fs::remove_file(&endpoint);
    drop(local);
    result.map_err(|e| Failure::new(exit::TOOL_ERROR, e.0))
}

/// The image `start` uses when runner.toml names none (`scripts/build-guest-images.sh`
/// builds it).
pub const DEFAULT_IMAGE: &str = "oxydra-runtime:local";

/// The user a container runs as when the runner is root: the runtime never runs as root.
const CONTAINER_UID: u32 = 65532;

/// What the container tier's launch is made of.
struct ContainerParts<'a> {
    user: &'a str,
    ws: &'a Path,
    image: Option<String>,
    resources: &'a config::runner::Resources,
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    configured_cache: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    /// The shell sidecar runs: its socket directory is bound too.
    shell: bool,
    /// Stdio MCP servers run in their own containers: their sockets' directory too.
    mcp: bool,
    /// runner.toml `container_runtime` (`runsc`: gVisor).
    runtime: Option<String>,
}

/// The `--user` a container runs as, and who must own what it writes: never root (a root
/// runner's containers run as [`CONTAINER_UID`]).
fn container_user() -> (String, Option<(u32, u32)>) {
    let (uid, gid) = oxydra_tiers::container::effective_ids();
    if uid == 0 {
        (
            format!("{CONTAINER_UID}:{CONTAINER_UID}"),
            Some((CONTAINER_UID, CONTAINER_UID)),
        )
    } else {
        (format!("{uid}:{gid}"), None)
    }
}

/// The image the shell sidecar uses when runner.toml names none.
pub const DEFAULT_SHELL_IMAGE: &str = "oxydra-shell:local";

/// The container of stdio MCP server `name` (the container tier): the runtime's image
/// running `mcp-bridge` (which starts the server through `mcp-exec` per connection), the
/// paths the server may read mounted read-only at their own paths, what it may write and
/// its scratch directory read-write, its socket directory; nothing else — no vault, no
/// config, no store, no network, and only the environment its config lists.
fn mcp_launch(
    user: &str,
    ws: &Path,
    name: &str,
    launch: &oxydra_mcp::StdioCommand,
    image: Option<String>,
    resources: &config::runner::Resources,
    runtime: Option<String>,
) -> Result<ContainerLaunch, Failure> {
    let mut binds = Vec::new();
    // Not /dev (the engine's own), not /sbin (where the engine puts the container's
    // init), not a symlink (usr-merged /bin, /lib64: what it points to is bound).
    let skip = |p: &&PathBuf| {
        p.starts_with("/dev")
            || p.as_path() == Path::new("/sbin")
            || std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    };
    for (paths, read_only) in [
        (&launch.access.read_only, true),
        (&launch.access.read_write, false),
    ] {
        for path in paths.iter().filter(|p| !skip(p)) {
            binds.push(Bind {
                path: path.clone(),
                read_only,
                inside: None,
            });
        }
    }
    let own = runner::mcp_server_dir(ws, name);
    std::fs::create_dir_all(&own)
        .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", own.display())))?;
    for path in [launch.scratch.clone(), own] {
        binds.push(Bind {
            path,
            read_only: false,
            inside: None,
        });
    }
    let json = serde_json::to_string(launch)
        .map_err(|e| Failure::new(exit::USAGE, format!("mcp.servers.{name}: {e}")))?;
    Ok(ContainerLaunch {
        image: image.unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
        name: format!("oxydra-mcp-{user}-{:08x}-{name}", fnv(ws)),
        args: vec![
            "mcp-bridge".into(),
            "--socket".into(),
            runner::mcp_socket(ws, name).display().to_string(),
        ],
        env: vec![format!("{}={json}", oxydra_mcp::BRIDGE_ENV)],
        binds,
        working_dir: launch.scratch.clone(),
        user: container_user().0,
        memory_bytes: resources.max_memory_mib.map(|m| m << 20),
        cpus: resources.max_vcpus,
        pids_limit: resources.max_processes,
        runtime,
        role: "mcp".into(),
        scratch_tmp: true,
        oom_score_adj: None,
    })
}

/// The shell sidecar's container: the user's `shared` and `tmp` (at `/shared` and
/// `/tmp`, where `shell_exec`'s paths point), its socket directory at `/ipc` — and
/// nothing else: no vault, no config, no keys (only `TZ` in its environment), no
/// network, the same user and `[resources]` limits as the runtime. (Each command's
/// `oom_score_adj` is 1000, so at the memory limit a command dies, not the daemon; the
/// daemon's own is not lowered: runc cannot set a negative one without privileges.)
fn shell_launch(
    user: &str,
    ws: &Path,
    image: Option<String>,
    resources: &config::runner::Resources,
    runtime: Option<String>,
) -> ContainerLaunch {
    let bind = |from: PathBuf, inside: &str| Bind {
        path: from,
        read_only: false,
        inside: Some(PathBuf::from(inside)),
    };
    let socket = format!("/ipc/{}", runner::SHELL_SOCKET);
    let mut env = Vec::new();
    if let Ok(tz) = std::env::var("TZ") {
        env.push(format!("TZ={tz}"));
    }
    ContainerLaunch {
        image: image.unwrap_or_else(|| DEFAULT_SHELL_IMAGE.to_string()),
        name: format!("oxydra-shell-{user}-{:08x}", fnv(ws)),
        args: vec![
            "shell-daemon".into(),
            "--socket".into(),
            socket,
            "--root".into(),
            "/shared".into(),
            "--root".into(),
            "/tmp".into(),
        ],
        env,
        binds: vec![
            bind(ws.join("shared"), "/shared"),
            bind(ws.join("tmp"), "/tmp"),
            bind(runner::shell_dir(ws), "/ipc"),
        ],
        working_dir: PathBuf::from("/shared"),
        user: container_user().0,
        memory_bytes: resources.max_memory_mib.map(|m| m << 20),
        cpus: resources.max_vcpus,
        pids_limit: resources.max_processes,
        runtime,
        role: "shell".into(),
        scratch_tmp: false,
        oom_score_adj: None,
    }
}

/// The runtime's environment in an image of its own (a container or a VM): the
/// runner's, but the image's components and PATH, and unless one is configured a
/// component cache in the workspace's store directory.
fn image_env(
    runner_env: &[(OsString, OsString)],
    cache_configured: bool,
    ws: &Path,
) -> Vec<(String, String)> {
    let text = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = runner_env
        .iter()
        .filter(|(k, _)| k != "OXYDRA_COMPONENTS_DIR" && k != "PATH")
        .filter(|(k, _)| cache_configured || k != "XDG_CACHE_HOME")
        .map(|(k, v)| (text(k), text(v)))
        .collect();
    env.push(("OXYDRA_COMPONENTS_DIR".into(), IMAGE_COMPONENTS.to_string()));
    if !cache_configured {
        env.push((
            "XDG_CACHE_HOME".into(),
            ws.join(".oxydra").join("cache").display().to_string(),
        ));
    }
    env
}

/// The runtime's container: the same paths inside as outside, the image's binary and
/// components, the compiled-component cache in the workspace's store directory (never
/// where the agent's tools write), and a non-root user.
fn container_launch(p: ContainerParts<'_>) -> Result<(Start, Option<(u32, u32)>), Failure> {
    let mut binds: Vec<Bind> = p
        .read_only
        .iter()
        .map(|path| Bind {
            path: path.clone(),
            read_only: true,
            inside: None,
        })
        .collect();
    let mut rw = p.read_write;
    rw.extend(p.configured_cache.clone());
    for path in existing(rw) {
        binds.push(Bind {
            path,
            read_only: false,
            inside: None,
        });
    }
    binds.push(Bind {
        path: runner::egress_socket(p.ws),
        read_only: false,
        inside: None,
    });
    if p.shell {
        binds.push(Bind {
            path: runner::shell_dir(p.ws),
            read_only: false,
            inside: None,
        });
    }
    if p.mcp {
        binds.push(Bind {
            path: runner::mcp_dir(p.ws),
            read_only: false,
            inside: None,
        });
    }
    let text = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
    let env: Vec<String> = image_env(&p.env, p.configured_cache.is_some(), p.ws)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let (user, owner) = container_user();
    let name = format!("oxydra-runtime-{}-{:08x}", p.user, fnv(p.ws));
    Ok((
        Start::Container(ContainerLaunch {
            image: p.image.unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            name,
            args: p.args.iter().map(|a| text(a)).collect(),
            env,
            binds,
            // Where relative config paths (`.oxydra`) resolve as they do outside; a
            // directory the container does not have is not made for it.
            working_dir: if p.cwd.join(".oxydra").is_dir() {
                p.cwd
            } else {
                PathBuf::from("/")
            },
            user,
            memory_bytes: p.resources.max_memory_mib.map(|m| m << 20),
            cpus: p.resources.max_vcpus,
            pids_limit: p.resources.max_processes,
            runtime: p.runtime,
            role: "runtime".into(),
            scratch_tmp: true,
            oom_score_adj: None,
        }),
        owner,
    ))
}

/// A path of the runtime's sockets inside the micro_vm guest.
fn vm_guest_path(name: &str) -> PathBuf {
    Path::new(oxydra_tiers::vm_guest::GUEST_RUN).join(name)
}

/// Config files bigger than this are not copied into the guest one by one.
const VM_FILE_MAX: u64 = 1 << 20;

/// The runtime's VM (the micro_vm tier): QEMU's microvm with the images of
/// `scripts/build-vm-images.sh`; the same paths inside as outside, each directory a 9p
/// share (the vault and the config read-only), config files named one by one copied
/// in, no network device; the egress proxy, the shell sidecar and MCP servers'
/// containers reached over vsock; the runtime as the same non-root user as in a
/// container.
fn vm_launch(
    p: ContainerParts<'_>,
    cfg: &config::runner::MicroVm,
    firecracker_config: Option<&Path>,
    exe: &Path,
    mcp: &[String],
) -> Result<(Start, Option<(u32, u32)>), Failure> {
    use oxydra_tiers::vm::{self, Backend, Images, Share, VmLaunch};
    use oxydra_tiers::vm_guest::{self, GuestFile, GuestPlan, Outbound};
    let usage = |m: String| Failure::new(exit::USAGE, m);
    // Firecracker when its config file is named (its vsock is its own); else QEMU with
    // vhost-device-vsock.
    let firecracker = match firecracker_config {
        None => None,
        Some(path) => {
            let template = vm::firecracker_template(path).map_err(usage)?;
            let binary = cfg
                .firecracker
                .clone()
                .or_else(|| oxydra_tiers::vm::on_path("firecracker"))
                .ok_or_else(|| {
                    usage("guest_images.firecracker_oxydra_vm_config is set, but Firecracker is not installed: put `firecracker` on PATH or set [micro_vm] firecracker in runner.toml (or remove the key to use QEMU)".into())
                })?;
            Some(Backend::Firecracker { binary, template })
        }
    };
    let qemu = match &firecracker {
        Some(_) => PathBuf::new(),
        None => cfg
            .qemu
            .clone()
            .or_else(|| oxydra_tiers::vm::on_path("qemu-system-x86_64"))
            .ok_or_else(|| {
                usage("the micro_vm tier needs QEMU: apt-get install qemu-system-x86, or set [micro_vm] qemu in runner.toml".into())
            })?,
    };
    let vhost_vsock = match &firecracker {
        Some(_) => PathBuf::new(),
        None => cfg
            .vhost_device_vsock
            .clone()
            .or_else(|| oxydra_tiers::vm::on_path("vhost-device-vsock"))
            .ok_or_else(|| {
                usage("the micro_vm tier needs vhost-device-vsock (QEMU's vsock device): cargo install --locked vhost-device-vsock --version 0.3.0, or set [micro_vm] vhost_device_vsock in runner.toml".into())
            })?,
    };
    let images_dir = cfg.images_dir.clone().unwrap_or_else(|| {
        exe.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .join("guest-images/microvm")
    });
    let images = Images::in_dir(&images_dir);
    images
        .check("runner.toml [micro_vm] images_dir")
        .map_err(usage)?;
    seed_cache(
        &images_dir,
        &p.configured_cache.clone().unwrap_or_else(|| {
            p.ws.join(".oxydra")
                .join("cache")
                .join("oxydra")
                .join("components")
        }),
    );
    let mut shares = Vec::new();
    let mut files = Vec::new();
    // A file inside a shared directory is there already (and writing it would fail on
    // a read-only share, or overwrite the host's on a read-write one).
    let dirs: Vec<PathBuf> = p
        .read_only
        .iter()
        .chain(&p.read_write)
        .filter(|d| d.is_dir())
        .cloned()
        .collect();
    for path in &p.read_only {
        if !path.is_dir() && dirs.iter().any(|d| path.starts_with(d)) {
            continue;
        }
        if path.is_dir() {
            shares.push(Share {
                path: path.clone(),
                read_only: true,
            });
        } else {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let text = std::fs::read_to_string(path)
                .ok()
                .filter(|_| size <= VM_FILE_MAX);
            let Some(text) = text else {
                return Err(usage(format!(
                    "{}: the micro_vm tier copies config files into the VM one by one, and this one is not UTF-8 text under 1 MiB; name its directory instead",
                    path.display()
                )));
            };
            files.push(GuestFile {
                path: path.clone(),
                text,
            });
        }
    }
    let mut rw = p.read_write;
    rw.extend(p.configured_cache.clone());
    for path in existing(rw) {
        shares.push(Share {
            path,
            read_only: false,
        });
    }
    let guest_socket = |name: &str| vm_guest_path(name);
    let mut outbound = vec![Outbound {
        path: guest_socket("egress.sock"),
        port: vm_guest::EGRESS_PORT,
    }];
    let mut forwards = vec![(vm_guest::EGRESS_PORT, runner::egress_socket(p.ws))];
    if p.shell {
        outbound.push(Outbound {
            path: guest_socket(runner::SHELL_SOCKET),
            port: vm_guest::SHELL_PORT,
        });
        forwards.push((vm_guest::SHELL_PORT, runner::shell_socket(p.ws)));
    }
    let mcp_dir = guest_socket("mcp");
    for (i, name) in mcp.iter().enumerate() {
        let port = vm_guest::MCP_PORT_BASE + i as u32;
        outbound.push(Outbound {
            path: oxydra_mcp::launch::bridge_socket(&mcp_dir, name),
            port,
        });
        forwards.push((port, runner::mcp_socket(p.ws, name)));
    }
    let text = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
    // The sidecars' sockets are the guest's.
    let env: Vec<(String, String)> = image_env(&p.env, p.configured_cache.is_some(), p.ws)
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                oxydra_runtime::capabilities::egress::EGRESS_SOCKET_ENV => {
                    guest_socket("egress.sock").display().to_string()
                }
                oxydra_runtime::capabilities::shell::SHELL_SOCKET_ENV => {
                    guest_socket(runner::SHELL_SOCKET).display().to_string()
                }
                oxydra_mcp::BRIDGE_DIR_ENV => mcp_dir.display().to_string(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    let (uid, gid) = oxydra_tiers::container::effective_ids();
    let owner = (uid == 0).then_some((CONTAINER_UID, CONTAINER_UID));
    let (guest_uid, guest_gid) = owner.unwrap_or((uid, gid));
    let vcpus = p.resources.max_vcpus.map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(2) as u32
        },
        |c| c.ceil().max(1.0) as u32,
    );
    let accel = match cfg.accel {
        config::runner::VmAccel::Auto => vm::Accel::Auto,
        config::runner::VmAccel::Kvm => {
            vm::kvm_usable().map_err(|why| {
                usage(format!(
                    "micro_vm.accel = \"kvm\" in runner.toml, but KVM cannot run the guest here: {why}; set accel = \"auto\" (TCG where KVM cannot) or \"tcg\""
                ))
            })?;
            vm::Accel::Kvm
        }
        config::runner::VmAccel::Tcg => vm::Accel::Tcg,
    };
    let plan = GuestPlan {
        shares: Vec::new(),
        files,
        program: PathBuf::from(IMAGE_BINARY),
        args: p.args.iter().map(|a| text(a)).collect(),
        env,
        cwd: if p.cwd.join(".oxydra").is_dir() {
            p.cwd
        } else {
            PathBuf::from("/")
        },
        uid: guest_uid,
        gid: guest_gid,
        max_processes: p.resources.max_processes,
        outbound,
        gateway: vm_guest_path("gateway.sock"),
    };
    Ok((
        Start::Vm(VmLaunch {
            backend: firecracker.unwrap_or(Backend::Qemu {
                binary: qemu,
                accel,
            }),
            vhost_vsock,
            images,
            memory_mib: p.resources.max_memory_mib.unwrap_or(cfg.memory_mib),
            vcpus,
            shares,
            guest: plan,
            dir: runner::vm_dir(p.ws),
            forwards,
            run_as: owner,
        }),
        owner,
    ))
}

/// The compiled components `vm-warm-cache` left beside the images: copied into the
/// workspace's cache where missing, so that a workspace's first boot does not compile
/// them under TCG. (Entries another engine made are never read: the cache's keys
/// carry the engine's compatibility hash.)
fn seed_cache(images_dir: &Path, cache: &Path) {
    let from = images_dir.join("cache").join("oxydra").join("components");
    let Ok(entries) = std::fs::read_dir(&from) else {
        return;
    };
    if std::fs::create_dir_all(cache).is_err() {
        return;
    }
    for e in entries.flatten() {
        let to = cache.join(e.file_name());
        if !to.exists() {
            let tmp = cache.join(format!(".{}.seed", e.file_name().to_string_lossy()));
            if std::fs::copy(e.path(), &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, &to);
            }
        }
    }
}

#[derive(clap::Args)]
pub struct WarmArgs {
    /// The directory `scripts/build-vm-images.sh` built; the cache goes to DIR/cache.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Default: `vhost-device-vsock` on PATH.
    #[arg(long, value_name = "PATH")]
    vhost_device_vsock: Option<PathBuf>,
    /// Default: `qemu-system-x86_64` on PATH.
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
}

/// `oxydra-host vm-warm-cache` (hidden; `scripts/build-vm-images.sh` runs it): boot the
/// guest once to compile the bundled components with the guest's own engine into
/// `<images>/cache`, from which `start` seeds each workspace's cache.
pub fn warm_vm_cache(args: WarmArgs) -> Result<(), Failure> {
    use oxydra_tiers::vm::{self, Accel, Backend, Images, Share, VmLaunch};
    use oxydra_tiers::vm_guest::GuestPlan;
    let usage = |m: String| Failure::new(exit::USAGE, m);
    let qemu = args
        .qemu
        .or_else(|| oxydra_tiers::vm::on_path("qemu-system-x86_64"))
        .ok_or_else(|| usage("QEMU is not installed: apt-get install qemu-system-x86".into()))?;
    let vhost_vsock = args
        .vhost_device_vsock
        .or_else(|| oxydra_tiers::vm::on_path("vhost-device-vsock"))
        .ok_or_else(|| {
            usage("vhost-device-vsock is not installed: cargo install --locked vhost-device-vsock --version 0.3.0".into())
        })?;
    let images_dir = args
        .images
        .canonicalize()
        .map_err(|e| usage(format!("{}: {e}", args.images.display())))?;
    let images = Images::in_dir(&images_dir);
    images.check("--images").map_err(usage)?;
    let cache = images_dir.join("cache");
    std::fs::create_dir_all(&cache).map_err(|e| usage(format!("{}: {e}", cache.display())))?;
    let l = VmLaunch {
        backend: Backend::Qemu {
            binary: qemu,
            accel: Accel::Auto,
        },
        vhost_vsock,
        images,
        memory_mib: 1024,
        vcpus: std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(2) as u32,
        shares: vec![Share {
            path: cache.clone(),
            read_only: false,
        }],
        guest: GuestPlan {
            program: PathBuf::from(IMAGE_BINARY),
            args: vec!["precompile".into()],
            env: vec![
                ("XDG_CACHE_HOME".into(), cache.display().to_string()),
                ("OXYDRA_COMPONENTS_DIR".into(), IMAGE_COMPONENTS.into()),
                ("HOME".into(), "/tmp".into()),
            ],
            cwd: PathBuf::from("/"),
            gateway: vm_guest_path("gateway.sock"),
            ..GuestPlan::default()
        },
        dir: images_dir.join("warm-vm"),
        forwards: Vec::new(),
        run_as: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
    let (what, code) = rt.block_on(async {
        let mut running = vm::start(&l, tokio::io::stderr(), tokio::io::stderr())
            .await
            .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
        let ended = tokio::time::timeout(std::time::Duration::from_secs(900), running.wait()).await;
        let out = match ended {
            Ok(r) => r,
            Err(_) => (
                running.terminate(std::time::Duration::from_secs(5)).await,
                None,
            ),
        };
        running.remove().await;
        Ok::<_, Failure>(out)
    })?;
    let _ = std::fs::remove_dir_all(images_dir.join("warm-vm"));
    if code != Some(0) {
        return Err(Failure::new(
            exit::TOOL_ERROR,
            format!("the guest's precompile {what}"),
        ));
    }
    Ok(())
}

/// The binary's path in the guest's root filesystem (`scripts/build-vm-images.sh`).
const IMAGE_BINARY: &str = "/oxydra/bin/oxydra-host";

/// A short stable hash of a workspace path (container names differ per workspace).
fn fnv(p: &Path) -> u32 {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str()
        .as_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        })
}

/// The top-level flags `start` hands on to the runtime it launches.
pub struct GlobalArgs {
    pub config: Option<PathBuf>,
    pub sets: Vec<String>,
    pub verbose: bool,
}

fn client(sources: &Sources, user: Option<String>) -> Result<Client, Failure> {
    let (_, ws) = workspace(sources, user)?;
    Client::connect(&ws).map_err(|e| Failure::new(exit::USAGE, e))
}

fn print_status(s: &Status) {
    let pid = s
        .runtime_pid
        .map_or_else(|| "none".to_string(), |p| p.to_string());
    println!("user       {}", s.user);
    println!("tier       {}", s.tier);
    println!("state      {}", s.state);
    println!("runner     pid {}", s.runner_pid);
    println!("runtime    pid {pid}");
    if let Some(c) = &s.container {
        let label = if s.tier == "micro_vm" {
            "vm"
        } else {
            "container"
        };
        println!("{label:<10} {c}");
    }
    if let Some(sh) = &s.shell {
        println!("shell      {sh}");
    }
    for (name, line) in &s.mcp {
        println!("mcp {name:<6} {line}");
    }
    println!("gateway    {}", s.gateway);
    println!("health     {}", s.health);
    if let Some(ms) = s.ready_ms {
        println!("ready in   {ms} ms");
    }
    if let Some(u) = s.uptime_secs {
        println!("uptime     {u} s");
    }
    println!("restarts   {}", s.restarts);
    if let Some(e) = &s.last_exit {
        println!("last exit  {e}");
    }
    println!(
        "egress     {} tunnels, {} refused",
        s.egress_tunnels, s.egress_refused
    );
    for (title, list) in [
        ("applied", &s.applied),
        ("verified", &s.verified),
        ("degraded", &s.degraded),
    ] {
        if list.is_empty() {
            continue;
        }
        println!("{title}:");
        for a in list {
            println!("  - {a}");
        }
    }
    if s.degraded.is_empty() && !s.applied.is_empty() {
        println!("degraded:  none");
    }
}

pub fn status(args: StatusArgs, sources: &Sources) -> Result<(), Failure> {
    let (answer, _) = client(sources, args.target.user)?
        .request(&Request::Status, Some(std::time::Duration::from_secs(10)))
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
    let status = answer.status.unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
    } else {
        print_status(&status);
    }
    Ok(())
}

pub fn stop(args: TargetArgs, sources: &Sources) -> Result<(), Failure> {
    client(sources, args.user)?
        .request(&Request::Stop, Some(std::time::Duration::from_secs(60)))
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
    eprintln!("stopped");
    Ok(())
}

pub fn restart(args: TargetArgs, sources: &Sources) -> Result<(), Failure> {
    client(sources, args.user)?
        .request(&Request::Restart, Some(std::time::Duration::from_secs(300)))
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
    eprintln!("restarted: the runtime is ready");
    Ok(())
}

pub fn logs(args: LogsArgs, sources: &Sources) -> Result<(), Failure> {
    let (_, reader) = client(sources, args.target.user)?
        .request(
            &Request::Logs {
                tail: args.tail,
                follow: args.follow,
            },
            None,
        )
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
    let mut out = std::io::stdout().lock();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}
