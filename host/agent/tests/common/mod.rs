//! A `Runtime` on the real bundled components (from `scripts/build.sh`) and the
//! `fx_handoff` fixture, with a scripted OpenAI-compatible (or Anthropic) server on
//! 127.0.0.1 playing the model. Nothing of the turn loop is mocked.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use crate::server::{Piece, Reply, Server};
use oxydra_agent::catalog::{ModelInfo, Price};
use oxydra_agent::scrub::Scrubber;
use oxydra_agent::turn::{
    AgentProfile, BudgetKeys, Budgets, Compaction, DEFAULT_DELEGATION_TIMEOUT,
    DEFAULT_MAX_DELEGATION_DEPTH, Runtime,
};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use oxydra_runtime::{
    ComponentHost, ComponentSpec, HostConfig, Limits, Profile, ToolSpec, Workspace, bundle,
};
use oxydra_store::Store;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// The cargo target directory these tests were built into.
fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn components() -> PathBuf {
    target().join("release/components")
}

/// A model priced at $1 per million input tokens and $2 per million output tokens.
pub fn model_info(context_window: u64) -> ModelInfo {
    ModelInfo {
        id: "test-model".into(),
        provider: "openai".into(),
        context_window,
        max_output: 4096,
        input_modalities: vec!["text".into()],
        tool_call: true,
        reasoning: false,
        price: Price {
            input: 1.0,
            output: 2.0,
            cached: 0.5,
        },
    }
}

/// What `input` + `output` tokens cost with [`model_info`].
pub fn cost(input: u64, output: u64) -> f64 {
    (input as f64 + 2.0 * output as f64) / 1e6
}

pub fn budgets(max_steps: u32) -> Budgets {
    Budgets {
        max_steps,
        max_tokens: None,
        max_cost: None,
        wall_time: None,
        keys: BudgetKeys::default(),
    }
}

pub fn agent(name: &str, budgets: Budgets) -> AgentProfile {
    AgentProfile {
        name: name.into(),
        system_prompt: format!("You are {name}."),
        tools: None,
        budgets,
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub rt: Arc<Runtime>,
}

pub struct Setup {
    /// Bundled tools to load, by name; `fx_handoff` and `fx_sleep` are fixtures.
    pub tools: Vec<&'static str>,
    /// `openai` or `anthropic`.
    pub provider: &'static str,
    pub context_window: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            tools: vec!["file_list", "file_read", "file_write"],
            provider: "openai",
            context_window: 128_000,
        }
    }
}

impl Env {
    pub fn new(replies: Vec<Reply>) -> Env {
        Env::with(replies, Setup::default(), |_| {})
    }

