//! The `micro_vm` tier end to end: QEMU's `microvm` machine (TCG on this project's
//! machines, where /dev/kvm is PVM), `vhost-device-vsock`, and the guest images
//! `./scripts/build-vm-images.sh` builds into target/guest-images/microvm. A turn that
//! writes a file completes through the runner's listener, forwarded over vsock to the
//! gateway inside the VM; the model is reached through the egress proxy over vsock.
//! What the runtime checks from inside (no interface but `lo`, a read-only vault and
//! root, not root) is asserted; a VMM killed from outside is started again; `stop`
//! ends the VM; a guest that cannot boot is reported with its console's last lines.
//! VM boots take seconds under TCG: the tests are few.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/reap.rs"]
mod reap;
#[path = "common/runner.rs"]
mod runner;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::Env;
use common::gateway::token;
use runner::turn;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The guest images beside the binary (target/guest-images/microvm).
fn images() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_oxydra-host"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("guest-images/microvm")
}

/// QEMU, vhost-device-vsock and the images are here; else fail saying what to do.
fn vhost_vsock() -> PathBuf {
    assert!(
        on_path("qemu-system-x86_64").is_some(),
        "the micro_vm tier's tests need QEMU: apt-get install qemu-system-x86 (./scripts/test.sh checks)"
    );
    let vhost = std::env::var_os("VHOST_DEVICE_VSOCK")
        .map(PathBuf::from)
        .or_else(|| on_path("vhost-device-vsock"))
        .expect("the micro_vm tier's tests need vhost-device-vsock on PATH (or VHOST_DEVICE_VSOCK): cargo install --locked vhost-device-vsock --version 0.3.0");
    for f in ["vmlinux", "initrd.cpio", "runtime.ext4"] {
        assert!(
            images().join(f).is_file(),
            "{} is missing: run ./scripts/build-vm-images.sh (./scripts/test.sh does)",
            images().join(f).display()
        );
    }
    vhost
}

/// agent.toml's extra lines: one component cache for every VM these tests boot, so that
/// only the first boot compiles the components under TCG (the guest's engine is the
/// same on every boot: QEMU's `-cpu max`).
fn shared_cache() -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("microvm-component-cache");
    std::fs::create_dir_all(&dir).unwrap();
    // The runtime in the guest is 65532 when the tests run as root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    format!("[components]\ncache_dir = \"{}\"\n", dir.display())
}

/// runner.toml for the micro_vm tier (with `extra` in `[micro_vm]`), and alice's
/// limits; no shell sidecar (its own test turns it on).
fn setup(env: &Env, extra: &str) {
    setup_with(env, extra, "shell_enabled = false\n");
}

