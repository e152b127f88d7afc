//! The bundled tools, each through the whole host path (its profile's linker, limits,
//! path policy), against a real workspace.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::{host, spec, two_step};
use oxydra_runtime::{CallError, ComponentHost, LoadedTool, Profile, Tier, Workspace};
use std::sync::Arc;

struct Env {
    host: ComponentHost,
    dir: tempfile::TempDir,
    ws: Arc<Workspace>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ws = Arc::new(Workspace::open(dir.path()).unwrap());
        Env {
            host: host(),
            dir,
            ws,
        }
    }
    fn tool(&self, name: &str, profile: Profile) -> LoadedTool {
        let krate = format!("oxydra-tool-{}", name.replace('_', "-"));
        self.host.load(&spec(name, &krate, profile)).unwrap()
    }
    fn call(&self, tool: &LoadedTool, args: serde_json::Value) -> Result<String, String> {
        self.host
            .call(tool, &args.to_string(), &self.ws)
            .map_err(|e| e.to_string())
    }
    fn host_file(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
}

#[test]
fn write_read_edit_search_list_delete() {
    let e = Env::new();
    let write = e.tool("file_write", Profile::FileReadWrite);
    let read = e.tool("file_read", Profile::FileReadOnly);
    let edit = e.tool("file_edit", Profile::FileReadWrite);
    let search = e.tool("file_search", Profile::FileReadOnly);
    let list = e.tool("file_list", Profile::FileReadOnly);
    let delete = e.tool("file_delete", Profile::FileReadWrite);
    assert_eq!(write.descriptor.tier, Tier::SideEffecting);
    assert_eq!(read.descriptor.tier, Tier::ReadOnly);

    let text = "alpha\nbeta gamma\ngamma\n";
    assert_eq!(
        e.call(
            &write,
            serde_json::json!({"path": "/shared/notes/a.md", "content": text})
        )
        .unwrap(),
        "wrote 23 bytes to /shared/notes/a.md"
    );
    assert_eq!(
        std::fs::read_to_string(e.host_file("shared/notes/a.md")).unwrap(),
        text
    );
    assert_eq!(
        e.call(&read, serde_json::json!({"path": "/shared/notes/a.md"}))
            .unwrap(),
        text
    );
    assert_eq!(
        e.call(
            &read,
            serde_json::json!({"path": "notes/a.md", "offset": 2, "limit": 1})
        )
        .unwrap(),
        "beta gamma"
    );

    // old_text must match exactly once
    let err = e
        .call(
            &edit,
            serde_json::json!({"path": "/shared/notes/a.md", "old_text": "gamma", "new_text": "G"}),
        )
        .unwrap_err();
    assert!(err.contains("occurs 2 times"), "{err}");
    let err = e
        .call(
            &edit,
            serde_json::json!({"path": "/shared/notes/a.md", "old_text": "delta", "new_text": "G"}),
        )
        .unwrap_err();
    assert!(err.contains("was not found"), "{err}");
    assert_eq!(
        std::fs::read_to_string(e.host_file("shared/notes/a.md")).unwrap(),
        text,
        "failed edits change nothing"
    );
    e.call(&edit, serde_json::json!({"path": "/shared/notes/a.md", "old_text": "beta gamma", "new_text": "BETA"})).unwrap();
    assert_eq!(
        std::fs::read_to_string(e.host_file("shared/notes/a.md")).unwrap(),
        "alpha\nBETA\ngamma\n"
    );

    let found = e
        .call(
            &search,
            serde_json::json!({"path": "/shared", "query": "gamma"}),
        )
        .unwrap();
    assert_eq!(found, "/shared/notes/a.md:3: gamma\n");
    let listing = e
        .call(&list, serde_json::json!({"path": "/shared/notes"}))
        .unwrap();
    assert_eq!(listing, "a.md (17 bytes)\n");
    assert_eq!(
        e.call(&list, serde_json::json!({})).unwrap(),
        "notes/\n",
        "path defaults to /shared"
    );

    e.call(&delete, serde_json::json!({"path": "/shared/notes"}))
        .unwrap();
    assert!(!e.host_file("shared/notes").exists());
    let err = e
        .call(&read, serde_json::json!({"path": "/shared/notes/a.md"}))
        .unwrap_err();
    assert_eq!(err, "not found: /shared/notes/a.md");
}

