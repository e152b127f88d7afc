//! `oxydra:memory/store` as a capability: the seven `memory`-profile tools reach the
//! memory of their call and only that (none: "not available here"); the host's refusals
//! reach the model as the right error kind; no other grant may import the interface.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::{host, spec, wasm};
use oxydra_runtime::memory::{Hit, Memory, Note, Query, Source};
use oxydra_runtime::{CallContext, ComponentHost, LoadedTool, Profile, Tier, Workspace};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// (tool, crate, tier) of every memory tool: the profile's floor makes every one
/// side-effecting.
const TOOLS: [(&str, &str, Tier); 7] = [
    (
        "memory_search",
        "oxydra-tool-memory-search",
        Tier::SideEffecting,
    ),
    (
        "memory_save",
        "oxydra-tool-memory-save",
        Tier::SideEffecting,
    ),
    (
        "memory_update",
        "oxydra-tool-memory-update",
        Tier::SideEffecting,
    ),
    (
        "memory_delete",
        "oxydra-tool-memory-delete",
        Tier::SideEffecting,
    ),
    (
        "scratchpad_read",
        "oxydra-tool-scratchpad-read",
        Tier::SideEffecting,
    ),
    (
        "scratchpad_write",
        "oxydra-tool-scratchpad-write",
        Tier::SideEffecting,
    ),
    (
        "scratchpad_clear",
        "oxydra-tool-scratchpad-clear",
        Tier::SideEffecting,
    ),
];

/// Records what the tools asked for; one note, `note-1`, and a scratchpad.
#[derive(Default)]
struct Fake {
    asked: Mutex<Vec<String>>,
    scratchpad: Mutex<Vec<String>>,
}

impl Fake {
    fn ask(&self, what: String) {
        self.asked.lock().unwrap().push(what);
    }
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn note(id: &str, content: &str, tags: Vec<String>) -> Note {
    Note {
        id: id.into(),
        content: content.into(),
        tags,
        created: "2030-01-01T00:00:00Z".into(),
        updated: "2030-01-02T00:00:00Z".into(),
    }
}

impl Memory for Fake {
    fn search(&self, q: Query) -> Result<Vec<Hit>, String> {
        self.ask(format!(
            "search {:?} {} {} {:?}",
            q.text, q.top_k, q.include_conversation, q.tags
        ));
        Ok(vec![
            Hit {
                id: "note-1".into(),
                source: Source::Note,
                content: "likes oat milk".into(),
                tags: vec!["pref".into()],
                score: 0.123_456_789,
                session: None,
                when: "2030-01-02T00:00:00Z".into(),
            },
            Hit {
                id: "s-9:3".into(),
                source: Source::Conversation,
                content: "user: coffee?\nassistant: with oat milk".into(),
                tags: vec![],
                score: 0.05,
                session: Some("s-9".into()),
                when: "2029-12-31T00:00:00Z".into(),
            },
        ])
    }
    fn save(&self, content: String, tags: Vec<String>) -> Result<Note, String> {
        self.ask(format!("save {content:?} {tags:?}"));
        if tags.iter().any(|t| t.contains(' ')) {
            return Err("tags: `a b` has a space; use letters, digits, -, _, . or :".into());
        }
        Ok(note("note-1", &content, tags))
    }
    fn update(
        &self,
        id: String,
        content: String,
        tags: Option<Vec<String>>,
    ) -> Result<Note, String> {
        self.ask(format!("update {id} {content:?} {tags:?}"));
        if id != "note-1" {
            return Err(format!("no note `{id}`: search for it with memory_search"));
        }
        Ok(note(&id, &content, tags.unwrap_or(vec!["kept".into()])))
    }
    fn delete(&self, id: String) -> Result<(), String> {
        self.ask(format!("delete {id}"));
        if id != "note-1" {
            return Err(format!("no note `{id}`"));
        }
        Ok(())
    }
    fn scratchpad_read(&self) -> Result<Vec<String>, String> {
        self.ask("scratchpad_read".into());
        Ok(self.scratchpad.lock().unwrap().clone())
    }
    fn scratchpad_write(&self, items: Vec<String>) -> Result<(), String> {
        self.ask(format!("scratchpad_write {}", items.len()));
        *self.scratchpad.lock().unwrap() = items;
        Ok(())
    }
    fn scratchpad_clear(&self) -> Result<(), String> {
        self.ask("scratchpad_clear".into());
        self.scratchpad.lock().unwrap().clear();
        Ok(())
    }
}

struct Env {
    host: ComponentHost,
    ws: Arc<Workspace>,
    _dir: tempfile::TempDir,
    ctx: CallContext,
    fake: Arc<Fake>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ws = Arc::new(Workspace::open(dir.path()).unwrap());
        let fake = Arc::new(Fake::default());
        Env {
            host: host(),
            ws,
            _dir: dir,
            ctx: CallContext {
                memory: Some(fake.clone()),
                ..Default::default()
            },
            fake,
        }
    }
    fn tool(&self, name: &str) -> LoadedTool {
        let (_, krate, _) = TOOLS.iter().find(|t| t.0 == name).unwrap();
        self.host.load(&spec(name, krate, Profile::Memory)).unwrap()
    }
    /// The tool's JSON answer, or its error as the model reads it.
    fn call(&self, name: &str, args: Value) -> Result<Value, String> {
        self.host
            .call_with(&self.tool(name), &args.to_string(), &self.ws, &self.ctx)
            .map(|out| serde_json::from_str(&out).unwrap())
            .map_err(|e| e.to_string())
    }
}