fn setup_with(env: &Env, extra: &str, behavior: &str) {
    let d = env.dir.path().join(".oxydra");
    std::fs::write(
        d.join("runner.toml"),
        format!(
            "default_tier = \"micro_vm\"\n[micro_vm]\nvhost_device_vsock = \"{}\"\n{extra}[users.alice]\nconfig_path = \"users/alice.toml\"\n",
            vhost_vsock().display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("users")).unwrap();
    std::fs::write(
        d.join("users/alice.toml"),
        format!("[resources]\nmax_memory_mib = 768\nmax_processes = 256\nmax_vcpus = 2\n[behavior]\n{behavior}"),
    )
    .unwrap();
}

/// The VMM's pid, as `status` says.
fn vmm_pid(s: &serde_json::Value) -> i32 {
    s["runtime_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no runtime pid in {s}")) as i32
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn the_micro_vm_tier_runs_a_turn_in_a_vm_with_no_network_and_a_read_only_vault() {
    let env = Env::with_config(
        vec![
            server::openai::tool_calls(
                &[(
                    "c1",
                    "file_write",
                    json!({"path": "/shared/from-the-vm.txt", "content": "written in the VM ✓"}),
                )],
                None,
            ),
            server::openai::answer("answered from the VM", None),
            server::openai::answer("answered after the VM was killed", None),
        ],
        &shared_cache(),
    );
    setup(&env, "");
    let ws = env.alice();
    std::fs::create_dir_all(ws.join("vault")).unwrap();
    std::fs::write(ws.join("vault/secret.txt"), "vault ✓").unwrap();
    let mut runner = env.start(&[]);
    let url = runner.url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let tok = token(&ws);
    let t = Instant::now();
    assert_eq!(turn(&url, &tok, "write a file"), "answered from the VM");
    let first_turn = t.elapsed();
    assert_eq!(
        std::fs::read_to_string(ws.join("shared/from-the-vm.txt")).unwrap(),
        "written in the VM ✓",
        "the guest wrote the user's shared directory (9p)"
    );

    let s = env.ready(None);
    assert_eq!(s["tier"], "micro_vm", "{s}");
    assert_eq!(s["health"], "ok", "{s}");
    let applied = s["applied"].to_string();
    for want in [
        "micro_vm tier: qemu microvm (",
        "no network device",
        "root disk read-only",
        "memory 768 MiB, 2 vCPUs",
        "QEMU's seccomp sandbox on",
    ] {
        assert!(applied.contains(want), "{want}: {s}");
    }
    let verified = s["verified"].to_string();
    for want in [
        "no route off this host",
        "network interfaces: lo only",
        "the vault is read-only",
        "the root filesystem is read-only",
        "not root",
        "no effective capabilities",
        "no_new_privs set",
    ] {
        assert!(verified.contains(want), "{want}: {s}");
    }
    assert_eq!(s["degraded"], json!([]), "{s}");
    assert_eq!(
        std::fs::read_to_string(ws.join("vault/secret.txt")).unwrap(),
        "vault ✓",
        "the vault is untouched"
    );
    // The plan disk (it holds the runtime's secrets) is gone once the guest is ready.
    assert!(!ws.join("ipc/vm/runtime/plan.img").exists());
    eprintln!(
        "micro_vm figures: boot to ready {} ms ({}), first turn through the VM {:.0} ms",
        s["ready_ms"],
        s["container"].as_str().unwrap_or_default(),
        first_turn.as_secs_f64() * 1000.0
    );

    // The VMM killed from outside: the runner boots another VM.
    let pid = vmm_pid(&s);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let again = loop {
        let s = env.status();
        if s["state"] == "ready" && s["restarts"].as_u64() >= Some(1) {
            break s;
        }
        assert!(Instant::now() < deadline, "not started again: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        again["last_exit"]
            .as_str()
            .unwrap_or_default()
            .contains("before the runtime said how it ended"),
        "{again}"
    );
    assert_eq!(
        turn(&url, &tok, "still there?"),
        "answered after the VM was killed"
    );
    let (_, logs, _) = env.ctl(&["logs", "--tail", "300"]);
    assert!(logs.contains("runtime started in a VM"), "{logs}");
    assert!(
        logs.contains("gateway unix:/run/oxydra/gateway.sock"),
        "the guest's console reaches the log: {logs}"
    );

    // `stop` ends the VM (the runtime first, then the guest) and its vsock device.
    let pid = vmm_pid(&again);
    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = runner.child.0.wait().unwrap();
    assert!(status.success(), "{}", runner.err.lock().unwrap());
    assert!(!alive(pid), "the VMM is gone");
    let logs = std::fs::read_to_string(ws.join("logs/runtime.log")).unwrap();
    assert!(
        logs.contains("oxydra-vm: runtime exited with status 0"),
        "the runtime stopped cleanly inside the VM: {logs}"
    );
    let mut left = Vec::new();
    for d in [ws.join("ipc/vm/runtime"), ws.join("ipc/vm/runtime/vsock")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if !e.file_type().unwrap().is_dir() {
                left.push(e.path());
            }
        }
    }
    assert!(
        left.is_empty(),
        "nothing is left of the VM (sockets, pid files, plan): {left:?}"
    );
}

/// The Firecracker backend: the runner writes Firecracker's config file and starts
/// `firecracker --no-api`; the guest mounts the workspace from the runner's 9p server
/// over vsock (Firecracker has no shared-directory device). No Firecracker can run on
/// this project's machines (no binary in any registry, and /dev/kvm is PVM), so the
/// VMM here is `common/firecracker-on-qemu`: it checks the config against
/// Firecracker's schema and boots it with Firecracker's device model (disks without
/// serial numbers, hybrid vsock, no shared directories, no network) on QEMU under TCG.
#[test]
fn the_firecracker_backend_boots_the_guest_with_the_workspace_over_vsock() {
    let env = Env::with_config(
        vec![
            server::openai::tool_calls(
                &[(
                    "c1",
                    "file_write",
                    json!({"path": "/shared/from-firecracker.txt", "content": "over vsock ✓"}),
                )],
                None,
            ),
            server::openai::answer("answered from the Firecracker guest", None),
        ],
        &shared_cache(),
    );
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/firecracker-on-qemu");
    let template = env.dir.path().join("firecracker.json");
    std::fs::write(
        &template,
        r#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": false}}"#,
    )
    .unwrap();
    setup(
        &env,
        &format!(
            "firecracker = \"{}\"\n[guest_images]\nfirecracker_oxydra_vm_config = \"{}\"\n",
            standin.display(),
            template.display()
        ),
    );
    let ws = env.alice();
    std::fs::create_dir_all(ws.join("vault")).unwrap();
    std::fs::write(ws.join("vault/secret.txt"), "vault ✓").unwrap();
    std::fs::create_dir_all(ws.join("shared/notes")).unwrap();
    std::fs::write(ws.join("shared/notes/a.txt"), "from the host").unwrap();
    let mut runner = env.start(&[]);
    let url = runner.url();
    let tok = token(&ws);
    assert_eq!(
        turn(&url, &tok, "write a file"),
        "answered from the Firecracker guest"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("shared/from-firecracker.txt")).unwrap(),
        "over vsock ✓",
        "the guest wrote the shared directory through the runner's 9p server"
    );
    let s = env.ready(None);
    let applied = s["applied"].to_string();
    for want in [
        "micro_vm tier: firecracker",
        "workspace over vsock from the runner's 9p server",
        "memory 768 MiB, 2 vCPUs",
    ] {
        assert!(applied.contains(want), "{want}: {s}");
    }
    let verified = s["verified"].to_string();
    for want in [
        "network interfaces: lo only",
        "the vault is read-only",
        "the root filesystem is read-only",
        "not root",
    ] {
        assert!(verified.contains(want), "{want}: {s}");
    }
    // The config the runner wrote: the user's limits over the template's, the guest's
    // disks read-only, the template's own fields kept.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.join("ipc/vm/runtime/firecracker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["machine-config"]["mem_size_mib"], 768, "{cfg}");
    assert_eq!(cfg["machine-config"]["vcpu_count"], 2, "{cfg}");
    assert_eq!(cfg["machine-config"]["smt"], false, "{cfg}");
    assert!(
        cfg["drives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["is_read_only"] == true),
        "{cfg}"
    );
    assert!(cfg.get("network-interfaces").is_none(), "{cfg}");
    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(runner.child.0.wait().unwrap().success());
    let logs = std::fs::read_to_string(ws.join("logs/runtime.log")).unwrap();
    assert!(
        logs.contains("oxydra-vm: runtime exited with status 0"),
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("vault/secret.txt")).unwrap(),
        "vault ✓"
    );

    // A template that would give the guest a network device is refused at start.
    std::fs::write(
        &template,
        r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}]}"#,
    )
    .unwrap();
    let (code, _, err) = env.ctl(&["start"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("network-interfaces") && err.contains("no network device"),
        "{err}"
    );
}

