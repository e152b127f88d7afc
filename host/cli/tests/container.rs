//! The `container` tier end to end, against a real Docker engine (`DOCKER_HOST`;
//! `./scripts/test.sh` starts a private one) and the image `./scripts/build-guest-images.sh`
//! builds (`oxydra-runtime:local`): `oxydra-host --user alice start` runs `serve` in a
//! container with no network, every capability dropped, a read-only root and vault, a
//! non-root user and the limits of `[resources]`; a turn that writes a file completes
//! through the runner's listener, the model reached through the egress proxy. The
//! engine's view (inspect) and the runtime's own checks from inside are both asserted;
//! a container killed from outside is started again; `stop` removes it.
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
use std::process::Command;
use std::time::{Duration, Instant};

/// `docker <args>` against the tests' engine: (success, stdout + stderr).
fn docker(args: &[&str]) -> (bool, String) {
    let o = Command::new("docker")
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

/// The engine answers and has the runtime's image; else fail saying what to do.
fn engine() {
    let (ok, out) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "oxydra-runtime:local",
    ]);
    assert!(
        ok,
        "the container tier's tests need a Docker engine (DOCKER_HOST={:?}) with the image oxydra-runtime:local: run ./scripts/test.sh, which starts one and builds the image with ./scripts/build-guest-images.sh. {out}",
        std::env::var("DOCKER_HOST").ok()
    );
}