#[test]
fn memory_tools_derive_the_memory_profile_at_their_tiers() {
    let e = Env::new();
    for (name, krate, tier) in TOOLS {
        let (shape, _) = e.host.inspect(krate, &wasm(krate)).unwrap();
        assert_eq!(
            shape.derived_profile(),
            Some(Profile::Memory),
            "{krate}: {:?}",
            shape.imports
        );
        let t = e.tool(name);
        assert_eq!(t.descriptor.name, name);
        assert_eq!(t.descriptor.profiles, vec![Profile::Memory]);
        assert_eq!(t.descriptor.tier, tier, "{name}");
    }
    let search = e.tool("memory_search").descriptor.parameters;
    assert_eq!(search["required"], json!(["query"]));
    assert_eq!(search["properties"]["top_k"]["default"], 5);
    assert_eq!(search["properties"]["tags"]["items"]["maxLength"], 40);
}

#[test]
fn memory_tools_reach_the_memory_of_their_call() {
    let e = Env::new();
    let out = e
        .call(
            "memory_save",
            json!({"content": "likes oat milk", "tags": ["pref"]}),
        )
        .unwrap();
    assert_eq!(
        out,
        json!({"id": "note-1", "saved": true, "tags": ["pref"]})
    );

    let out = e
        .call(
            "memory_search",
            json!({"query": "coffee", "include_conversation": true}),
        )
        .unwrap();
    assert_eq!(out["count"], 2);
    // Compact: no empty tags, no session for a note, the score to 4 decimals.
    assert_eq!(
        out["results"][0],
        json!({"id": "note-1", "source": "note", "content": "likes oat milk",
               "tags": ["pref"], "score": 0.1235, "when": "2030-01-02T00:00:00Z"})
    );
    assert_eq!(out["results"][1]["source"], "conversation");
    assert_eq!(out["results"][1]["session"], "s-9");
    assert!(out["results"][1].get("tags").is_none(), "{out}");

    // Tags replace only when given; an empty list is given.
    let out = e
        .call(
            "memory_update",
            json!({"note_id": "note-1", "content": "likes soy milk"}),
        )
        .unwrap();
    assert_eq!(out["content"], "likes soy milk");
    assert_eq!(out["tags"], json!(["kept"]));
    e.call(
        "memory_update",
        json!({"note_id": "note-1", "content": "x", "tags": []}),
    )
    .unwrap();

    assert_eq!(
        e.call("memory_delete", json!({"note_id": " note-1 "}))
            .unwrap(),
        json!({"deleted": "note-1"})
    );

    assert_eq!(
        e.call("scratchpad_read", json!({})).unwrap(),
        json!({"items": [], "note": "the scratchpad is empty"})
    );
    assert_eq!(
        e.call("scratchpad_write", json!({"items": ["plan", "check"]}))
            .unwrap(),
        json!({"saved": true, "count": 2})
    );
    assert_eq!(
        e.call("scratchpad_read", json!({})).unwrap(),
        json!({"items": ["plan", "check"]})
    );
    assert_eq!(
        e.call("scratchpad_clear", json!({})).unwrap(),
        json!({"cleared": true})
    );
    assert_eq!(
        e.fake.asked(),
        [
            r#"save "likes oat milk" ["pref"]"#,
            r#"search "coffee" 5 true []"#,
            r#"update note-1 "likes soy milk" None"#,
            r#"update note-1 "x" Some([])"#,
            "delete note-1",
            "scratchpad_read",
            "scratchpad_write 2",
            "scratchpad_read",
            "scratchpad_clear",
        ]
    );
}