    pub fn with(replies: Vec<Reply>, setup: Setup, adjust: impl FnOnce(&mut Runtime)) -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let server = Server::start(replies);
        let dir_c = components();
        let manifest = bundle::read_manifest(&dir_c).unwrap_or_else(|e| {
            panic!("{e}: run scripts/build.sh (with this CARGO_TARGET_DIR) first")
        });
        let host = Arc::new(
            ComponentHost::new(HostConfig {
                cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent-cache")),
                max_memory_mib: 256,
            })
            .unwrap(),
        );
        let (wasm, sha) = bundle::provider_component(&dir_c, &manifest, setup.provider).unwrap();
        let base_url = match setup.provider {
            "openai" => format!("{}/v1", server.url),
            _ => server.url.clone(),
        };
        let provider = host
            .load_provider(ProviderSpec {
                name: "local".into(),
                wasm,
                expected_sha256: Some(sha),
                base_url: Some(base_url),
                api_key: None,
                api_key_env: None,
                extra_headers: vec![],
                limits: Limits::default(),
                retry: RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                },
            })
            .unwrap();
        let mut tools = Vec::new();
        for spec in bundle::tool_specs(&dir_c, &manifest, |_| Limits::default()).unwrap() {
            if setup.tools.contains(&spec.name.as_str()) {
                tools.push(Arc::new(host.load(&spec).unwrap()));
            }
        }
        for (name, grant) in [
            ("fx_handoff", Profile::Delegation),
            ("fx_sleep", Profile::FileReadOnly),
        ] {
            if !setup.tools.contains(&name) {
                continue;
            }
            let wasm =
                std::fs::read(target().join(format!("wasm32-wasip2/wasm-release/{name}.wasm")))
                    .unwrap_or_else(|e| {
                        panic!("{name}.wasm: {e}; build the fixtures (scripts/test.sh)")
                    });
            let spec = ToolSpec {
                name: name.into(),
                components: vec![ComponentSpec {
                    name: name.into(),
                    wasm: Arc::new(wasm),
                    grant,
                    expected_sha256: None,
                }],
                limits: Limits::default(),
                web: Default::default(),
            };
            tools.push(Arc::new(host.load(&spec).unwrap()));
        }
        let ws = Workspace::open(&dir.path().join("ws")).unwrap();
        let mut rt = Runtime {
            host,
            provider,
            model: "test-model".into(),
            model_info: Some(model_info(setup.context_window)),
            max_output_tokens: Some(1024),
            request_options: Vec::new(),
            tools,
            tool_sources: Vec::new(),
            scrubber: Scrubber::new(Some(ws.host_root()), vec![]),
            workspace: Arc::new(ws),
            store: Store::open(&dir.path().join("store.db")).unwrap(),
            safety_buffer_tokens: 0,
            fallback_context_tokens: 128_000,
            compaction: Compaction {
                trigger_ratio: 0.85,
                target_ratio: 0.5,
                min_turns: 6,
                flush_to_memory: false,
            },
            agents: Default::default(),
            max_delegation_depth: DEFAULT_MAX_DELEGATION_DEPTH,
            delegation_timeout: DEFAULT_DELEGATION_TIMEOUT,
        };
        adjust(&mut rt);
        Env {
            dir,
            server,
            rt: Arc::new(rt),
        }
    }

    pub fn session(&self) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("s{n}");
        self.rt.store.create_session(&id, "main").unwrap();
        id
    }

    pub fn request(&self, n: usize) -> Value {
        let reqs = self.server.requests();
        assert!(n < reqs.len(), "only {} request(s) were made", reqs.len());
        reqs[n].json()
    }

    pub fn requests(&self) -> usize {
        self.server.requests().len()
    }
}

fn usage_event(input: u64, output: u64) -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output}})
    )
}

/// An OpenAI chat reply calling `calls` (id, name, arguments), with this usage.
pub fn tool_calls(calls: &[(&str, &str, Value)], input: u64, output: u64) -> Reply {
    let list: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    let a = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"tool_calls": list}, "finish_reason": null}]})
    );
    let b = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n";
    Reply::sse(&[&a, b, &usage_event(input, output), "data: [DONE]\n\n"])
}

/// An OpenAI chat reply answering `text`, with this usage.
pub fn answer(text: &str, input: u64, output: u64) -> Reply {
    let a = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    );
    let b = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    Reply::sse(&[&a, b, &usage_event(input, output), "data: [DONE]\n\n"])
}

/// `reply` after a pause before its first byte.
pub fn delayed(mut reply: Reply, pause: std::time::Duration) -> Reply {
    reply.body.insert(0, Piece::Pause(pause));
    reply
}

/// An Anthropic Messages reply answering `text`.
pub fn anthropic_answer(text: &str) -> Reply {
    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
    Reply::sse(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":50,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        &format!("event: content_block_delta\ndata: {delta}\n\n"),
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ])
}

/// The messages of an OpenAI chat request.
pub fn messages(req: &Value) -> Vec<Value> {
    req["messages"].as_array().unwrap().clone()
}

/// The tool results of an OpenAI chat request: (tool_call_id, content).
pub fn tool_results(req: &Value) -> Vec<(String, String)> {
    messages(req)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The names of the tools an OpenAI chat request offers.
pub fn offered(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