/// runner.toml for the container tier, and alice's limits.
fn setup(env: &Env, image: &str) {
    let d = env.dir.path().join(".oxydra");
    std::fs::write(
        d.join("runner.toml"),
        format!(
            "default_tier = \"container\"\n[guest_images]\noxydra_vm = \"{image}\"\n[users.alice]\nconfig_path = \"users/alice.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("users")).unwrap();
    std::fs::write(
        d.join("users/alice.toml"),
        "[resources]\nmax_memory_mib = 512\nmax_processes = 256\nmax_vcpus = 1.5\n",
    )
    .unwrap();
}

/// The container `status` names: its name (before the short id).
fn container_name(s: &serde_json::Value) -> String {
    s["container"]
        .as_str()
        .unwrap_or_else(|| panic!("no container in {s}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_container_tier_runs_a_turn_with_no_network_and_a_read_only_vault() {
    engine();
    let env = Env::new(vec![
        server::openai::tool_calls(
            &[(
                "c1",
                "file_write",
                json!({"path": "/shared/from-the-container.txt", "content": "written inside ✓"}),
            )],
            None,
        ),
        server::openai::answer("answered from the container", None),
        server::openai::answer("answered after the container was killed", None),
    ]);
    setup(&env, "oxydra-runtime:local");
    let ws = env.alice();
    std::fs::create_dir_all(ws.join("vault")).unwrap();
    std::fs::write(ws.join("vault/secret.txt"), "vault ✓").unwrap();
    let mut runner = env.start(&[]);
    let url = runner.url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let tok = token(&ws);
    assert_eq!(
        turn(&url, &tok, "write a file"),
        "answered from the container"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("shared/from-the-container.txt")).unwrap(),
        "written inside ✓",
        "the container wrote the user's shared directory"
    );

    // What the engine holds the container to, and what the runtime found inside.
    let s = env.ready(None);
    assert_eq!(s["tier"], "container", "{s}");
    assert_eq!(s["health"], "ok", "{s}");
    let applied = s["applied"].to_string();
    for want in [
        "network: none",
        "capabilities: all dropped",
        "root filesystem read-only",
        "no-new-privileges",
        "memory limit 512 MiB",
        "pids limit 256",
        "CPU limit 1.5",
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
    let name = container_name(&s);
    let (ok, inspect) = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        &name,
    ]);
    assert!(ok, "{inspect}");
    assert_eq!(
        inspect.trim(),
        format!("none true {} 536870912 256", expected_user()),
        "the engine's own view"
    );
    assert!(
        !std::fs::read_to_string(ws.join("vault/secret.txt"))
            .unwrap()
            .is_empty(),
        "the vault is untouched"
    );

    // Killed from outside: the runner starts another container.
    let (ok, out) = docker(&["kill", &name]);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(90);
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
            .contains("137"),
        "{again}"
    );
    assert_eq!(
        turn(&url, &tok, "still there?"),
        "answered after the container was killed"
    );
    let (_, logs, _) = env.ctl(&["logs", "--tail", "200"]);
    assert!(logs.contains("runtime started in container"), "{logs}");

    // `stop` stops the runner and removes the container.
    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = runner.child.0.wait().unwrap();
    assert!(status.success(), "{}", runner.err.lock().unwrap());
    let (exists, _) = docker(&["inspect", &name]);
    assert!(!exists, "the container is removed");
}

/// The user the container runs as: the runner's own, or 65532 when the runner is root.
fn expected_user() -> String {
    let meta = std::fs::metadata("/proc/self").unwrap();
    use std::os::unix::fs::MetadataExt;
    if meta.uid() == 0 {
        "65532:65532".into()
    } else {
        format!("{}:{}", meta.uid(), meta.gid())
    }
}

#[test]
fn a_missing_image_is_refused_saying_how_to_build_it() {
    engine();
    let env = Env::new(vec![]);
    setup(&env, "oxydra-runtime:not-built");
    let mut runner = env.start(&[]);
    let status = runner.child.0.wait().unwrap();
    assert!(!status.success());
    let err = runner.err.lock().unwrap().clone();
    assert!(
        err.contains("oxydra-runtime:not-built") && err.contains("build-guest-images.sh"),
        "{err}"
    );
}

/// The text of the tool result with `id` in the last request the model got.
fn tool_result(env: &Env, id: &str) -> String {
    let reqs = env.server.requests();
    for r in reqs.iter().rev() {
        let body = r.json();
        if let Some(msgs) = body["messages"].as_array() {
            for m in msgs {
                if m["role"] == "tool" && m["tool_call_id"] == id {
                    return m["content"].as_str().unwrap_or_default().to_string();
                }
            }
        }
    }
    panic!("no result of tool call {id} in {} requests", reqs.len())
}

#[test]
fn shell_exec_runs_in_a_sidecar_without_the_vault_and_within_the_limits() {
    engine();
    let call = |id: &str, command: &str| {
        (
            id.to_string(),
            json!({"command": command, "timeout_secs": 20}),
        )
    };
    let round = |calls: Vec<(String, serde_json::Value)>| {
        let calls: Vec<(&str, &str, serde_json::Value)> = calls
            .iter()
            .map(|(id, args)| (id.as_str(), "shell_exec", args.clone()))
            .collect();
        server::openai::tool_calls(&calls, None)
    };
    let env = Env::new(vec![
        round(vec![
            call(
                "write",
                "echo from the shell > /shared/shell.txt && cat shell.txt",
            ),
            call("vault", "cat /vault/secret.txt; ls / | tr '\\n' ' '"),
            call("net", "cat /proc/net/dev; env"),
        ]),
        // A fork bomb: the sidecar's pids limit stops it; its process group is killed.
        round(vec![call(
            "bomb",
            "f() { f | f & }; f; sleep 2; echo bombed",
        )]),
        // A memory hog: killed at the sidecar's memory limit, not the daemon.
        round(vec![call(
            "hog",
            "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done",
        )]),
        round(vec![call(
            "after",
            "echo still here; cat /shared/shell.txt",
        )]),
        server::openai::answer("the shell ran", None),
        server::openai::answer("the runtime is fine", None),
    ]);
    setup(&env, "oxydra-runtime:local");
    let ws = env.alice();
    std::fs::create_dir_all(ws.join("vault")).unwrap();
    std::fs::write(ws.join("vault/secret.txt"), "vault secret ✓").unwrap();
    let mut runner = env.start(&[]);
    let url = runner.url();
    let tok = token(&ws);
    let s = env.ready(None);
    let shell = s["shell"].as_str().unwrap_or_default().to_string();
    assert!(
        shell.starts_with("up (container oxydra-shell-alice-"),
        "{s}"
    );
    assert_eq!(turn(&url, &tok, "use the shell"), "the shell ran");

    let write = tool_result(&env, "write");
    assert!(
        write.starts_with("exit code 0") && write.contains("from the shell"),
        "{write}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("shared/shell.txt")).unwrap(),
        "from the shell\n",
        "the sidecar writes the user's shared directory"
    );
    let vault = tool_result(&env, "vault");
    assert!(
        vault.contains("No such file") && !vault.contains("vault secret"),
        "the sidecar has no vault: {vault}"
    );
    assert!(!vault.contains("vault "), "no /vault in / : {vault}");
    let net = tool_result(&env, "net");
    assert!(
        net.contains("lo:") && !net.contains("eth0"),
        "only lo: {net}"
    );
    assert!(
        !net.contains(common::MODEL_KEY) && !net.contains("LOCAL_KEY"),
        "no keys in the sidecar's environment: {net}"
    );
    let bomb = tool_result(&env, "bomb");
    // The pids limit stops it: forks fail ("can't fork"). On a loaded machine those
    // errors can fill the output cap first, and the shell then dies of SIGPIPE when the
    // daemon stops reading; either way it ends long before its timeout, and the sidecar
    // answers the next command (below).
    assert!(
        !bomb.contains("timed out")
            && (bomb.contains("can't fork") || bomb.contains("killed by signal 13")),
        "the pids limit stopped the bomb: {bomb}"
    );
    let hog = tool_result(&env, "hog");
    assert!(hog.contains("killed by signal 9"), "{hog}");
    let after = tool_result(&env, "after");
    assert!(
        after.contains("still here") && after.contains("from the shell"),
        "the sidecar answers after both: {after}"
    );

    // The runtime was untouched: the same container, a next turn.
    assert_eq!(turn(&url, &tok, "and now?"), "the runtime is fine");
    let s2 = env.status();
    assert_eq!(s2["restarts"], 0, "{s2}");
    assert_eq!(s2["container"], s["container"], "{s2}");
    assert!(
        s2["shell"].as_str().unwrap_or_default().starts_with("up"),
        "{s2}"
    );
    // The engine's view of the sidecar: no network, no vault among its mounts.
    let shell_name = shell
        .trim_start_matches("up (container ")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let (ok, inspect) = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.PidsLimit}} {{range .Mounts}}{{.Destination}} {{end}}",
        &shell_name,
    ]);
    assert!(ok, "{inspect}");
    assert!(inspect.starts_with("none true 256 "), "{inspect}");
    assert!(!inspect.contains("vault"), "{inspect}");

    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(runner.child.0.wait().unwrap().success());
    for name in [container_name(&s), shell_name] {
        let (exists, _) = docker(&["inspect", &name]);
        assert!(!exists, "{name} is removed");
    }
}