#[test]
fn refusals_reach_the_model_as_their_kind() {
    let e = Env::new();
    // The host's: an unknown note is not found; a field it refuses is invalid.
    let err = e
        .call("memory_delete", json!({"note_id": "note-404"}))
        .unwrap_err();
    assert_eq!(err, "not found: no note `note-404`");
    let err = e
        .call(
            "memory_update",
            json!({"note_id": "note-404", "content": "x"}),
        )
        .unwrap_err();
    assert!(err.starts_with("not found: no note `note-404`"), "{err}");
    let err = e
        .call("memory_save", json!({"content": "x", "tags": ["a b"]}))
        .unwrap_err();
    assert!(err.starts_with("invalid arguments: tags:"), "{err}");
    // The schema's, before the host is asked.
    let asked = e.fake.asked().len();
    for (name, args, problem) in [
        (
            "scratchpad_write",
            json!({"items": ["x".repeat(241)]}),
            "`items[0]` must have at most 240 characters",
        ),
        (
            "scratchpad_write",
            json!({"items": []}),
            "`items` must have at least 1 items",
        ),
        (
            "memory_save",
            json!({"content": "x", "tags": ["t".repeat(41)]}),
            "`tags[0]` must have at most 40 characters",
        ),
        (
            "memory_search",
            json!({"query": "x", "top_k": 21}),
            "`top_k` must be at most 20",
        ),
        (
            "memory_search",
            json!({"query": ""}),
            "`query` must have at least 1 characters",
        ),
    ] {
        let err = e.call(name, args).unwrap_err();
        assert!(
            err.starts_with("invalid arguments: ") && err.contains(problem),
            "{name}: {err}"
        );
    }
    assert_eq!(e.fake.asked().len(), asked, "the schema refused them first");
}

#[test]
fn without_memory_for_the_call_every_tool_says_it_is_not_available() {
    let e = Env::new();
    for (name, args) in [
        ("memory_search", json!({"query": "x"})),
        ("memory_save", json!({"content": "x"})),
        (
            "memory_update",
            json!({"note_id": "note-1", "content": "x"}),
        ),
        ("memory_delete", json!({"note_id": "note-1"})),
        ("scratchpad_read", json!({})),
        ("scratchpad_write", json!({"items": ["x"]})),
        ("scratchpad_clear", json!({})),
    ] {
        let err = e
            .host
            .call(&e.tool(name), &args.to_string(), &e.ws)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "denied: memory is not available here (memory is disabled in [memory], or this call has no user)",
            "{name}"
        );
    }
    assert!(e.fake.asked().is_empty());
}

#[test]
fn no_other_grant_may_import_the_memory_interface() {
    let h = host();
    for (name, krate, _) in TOOLS {
        for grant in [
            Profile::FileReadOnly,
            Profile::FileReadWrite,
            Profile::Delegation,
            Profile::Web,
            Profile::Scheduler,
            Profile::ChatMedia,
            Profile::Shell,
        ] {
            let e = h
                .load(&spec(name, krate, grant))
                .err()
                .unwrap_or_else(|| panic!("{name} loaded under {grant}"))
                .to_string();
            assert_eq!(
                e,
                format!(
                    "component `{name}` imports `oxydra:memory/store@0.1.0`, which its grant `{grant}` does not \
                     include (`{grant}` allows: {}); grant a profile that includes it, or rebuild the component \
                     without it",
                    grant
                        .capabilities()
                        .iter()
                        .map(|c| c.interface())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
}