#[test]
fn no_file_tool_reads_or_lists_the_vault() {
    let e = Env::new();
    std::fs::write(e.host_file("vault/token.txt"), "sk-live-secret").unwrap();
    for (name, profile, args) in [
        (
            "file_read",
            Profile::FileReadOnly,
            serde_json::json!({"path": "/vault/token.txt"}),
        ),
        (
            "file_list",
            Profile::FileReadOnly,
            serde_json::json!({"path": "/vault"}),
        ),
        (
            "file_search",
            Profile::FileReadOnly,
            serde_json::json!({"path": "/vault", "query": "sk"}),
        ),
        (
            "file_edit",
            Profile::FileReadWrite,
            serde_json::json!({"path": "/vault/token.txt", "old_text": "sk", "new_text": "x"}),
        ),
        (
            "file_write",
            Profile::FileReadWrite,
            serde_json::json!({"path": "/vault/token.txt", "content": "x"}),
        ),
        (
            "file_delete",
            Profile::FileReadWrite,
            serde_json::json!({"path": "/vault/token.txt"}),
        ),
    ] {
        let t = e.tool(name, profile);
        let err = e.call(&t, args).unwrap_err();
        assert!(err.starts_with("denied: /vault"), "{name}: {err}");
        assert!(!err.contains("sk-live-secret"), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(e.host_file("vault/token.txt")).unwrap(),
        "sk-live-secret"
    );
}

#[test]
fn vault_copyto_runs_two_separate_steps() {
    let e = Env::new();
    std::fs::write(e.host_file("vault/cert.pem"), "-----BEGIN CERT-----\n").unwrap();
    let tool = e
        .host
        .load(&two_step(
            "vault_copyto",
            "oxydra-tool-vault-copyto-read",
            "oxydra-tool-vault-copyto-write",
        ))
        .unwrap();
    assert_eq!(
        tool.descriptor.profiles,
        vec![Profile::VaultReadStep, Profile::VaultWriteStep]
    );
    let out = e.call(&tool, serde_json::json!({"source_path": "/vault/cert.pem", "destination_path": "/tmp/cert.pem"})).unwrap();
    assert_eq!(out, "copied /vault/cert.pem to /tmp/cert.pem (21 bytes)");
    assert_eq!(
        std::fs::read_to_string(e.host_file("tmp/cert.pem")).unwrap(),
        "-----BEGIN CERT-----\n"
    );

    // step 1 reads only /vault; step 2 writes only /shared and /tmp
    let err = e
        .call(
            &tool,
            serde_json::json!({"source_path": "/shared/x", "destination_path": "/tmp/y"}),
        )
        .unwrap_err();
    assert!(err.contains("the vault step reads only /vault"), "{err}");
    let err = e.call(&tool, serde_json::json!({"source_path": "/vault/cert.pem", "destination_path": "/vault/copy.pem"})).unwrap_err();
    assert!(err.starts_with("denied: /vault/copy.pem"), "{err}");
    let err = e
        .call(
            &tool,
            serde_json::json!({"source_path": "/vault/missing", "destination_path": "/tmp/y"}),
        )
        .unwrap_err();
    assert_eq!(err, "not found: /vault/missing");
}

#[test]
fn size_caps_are_in_the_description_and_enforced() {
    let e = Env::new();
    let read = e.tool("file_read", Profile::FileReadOnly);
    assert!(read.descriptor.description.contains("1 MiB"));
    std::fs::write(e.host_file("shared/big.txt"), vec![b'a'; (1 << 20) + 1]).unwrap();
    let err = e
        .call(&read, serde_json::json!({"path": "/shared/big.txt"}))
        .unwrap_err();
    assert_eq!(
        err,
        "too large: /shared/big.txt is 1048577 bytes; the limit is 1048576 bytes; read it in windows with offset and limit (lines)"
    );
}

#[test]
fn a_window_of_a_file_far_larger_than_the_cap_reads() {
    let e = Env::new();
    let read = e.tool("file_read", Profile::FileReadOnly);
    // ~5 MB, five times what file_read returns whole, ending without a newline.
    let text: String = (1..=400_000)
        .map(|n| format!("line {n}\n"))
        .collect::<String>()
        + "tail";
    std::fs::write(e.host_file("shared/log.txt"), &text).unwrap();
    let window = |offset: u64, limit: u64| {
        e.call(
            &read,
            serde_json::json!({"path": "/shared/log.txt", "offset": offset, "limit": limit}),
        )
    };
    assert_eq!(window(1, 2).unwrap(), "line 1\nline 2");
    // Past the first chunk the host hands out, and across its boundary.
    assert_eq!(
        window(300_000, 3).unwrap(),
        "line 300000\nline 300001\nline 300002"
    );
    assert_eq!(
        window(399_999, 5).unwrap(),
        "line 399999\nline 400000\ntail"
    );
    let err = window(400_002, 1).unwrap_err();
    assert!(
        err.contains("past the end of /shared/log.txt, which has 400001 lines"),
        "{err}"
    );
    // What is returned is still capped.
    let err = window(1, 400_000).unwrap_err();
    assert!(
        err.starts_with("too large: lines 1.. of /shared/log.txt are more than"),
        "{err}"
    );
}

#[test]
fn a_denial_is_a_tool_error_not_a_crash() {
    let e = Env::new();
    let read = e.tool("file_read", Profile::FileReadOnly);
    let r = e.host.call(&read, r#"{"path":"/etc/passwd"}"#, &e.ws);
    match r {
        Err(CallError::Tool(f)) => {
            assert_eq!(f.kind, "denied");
            assert!(f.message.contains("outside the workspace"), "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
}

struct Echo;
impl oxydra_runtime::delegation::Delegator for Echo {
    fn delegate(
        &self,
        r: oxydra_runtime::delegation::DelegationRequest,
    ) -> Result<oxydra_runtime::delegation::DelegationOutcome, String> {
        Ok(oxydra_runtime::delegation::DelegationOutcome {
            answer: format!("{} did: {}", r.agent, r.goal),
            turns: 2,
            cost: None,
            input_tokens: 10,
            output_tokens: 5,
            session: "s-1".into(),
        })
    }
}

#[test]
fn a_delegation_tool_reaches_the_delegator_of_its_call_and_only_then() {
    let e = Env::new();
    let tool = e.tool("delegate_to_agent", Profile::Delegation);
    assert_eq!(tool.descriptor.tier, Tier::SideEffecting);
    let args = serde_json::json!({"agent_name": "scout", "goal": "look around"}).to_string();
    let out = e
        .host
        .call_with(
            &tool,
            &args,
            &e.ws,
            &oxydra_runtime::CallContext {
                delegator: Some(Arc::new(Echo)),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        out.starts_with("scout did: look around\n\n[scout used 2 model call(s)"),
        "{out}"
    );
    let without = e.host.call(&tool, &args, &e.ws).unwrap_err().to_string();
    assert!(
        without.contains("delegation is not available here"),
        "{without}"
    );
}