#[test]
fn gvisor_runs_the_runtime_and_the_shell_sidecar_when_configured() {
    engine();
    let (ok, runtimes) = docker(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(
        ok && runtimes.contains("\"runsc\""),
        "this test needs gVisor as the engine's runtime runsc (./scripts/test.sh configures it when Debian's runsc is installed: apt-get install runsc): {runtimes}"
    );
    let env = Env::new(vec![
        server::openai::tool_calls(
            &[(
                "uname",
                "shell_exec",
                json!({"command": "dmesg 2>/dev/null | head -1; echo gvisor > /shared/g.txt"}),
            )],
            None,
        ),
        server::openai::answer("answered from gVisor", None),
    ]);
    setup(&env, "oxydra-runtime:local");
    let d = env.dir.path().join(".oxydra");
    let toml = std::fs::read_to_string(d.join("runner.toml")).unwrap();
    std::fs::write(
        d.join("runner.toml"),
        format!("container_runtime = \"runsc\"\n{toml}"),
    )
    .unwrap();
    let mut runner = env.start(&[]);
    let url = runner.url();
    let tok = token(&env.alice());
    assert_eq!(turn(&url, &tok, "where are you?"), "answered from gVisor");
    // gVisor's own kernel answers the sidecar's commands (its dmesg is the Sentry's).
    let out = tool_result(&env, "uname");
    assert!(out.starts_with("exit code 0"), "{out}");
    assert!(out.to_lowercase().contains("gvisor"), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.alice().join("shared/g.txt")).unwrap(),
        "gvisor\n"
    );
    let s = env.status();
    assert!(
        s["applied"].to_string().contains("OCI runtime runsc"),
        "{s}"
    );
    let name = container_name(&s);
    let (ok, inspect) = docker(&["inspect", "--format", "{{.HostConfig.Runtime}}", &name]);
    assert!(ok && inspect.trim() == "runsc", "{inspect}");
    let (code, out, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(runner.child.0.wait().unwrap().success());
    let (exists, _) = docker(&["inspect", &name]);
    assert!(!exists, "the container is removed");
}

#[test]
fn a_runtime_the_engine_does_not_offer_is_refused_naming_the_key() {
    engine();
    let env = Env::new(vec![]);
    setup(&env, "oxydra-runtime:local");
    let d = env.dir.path().join(".oxydra");
    let toml = std::fs::read_to_string(d.join("runner.toml")).unwrap();
    std::fs::write(
        d.join("runner.toml"),
        format!("container_runtime = \"no-such-runtime\"\n{toml}"),
    )
    .unwrap();
    let mut runner = env.start(&[]);
    let status = runner.child.0.wait().unwrap();
    assert!(!status.success());
    let err = runner.err.lock().unwrap().clone();
    assert!(
        err.contains("container_runtime") && err.contains("no-such-runtime"),
        "{err}"
    );
}

#[test]
fn a_stdio_mcp_server_runs_in_its_own_container_without_the_vault_or_a_network() {
    engine();
    // The model reads the agent's config and the vault by their host paths, which the
    // server's container does not mount, and /proc/net (its confinement refuses it).
    let paths: std::sync::Arc<std::sync::Mutex<(String, String)>> = Default::default();
    let p = paths.clone();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let model = server::Server::routes("127.0.0.1", move |_| {
        let (config, vault) = p.lock().unwrap().clone();
        match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => server::openai::tool_calls(
                &[
                    ("m1", "t__echo", json!({ "text": "from its container" })),
                    ("m2", "t__read_file", json!({ "path": config })),
                    ("m3", "t__read_file", json!({ "path": vault })),
                    ("m4", "t__read_file", json!({ "path": "/proc/net/dev" })),
                    ("m5", "t__env", json!({})),
                ],
                None,
            ),
            _ => server::openai::answer("done", None),
        }
    });
    let env = Env::with_server(
        model,
        &format!(
            "[mcp.servers.t]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
            common::mcp::mcp_python().display().to_string(),
            common::mcp::server_script().display().to_string(),
        ),
    );
    setup(&env, "oxydra-runtime:local");
    let ws = env.alice();
    std::fs::create_dir_all(ws.join("vault")).unwrap();
    let vault = ws.join("vault/secret.txt");
    std::fs::write(&vault, "vault ✓").unwrap();
    // A path outside the workspace (the scrubber maps workspace paths to /vault, …).
    let config = env.dir.path().join(".oxydra/agent.toml");
    *paths.lock().unwrap() = (config.display().to_string(), vault.display().to_string());
    let runner = env.start(&[]);
    let url = runner.url();
    let tok = token(&ws);
    assert_eq!(turn(&url, &tok, "use the MCP tools"), "done");
    let req = env.server.requests()[1].json();
    let results: Vec<String> = req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        results[0],
        "from its container",
        "{results:?} {:?}",
        env.ctl(&["logs"])
    );
    assert!(
        results[1].contains("FileNotFoundError") || results[1].contains("PermissionError"),
        "the config is not in the server's container: {results:?}"
    );
    assert!(
        results[2].starts_with("error:") && !results[2].contains("vault ✓"),
        "no vault: {results:?}"
    );
    // Landlock holds inside the container too: not even /proc/net is readable.
    assert!(results[3].contains("Permission denied"), "{results:?}");
    let vars: serde_json::Value = serde_json::from_str(&results[4]).unwrap();
    let names: Vec<&str> = vars
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, ["HOME", "LANG", "PATH", "TMPDIR"], "{vars}");
    // The engine's view: its own container, no network, a read-only root, no vault.
    let s = env.ready(None);
    let line = s["mcp"]["t"].as_str().unwrap_or_default().to_string();
    assert!(line.starts_with("up (container oxydra-mcp-alice-"), "{s}");
    let name = line["up (container ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let (ok, out) = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{range .Mounts}}{{.Destination}} {{end}}",
        &name,
    ]);
    assert!(ok, "{out}");
    assert!(out.starts_with("none true "), "{out}");
    assert!(!out.contains("/vault"), "{out}");
    let (code, _, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{err}");
    let mut runner = runner;
    assert!(runner.child.0.wait().unwrap().success());
    let (exists, _) = docker(&["inspect", &name]);
    assert!(!exists, "{name} is removed");
}
