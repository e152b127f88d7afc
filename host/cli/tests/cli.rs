//! `oxydra-host` end to end: the real binary, its bundled components, a temporary
//! workspace and config directories.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    let p = repo()
        .join("target/wasm32-wasip2/wasm-release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which builds the components first",
        p.display()
    );
    p
}

/// A clean home, config dirs and working directory per test.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
        let bundled = PathBuf::from(env!("CARGO_BIN_EXE_oxydra-host"))
            .parent()
            .unwrap()
            .join("components/manifest.json");
        assert!(
            bundled.exists(),
            "{} is missing: run scripts/test.sh (it runs scripts/build.sh)",
            bundled.display()
        );
        Sandbox { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxydra-host"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env("XDG_CACHE_HOME", self.path().join("home/.cache"))
            .current_dir(self.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tool_list_names_every_bundled_tool_with_profile_and_tier() {
    let s = Sandbox::new();
    let o = s.run(&["tool", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let expected = [
        ("file_read", "file-read-only", "read-only"),
        ("file_list", "file-read-only", "read-only"),
        ("file_search", "file-read-only", "read-only"),
        ("file_write", "file-read-write", "side-effecting"),
        ("file_edit", "file-read-write", "side-effecting"),
        ("file_delete", "file-read-write", "side-effecting"),
        (
            "vault_copyto",
            "vault-read-step+vault-write-step",
            "side-effecting",
        ),
        ("delegate_to_agent", "delegation", "side-effecting"),
        ("web_fetch", "web", "read-only"),
        ("web_search", "web", "read-only"),
        ("send_media", "chat-media", "side-effecting"),
        // The scheduler profile's floor: a tool that may change jobs is never run in
        // parallel, whatever it declares.
        ("schedule_create", "scheduler", "side-effecting"),
        ("schedule_search", "scheduler", "side-effecting"),
        ("schedule_edit", "scheduler", "side-effecting"),
        ("schedule_delete", "scheduler", "side-effecting"),
        ("schedule_runs", "scheduler", "side-effecting"),
        ("schedule_run_output", "scheduler", "side-effecting"),
        // Likewise the memory profile's: its tools can write the user's memory.
        ("memory_search", "memory", "side-effecting"),
        ("memory_save", "memory", "side-effecting"),
        ("memory_update", "memory", "side-effecting"),
        ("memory_delete", "memory", "side-effecting"),
        ("scratchpad_read", "memory", "side-effecting"),
        ("scratchpad_write", "memory", "side-effecting"),
        ("scratchpad_clear", "memory", "side-effecting"),
        // Registered for the agent only when the container tier's shell sidecar answers.
        ("shell_exec", "shell", "privileged"),
    ];
    for (name, profile, tier) in expected {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[1], cols[2]), (profile, tier), "{line}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&s.run(&["tool", "list", "--json"]).stdout).unwrap();
    // Every bundled tool is in the table above, and no other.
    assert_eq!(json.as_array().unwrap().len(), expected.len(), "{json:#}");
    assert_eq!(
        json.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "file_read")
            .unwrap()["parameters"]["required"],
        serde_json::json!(["path"])
    );
}

#[test]
fn tool_call_end_to_end_with_exit_codes() {
    let s = Sandbox::new();
    let ws = s.path().join("ws");
    let ws = ws.to_str().unwrap();
    let o = s.run(&[
        "tool",
        "call",
        "file_write",
        r#"{"path":"/shared/x/hello.txt","content":"hi there\n"}"#,
        "--workspace",
        ws,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "wrote 9 bytes to /shared/x/hello.txt\n");
    let o = s.run(&[
        "tool",
        "call",
        "file_read",
        r#"{"path":"/shared/x/hello.txt"}"#,
        "--workspace",
        ws,
    ]);
    assert_eq!(stdout(&o), "hi there\n");

    std::fs::write(s.path().join("ws/vault/pw.txt"), "hunter2").unwrap();
    let o = s.run(&[
        "tool",
        "call",
        "file_read",
        r#"{"path":"/vault/pw.txt"}"#,
        "--workspace",
        ws,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: denied: /vault/pw.txt (root /vault): file tools cannot read the vault; use vault_copyto to copy a vault file into /shared or /tmp\n"
    );
    let o = s.run(&[
        "tool",
        "call",
        "vault_copyto",
        r#"{"source_path":"/vault/pw.txt","destination_path":"/shared/pw.txt"}"#,
        "--workspace",
        ws,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(s.path().join("ws/shared/pw.txt")).unwrap(),
        "hunter2"
    );

    let o = s.run(&[
        "tool",
        "call",
        "file_read",
        r#"{"path":"/shared/../../etc/passwd"}"#,
        "--workspace",
        ws,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`..` is not allowed"), "{}", stderr(&o));

    let o = s.run(&["tool", "call", "no_such_tool", "{}", "--workspace", ws]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "error: no tool named `no_such_tool`; the tools are: delegate_to_agent, file_delete"
        ),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["tool", "call", "file_read", "{path:", "--workspace", ws]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("arguments are not valid JSON"));
}

#[test]
fn shell_exec_outside_the_container_tier_says_where_it_runs() {
    let s = Sandbox::new();
    let ws = s.path().join("ws");
    let o = s.run(&[
        "tool",
        "call",
        "shell_exec",
        r#"{"command":"echo hi > /shared/never.txt"}"#,
        "--workspace",
        ws.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("container tier"), "{}", stderr(&o));
    assert!(!ws.join("shared/never.txt").exists(), "nothing ran");
}

#[test]
fn default_workspace_comes_from_runner_toml() {
    let s = Sandbox::new();
    s.write(
        ".oxydra/runner.toml",
        "workspace_root = \"wsroot\"\n[users.bob]\n",
    );
    let o = s.run(&[
        "tool",
        "call",
        "file_write",
        r#"{"path":"/tmp/a.txt","content":"x"}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.path().join("wsroot/bob/tmp/a.txt").exists());
}

#[test]
fn a_component_beyond_its_grant_is_refused_with_exit_code_3() {
    let s = Sandbox::new();
    s.write(
        ".oxydra/agent.toml",
        &format!(
            "[components.tools.fx_ro_writes]\npath = {:?}\ngrant = \"file-read-only\"\n",
            fixture("fx_ro_writes")
        ),
    );
    let o = s.run(&[
        "tool",
        "call",
        "fx_ro_writes",
        r#"{"from":"a","to":"b"}"#,
        "--workspace",
        "ws",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: component `fx_ro_writes` imports `oxydra:fs/write@0.1.0`, which its grant `file-read-only` does not \
         include (`file-read-only` allows: oxydra:fs/read); grant a profile that includes it, or rebuild the component without it\n"
    );
    // `tool list` still lists the rest, and says what it refused.
    let o = s.run(&["tool", "list"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("file_read "));
    assert!(stderr(&o).contains("refused: component `fx_ro_writes`"));
    // Granting what it needs makes it load.
    s.write(
        ".oxydra/agent.toml",
        &format!(
            "[components.tools.fx_ro_writes]\npath = {:?}\ngrant = \"file-read-write\"\n",
            fixture("fx_ro_writes")
        ),
    );
    s.write("ws/shared/a", "payload");
    let o = s.run(&[
        "tool",
        "call",
        "fx_ro_writes",
        r#"{"from":"a","to":"b"}"#,
        "--workspace",
        "ws",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(s.path().join("ws/shared/b")).unwrap(),
        "payload"
    );
}

#[test]
fn a_runaway_tool_is_stopped_with_exit_code_4() {
    let s = Sandbox::new();
    s.write(
        ".oxydra/agent.toml",
        &format!(
            "[components.tools.fx_probe]\npath = {:?}\ngrant = \"file-read-only\"\nlimits = {{ deadline_ms = 250 }}\n",
            fixture("fx_probe")
        ),
    );
    let o = s.run(&[
        "tool",
        "call",
        "fx_probe",
        r#"{"mode":"spin"}"#,
        "--workspace",
        "ws",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        stderr(&o),
        "error: tool `fx_probe` ran past its deadline of 250 ms and was stopped; raise deadline_ms in [components.tools.fx_probe.limits] if it needs longer\n"
    );
}

#[test]
fn a_tampered_bundle_is_refused() {
    let s = Sandbox::new();
    let src = PathBuf::from(env!("CARGO_BIN_EXE_oxydra-host"))
        .parent()
        .unwrap()
        .join("components");
    let dst = s.path().join("bundle");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let target = dst.join("oxydra_tool_file_read.wasm");
    let mut bytes = std::fs::read(&target).unwrap();
    bytes.extend_from_slice(b"\0\0\0"); // a trailing change still breaks the hash
    std::fs::write(&target, bytes).unwrap();
    let o = s
        .cmd()
        .env("OXYDRA_COMPONENTS_DIR", &dst)
        .args([
            "tool",
            "call",
            "file_read",
            r#"{"path":"a"}"#,
            "--workspace",
            "ws",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("component `file_read`: its sha256 is"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("the file was changed after the build"));
}

#[test]
fn component_inspect_shows_imports_profile_and_version() {
    let s = Sandbox::new();
    let o = s.run(&[
        "component",
        "inspect",
        fixture("oxydra_tool_file_edit").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("wit version: 0.1.0"), "{out}");
    assert!(out.contains("profile:     file-read-write"), "{out}");
    assert!(out.contains("  oxydra:fs/write@0.1.0\n"), "{out}");
    assert!(
        out.contains("exports:\n  oxydra:tool/tool@0.1.0\n"),
        "{out}"
    );
    let o = s.run(&[
        "component",
        "inspect",
        fixture("fx_future_wit").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("wit version: 0.9.0"));
    assert!(stderr(&o).contains("this host supports oxydra WIT 0.1.x"));
}

#[test]
fn config_validate_accepts_the_examples() {
    let s = Sandbox::new();
    for f in ["agent.toml", "runner.toml", "users/alice.toml"] {
        s.write(
            &format!(".oxydra/{f}"),
            &std::fs::read_to_string(repo().join("config").join(f)).unwrap(),
        );
    }
    let o = s.run(&["config", "validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("user files:         .oxydra/users/alice.toml"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn config_errors_name_the_file_the_key_and_the_line() {
    let s = Sandbox::new();
    s.write(
        ".oxydra/agent.toml",
        "[selection]\nprovider = \"openai\"\nmodle = \"gpt-4o\"\n",
    );
    let o = s.run(&["config", "validate"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with(
            "error: .oxydra/agent.toml: key `selection.modle`: TOML parse error at line 3, column 1"
        ),
        "{err}"
    );
    assert!(
        err.contains("unknown field `modle`, expected `provider` or `model`"),
        "{err}"
    );

    s.write(".oxydra/agent.toml", "");
    s.write(
        "home/.config/oxydra/agent.toml",
        "[runtime]\nmax_turns = \"many\"\n",
    );
    let err = stderr(&s.run(&["config", "validate"]));
    assert!(
        err.contains("home/.config/oxydra/agent.toml: key `runtime.max_turns`"),
        "{err}"
    );

    std::fs::remove_file(s.path().join("home/.config/oxydra/agent.toml")).unwrap();
    let o = s
        .cmd()
        .env("OXYDRA__RUNTIME__MAX_TURNS", "lots")
        .args(["config", "validate"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&o),
        "error: environment variable OXYDRA__RUNTIME__MAX_TURNS: key `runtime.max_turns`: invalid type: string \"lots\", expected u32\n"
    );

    s.write(
        ".oxydra/users/alice.toml",
        "[channels.telegram]\nenabled = true\nbot_token_env = \"T\"\n",
    );
    s.write(".oxydra/runner.toml", "[users.alice]\n");
    let err = stderr(&s.run(&["config", "validate"]));
    assert!(
        err.contains("users/alice.toml: key `channels.telegram.senders`: add at least one"),
        "{err}"
    );
    for (line, key, says) in [
        (
            "edit_interval_ms = 10",
            "edit_interval_ms",
            "use 300 to 60000 ms",
        ),
        (
            "polling_timeout_secs = 0",
            "polling_timeout_secs",
            "use 1 to 300 seconds",
        ),
        (
            "max_file_bytes = 30000000",
            "max_file_bytes",
            "at most 20 MB",
        ),
        (
            "streaming = \"sometimes\"",
            "streaming",
            "unknown variant `sometimes`",
        ),
    ] {
        s.write(
            ".oxydra/users/alice.toml",
            &format!(
                "[channels.telegram]\nenabled = true\nbot_token_env = \"T\"\n{line}\n\
                 [[channels.telegram.senders]]\nplatform_ids = [\"1\"]\n"
            ),
        );
        let err = stderr(&s.run(&["config", "validate"]));
        assert!(
            err.contains(&format!("key `channels.telegram.{key}`")) && err.contains(says),
            "{line}: {err}"
        );
    }
}

#[test]
fn values_that_would_disable_a_limit_and_keys_nothing_reads_are_refused_where_they_were_set() {
    let s = Sandbox::new();
    let cases: &[(&str, &str)] = &[
        (
            "[selection]\nprovider = \"openai\"\n\n[runtime]\nmax_turns = 5\nmax_cost = nan\n",
            "error: .oxydra/agent.toml:6: key `runtime.max_cost`: must be a positive amount of money (e.g. 0.50), got NaN",
        ),
        (
            "[runtime]\nmax_turns = 0\n",
            "error: .oxydra/agent.toml:2: key `runtime.max_turns`: must be at least 1",
        ),
        (
            "[memory.retrieval]\ntop_k = 0\n",
            "error: .oxydra/agent.toml:2: key `memory.retrieval.top_k`: 0: use 1–20",
        ),
        (
            "[providers.registry.openai]\nprovider_type = \"openai\"\nreasoning = true\n",
            "error: .oxydra/agent.toml:3: key `providers.registry.openai.reasoning`: not supported yet",
        ),
        (
            "[selection]\nprovider = \"local\"\n[providers.registry.local]\nbase_url = \"ftp://x\"\n",
            "error: .oxydra/agent.toml:4: key `providers.registry.local.base_url`: `ftp://x` is not an http(s) URL",
        ),
        (
            "[tools.web]\nallow = [\"wiki.corp\", \"10.0.0.0/33\"]\n",
            "error: .oxydra/agent.toml:2: key `tools.web.allow`: entry 2: `10.0.0.0/33`: the prefix length must be 0..=32",
        ),
        (
            "[tools.web]\nresolver = \"8.8.8.8:53\"\n",
            "error: .oxydra/agent.toml:2: key `tools.web.resolver`: `8.8.8.8:53`: this is a test hook",
        ),
        (
            "[tools.web]\nmax_redirects = 9\n",
            "error: .oxydra/agent.toml:2: key `tools.web.max_redirects`: must be 0..=5",
        ),
        (
            "[tools.web_search]\nproviders = [\"duckduckgo\"]\n[tools.web_search.brave]\napi_key_env = \"K\"\n",
            "error: .oxydra/agent.toml:3: key `tools.web_search.brave`: is set but `brave` is not in tools.web_search.providers",
        ),
        (
            "[tools.web_search]\nproviders = [\"searxng\"]\n",
            "error: .oxydra/agent.toml:2: key `tools.web_search.providers`: lists searxng, which is self-hosted",
        ),
        (
            "[tools.web]\nproxy = \"http://p\"\n",
            "error: .oxydra/agent.toml: key `tools.web.proxy`: TOML parse error at line 2",
        ),
    ];
    for (text, want) in cases {
        s.write(".oxydra/agent.toml", text);
        let o = s.run(&["config", "validate"]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).starts_with(want), "{text}: {}", stderr(&o));
    }
    s.write(".oxydra/agent.toml", "");
    let o = s.run(&["--set", "runtime.max_cost=inf", "config", "validate"]);
    assert!(
        stderr(&o).starts_with(
            "error: --set runtime.max_cost=inf: key `runtime.max_cost`: must be a positive amount"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_layers_apply_in_order() {
    let s = Sandbox::new();
    s.write(
        "home/.config/oxydra/agent.toml",
        "[catalog]\nskip_catalog_validation = true\n[selection]\nprovider = \"anthropic\"\nmodel = \"from-user-dir\"\n",
    );
    let model = |o: Output| {
        stdout(&o)
            .lines()
            .find(|l| l.starts_with("selection:"))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        model(s.run(&["config", "validate"])),
        "selection:          anthropic / from-user-dir"
    );
    s.write(
        ".oxydra/agent.toml",
        "[selection]\nmodel = \"from-workspace\"\n",
    );
    assert_eq!(
        model(s.run(&["config", "validate"])),
        "selection:          anthropic / from-workspace"
    );
    let o = s
        .cmd()
        .env("OXYDRA__SELECTION__MODEL", "from-env")
        .args(["config", "validate"])
        .output()
        .unwrap();
    assert_eq!(model(o), "selection:          anthropic / from-env");
    let o = s
        .cmd()
        .env("OXYDRA__SELECTION__MODEL", "from-env")
        .args(["config", "validate", "--set", "selection.model=from-flag"])
        .output()
        .unwrap();
    assert_eq!(model(o), "selection:          anthropic / from-flag");
}

#[test]
fn the_guide_example_works_as_written() {
    let s = Sandbox::new();
    s.write(
        ".oxydra/agent.toml",
        &format!(
            "[components.tools.word_count]\npath = {:?}\ngrant = \"file-read-only\"\nlimits = {{ deadline_ms = 2000 }}\n",
            fixture("word_count")
        ),
    );
    s.write("ws/shared/notes.md", "one two three\nfour five\n");
    let o = s.run(&[
        "tool",
        "call",
        "word_count",
        r#"{"path": "/shared/notes.md"}"#,
        "--workspace",
        "ws",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "5 words\n");
    let o = s.run(&[
        "tool",
        "call",
        "word_count",
        r#"{"path": "notes.md", "unit": "lines"}"#,
        "--workspace",
        "ws",
    ]);
    assert_eq!(stdout(&o), "2 lines\n");
    let o = s.run(&[
        "component",
        "inspect",
        fixture("word_count").to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("profile:     file-read-only"),
        "{}",
        stdout(&o)
    );
}

#[path = "../../runtime/tests/common/server.rs"]
mod server;

fn openai_stream(text: &[&str]) -> server::Reply {
    let mut pieces: Vec<String> = text
        .iter()
        .map(|t| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n", serde_json::to_string(t).unwrap()))
        .collect();
    pieces.push(
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".into(),
    );
    pieces.push(
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":2000}}\n\n"
            .into(),
    );
    pieces.push("data: [DONE]\n\n".into());
    server::Reply::sse(&pieces.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn llm_complete_streams_through_a_provider_component() {
    let s = Sandbox::new();
    let srv = server::Server::start(vec![
        openai_stream(&["Hello", " wörld"]),
        openai_stream(&["local"]),
    ]);
    s.write(
        ".oxydra/agent.toml",
        &format!(
            "[selection]\nprovider = \"mine\"\nmodel = \"gpt-4o-mini\"\n\
             [providers.registry.mine]\nprovider_type = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"MY_KEY\"\n",
            srv.url
        ),
    );
    let o = s
        .cmd()
        .env("MY_KEY", "sk-cli-test-1")
        .args(["llm", "complete", "--system", "terse", "hi"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello wörld\n");
    let err = stderr(&o);
    // gpt-4o-mini: 1000 x $0.15/M + 2000 x $0.60/M = $0.00135
    assert!(
        err.contains("[usage] input=1000 output=2000 cached=0 reasoning=0 cost=$0.001350"),
        "{err}"
    );
    assert!(err.contains("[stop] EndTurn"), "{err}");
    let req = &srv.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer sk-cli-test-1"));
    let body = req.json();
    assert_eq!(body["max_completion_tokens"], 16384, "from the catalog");
    assert_eq!(body["messages"][0]["content"], "terse");

    // A loopback server needs no key: the request goes out without one.
    let o = s.run(&["llm", "complete", "hi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "local\n");
    assert!(srv.requests()[1].header("authorization").is_none());
}

#[test]
fn llm_complete_errors_say_what_to_do() {
    let s = Sandbox::new();
    // A provider chosen explicitly: its missing key is an error (no local fallback).
    s.write(".oxydra/agent.toml", "[selection]\nprovider = \"openai\"\n");
    let o = s
        .cmd()
        .env_remove("OPENAI_API_KEY")
        .args(["llm", "complete", "hi"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no API key for provider `openai`: set OPENAI_API_KEY (named by api_key_env in [providers.registry.openai]), \
         or point base_url at a local OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1), which needs no key\n"
    );
    let o = s.run(&["llm", "complete", "--model", "gpt-9", "hi"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown model `gpt-9` for catalog provider `openai`: `oxydra-host catalog show openai` lists"));
    s.write(".oxydra/agent.toml", "[selection]\nmodel = \"gpt-9\"\n");
    let o = s.run(&["config", "validate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("key `selection.model`: unknown model `gpt-9`"),
        "{}",
        stderr(&o)
    );
    s.write(
        ".oxydra/agent.toml",
        "[selection]\nmodel = \"gpt-9\"\n[catalog]\nskip_catalog_validation = true\n",
    );
    assert!(s.run(&["config", "validate"]).status.success());
    let o = s.run(&["catalog", "show", "google"]);
    assert!(stdout(&o).contains("gemini-2.5-pro"), "{}", stdout(&o));
}

#[test]
fn web_fetch_through_the_cli_obeys_the_configured_policy() {
    use std::io::{Read, Write};
    // A one-page server on loopback, allowed by config; the default policy refuses it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<html><body><p>Hello from <a href=\"/next\">loopback</a></p></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let s = Sandbox::new();
    let ws = s.path().join("ws");
    let ws = ws.to_str().unwrap();
    let url = format!(r#"{{"url":"http://127.0.0.1:{port}/"}}"#);
    let o = s.run(&["tool", "call", "web_fetch", &url, "--workspace", ws]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("egress denied") && err.contains("127.0.0.0/8"),
        "{err}"
    );

    s.write(
        ".oxydra/agent.toml",
        &format!("[tools.web]\nallow = [\"127.0.0.1:{port}\"]\n"),
    );
    let o = s.run(&["tool", "call", "web_fetch", &url, "--workspace", ws]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Hello from") && out.contains("/next"), "{out}");
}
