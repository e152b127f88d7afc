//! `oxydra-host llm complete`: one completion through a provider component, streamed.
//! The answer goes to stdout as it arrives; tool calls, usage and the stop reason to stderr.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_runtime::llm::types::{LlmEvent, LlmRequest, Message, Role};
use oxydra_session::config::{self, Sources};
use oxydra_session::{providers, tools};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Subcommand)]
pub enum LlmCommand {
    /// Send one prompt and stream the answer: the way to try a provider without the agent loop.
    Complete {
        /// A key of [providers.registry]; default: [selection] provider.
        #[arg(long)]
        provider: Option<String>,
        /// Default: [selection] model.
        #[arg(long)]
        model: Option<String>,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Output token limit; default: the provider's max_output_tokens, else the catalog's.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// low, medium or high.
        #[arg(long)]
        reasoning_effort: Option<String>,
        prompt: String,
    },
}

pub fn run(cmd: LlmCommand, sources: &Sources) -> Result<(), Failure> {
    let LlmCommand::Complete {
        provider,
        model,
        system,
        max_tokens,
        reasoning_effort,
        prompt,
    } = cmd;
    let loaded_cfg = config::load_agent(sources)?;
    let base_dir = loaded_cfg.base_dir;
    let cfg = loaded_cfg.value;
    let name = provider.unwrap_or_else(|| cfg.selection.provider.clone());
    let model = model.unwrap_or_else(|| cfg.selection.model.clone());
    let entry = providers::entry(&cfg, &name)?;
    let info = providers::model_info(&cfg, entry, &model)?;
    let host = tools::host(&cfg.components)?;
    for n in &cfg.notices {
        eprintln!("{n}");
    }
    let server =
        providers::managed_server(&cfg, &name, &mut |line| eprintln!("[local model] {line}"))?;
    let loaded = providers::load(&host, &cfg, base_dir.as_deref(), &name, server.as_deref())?;

    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::text(Role::System, s));
    }
    messages.push(Message::text(Role::User, prompt));
    let request = LlmRequest {
        model: model.clone(),
        messages,
        max_output_tokens: max_tokens.or(providers::max_output(entry, info)),
        options: providers::request_options(entry),
        reasoning_effort,
        ..Default::default()
    };
    let completion = host
        .complete(&loaded, &request)
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let mut calls: BTreeMap<u32, (String, String, String)> = BTreeMap::new();
    let mut ended_with_newline = true;
    for event in completion {
        let event = event.map_err(|e| {
            if !ended_with_newline {
                let _ = writeln!(out);
            }
            Failure::new(exit::TOOL_ERROR, e.to_string())
        })?;
        match event {
            LlmEvent::TextDelta(t) => {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
                ended_with_newline = t.ends_with('\n');
            }
            LlmEvent::ReasoningDelta(t) => eprint!("{t}"),
            LlmEvent::ReasoningSignature(_) => {}
            LlmEvent::ToolCallStart { index, id, name } => {
                calls.insert(index, (id, name, String::new()));
            }
            LlmEvent::ToolCallArguments { index, fragment } => {
                if let Some(c) = calls.get_mut(&index) {
                    c.2.push_str(&fragment);
                }
            }
            LlmEvent::ToolCallEnd { index, .. } => {
                if let Some((id, name, args)) = calls.get(&index) {
                    eprintln!("[tool call {index}] {name}({args}) id={id}");
                }
            }
            LlmEvent::Usage(u) => {
                let cost = info
                    .map(|m| format!(" cost=${:.6}", m.cost(&u)))
                    .unwrap_or_default();
                eprintln!(
                    "[usage] input={} output={} cached={} reasoning={}{cost}",
                    u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens
                );
            }
            LlmEvent::Stop(reason) => {
                if !ended_with_newline {
                    let _ = writeln!(out);
                    ended_with_newline = true;
                }
                eprintln!("[stop] {reason:?}");
            }
        }
    }
    Ok(())
}