#[test]
fn a_guest_that_cannot_boot_is_reported_with_its_console() {
    let env = Env::new(vec![]);
    // The real kernel and initramfs, and a root disk that is not a filesystem.
    let broken = env.dir.path().join("broken-images");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["vmlinux", "initrd.cpio"] {
        std::os::unix::fs::symlink(images().join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("runtime.ext4"), vec![0u8; 4 << 20]).unwrap();
    setup(&env, &format!("images_dir = \"{}\"\n", broken.display()));
    let mut runner = env.start(&[]);
    let status = runner.child.0.wait().unwrap();
    assert!(!status.success());
    let err = runner.err.lock().unwrap().clone();
    assert!(
        err.contains("failed to boot the VM")
            && err.contains("mount the root filesystem")
            && err.contains("console's last lines"),
        "{err}"
    );

    // Images that are not built are refused before anything starts, saying how to.
    let none = env.dir.path().join("no-images");
    setup(&env, &format!("images_dir = \"{}\"\n", none.display()));
    let (code, _, err) = env.ctl(&["start"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("vmlinux") && err.contains("build-vm-images.sh"),
        "{err}"
    );
}

#[test]
fn the_vm_reaches_the_shell_sidecar_and_an_mcp_server_container_over_vsock() {
    let (ok, out) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "oxydra-shell:local",
    ]);
    assert!(
        ok,
        "the micro_vm tier's shell sidecar is the container tier's: this test needs a Docker engine (DOCKER_HOST={:?}) with oxydra-shell:local (./scripts/test.sh starts one and builds it). {out}",
        std::env::var("DOCKER_HOST").ok()
    );
    let env = Env::with_config(
        vec![
            server::openai::tool_calls(
                &[
                    (
                        "sh",
                        "shell_exec",
                        json!({"command": "echo from the VM shell > /shared/vm-shell.txt && cat /shared/vm-shell.txt && ls /", "timeout_secs": 20}),
                    ),
                    ("m1", "t__echo", json!({ "text": "from the MCP container" })),
                ],
                None,
            ),
            server::openai::answer("the shell ran", None),
        ],
        &format!(
            "{}[mcp.servers.t]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
            shared_cache(),
            common::mcp::mcp_python().display().to_string(),
            common::mcp::server_script().display().to_string(),
        ),
    );
    setup_with(&env, "", "shell_enabled = true\n");
    let ws = env.alice();
    let mut runner = env.start(&[]);
    let url = runner.url();
    let s = env.ready(None);
    assert!(
        s["shell"]
            .as_str()
            .unwrap_or_default()
            .starts_with("up (container oxydra-shell-alice-"),
        "{s}"
    );
    assert_eq!(turn(&url, &token(&ws), "use the shell"), "the shell ran");
    let result = tool_result(&env, "sh");
    assert!(
        result.starts_with("exit code 0") && result.contains("from the VM shell"),
        "{result}"
    );
    assert!(
        !result.contains("vault"),
        "the sidecar has no vault: {result}"
    );
    // The stdio MCP server in its own container, reached from the VM over vsock.
    let echoed = tool_result(&env, "m1");
    assert_eq!(echoed, "from the MCP container", "{:?}", env.ctl(&["logs"]));
    assert!(
        s["mcp"]["t"]
            .as_str()
            .unwrap_or_default()
            .starts_with("up (container oxydra-mcp-alice-"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("shared/vm-shell.txt")).unwrap(),
        "from the VM shell\n",
        "the command ran in the sidecar, which writes the user's shared directory"
    );
    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(runner.child.0.wait().unwrap().success());
    let (exists, _) = docker(&[
        "inspect",
        s["shell"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("up (container ")
            .split([',', ' '])
            .next()
            .unwrap_or_default(),
    ]);
    assert!(!exists, "the sidecar's container is removed");
}

/// The text of the tool result with `id` in the last request that carries it.
fn tool_result(env: &Env, id: &str) -> String {
    env.server
        .requests()
        .iter()
        .rev()
        .find_map(|r| {
            r.json()["messages"].as_array().and_then(|m| {
                m.iter()
                    .find(|m| m["tool_call_id"] == id)
                    .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            })
        })
        .unwrap_or_else(|| panic!("no result of tool call {id} reached the model"))
}

/// `docker <args>` against the tests' engine: (success, stdout + stderr).
fn docker(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI (apt-get install docker.io)");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}
