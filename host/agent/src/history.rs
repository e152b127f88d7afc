//! A session's stored turns made into history a provider accepts, whatever happened to
//! the process that wrote them.
//!
//! - A tool call with no result (the process was killed between saving the assistant's
//!   calls and saving their results) gets a synthetic result saying so, and the model is
//!   told the turn was interrupted: OpenAI and Anthropic refuse calls without results,
//!   which would make the session unusable.
//! - A tool result that answers no call is left out, for the same reason.
//! - The arguments of a rejected call (its result is an `error: ...`) longer than
//!   [`REJECTED_ARGS_LIMIT`] are replaced by a short placeholder, so a 10 MB argument that
//!   failed validation is not sent again with every later request.
//!
//! This works on the runtime's shared [`Message`] type, so every provider's shape (which
//! the provider components convert it to) gets the same repaired history.

use oxydra_runtime::llm::types::{ContentPart, Message, Role};
use std::collections::BTreeSet;

/// Arguments of a rejected call above this many bytes are not replayed.
pub const REJECTED_ARGS_LIMIT: usize = 16 * 1024;

/// The result given to a tool call that has none.
pub const INTERRUPTED_RESULT: &str =
    "interrupted before this tool finished; nothing is known about its effect";

/// Told to the model after a turn that did not finish.
pub const INTERRUPTED_NOTE: &str = "The turn above was interrupted before it finished (the process ended or the provider failed). \
Tool calls marked as interrupted may or may not have taken effect: check before relying on them.";

/// Appended to the text already streamed when a provider call fails mid-reply.
pub fn cut_marker(why: &str) -> String {
    format!("\n\n[interrupted: this reply was cut off ({why})]")
}

/// How the host marks a failed tool call's result (see `Runtime::run_tool`).
fn is_failure(m: &Message) -> bool {
    m.content
        .iter()
        .any(|c| matches!(c, ContentPart::Text(t) if t.starts_with("error:")))
}

fn placeholder(len: usize) -> String {
    serde_json::json!({
        "omitted": format!("the {len}-byte arguments of this call were rejected and are not repeated here")
    })
    .to_string()
}

/// One stored turn as history a provider accepts. `current`: the turn now running (its
/// end is not an interruption).
pub fn repair_turn(msgs: Vec<Message>, current: bool) -> Vec<Message> {
    let failed: BTreeSet<String> = msgs
        .iter()
        .filter(|m| m.role == Role::Tool && is_failure(m))
        .filter_map(|m| m.tool_call_id.clone())
        .collect();
    let mut out: Vec<Message> = Vec::with_capacity(msgs.len());
    // Calls of the latest assistant message not answered yet: (id, name).
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut interrupted = false;
    let flush = |out: &mut Vec<Message>, pending: &mut Vec<(String, String)>| {
        let any = !pending.is_empty();
        for (id, name) in pending.drain(..) {
            out.push(Message {
                tool_call_id: Some(id),
                tool_name: Some(name),
                ..Message::text(Role::Tool, INTERRUPTED_RESULT)
            });
        }
        any
    };
    for mut m in msgs {
        if m.role == Role::Tool {
            let answered = m
                .tool_call_id
                .as_ref()
                .and_then(|id| pending.iter().position(|(p, _)| p == id));
            if let Some(i) = answered {
                pending.remove(i);
                out.push(m);
            }
            continue;
        }
        interrupted |= flush(&mut out, &mut pending);
        if m.role == Role::Assistant {
            for c in &mut m.tool_calls {
                if c.arguments.len() > REJECTED_ARGS_LIMIT && failed.contains(&c.id) {
                    c.arguments = placeholder(c.arguments.len());
                }
            }
            pending = m
                .tool_calls
                .iter()
                .map(|c| (c.id.clone(), c.name.clone()))
                .collect();
        }
        out.push(m);
    }
    interrupted |= flush(&mut out, &mut pending);
    if !current && out.last().is_some_and(|m| m.role == Role::User) {
        interrupted = true;
    }
    if interrupted && !current {
        out.push(Message::text(Role::System, INTERRUPTED_NOTE));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oxydra_runtime::llm::types::ToolCall;

    fn call(id: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: args.into(),
            provider_data: None,
        }
    }
    fn assistant(calls: Vec<ToolCall>) -> Message {
        Message {
            tool_calls: calls,
            ..Message::text(Role::Assistant, "")
        }
    }
    fn result(id: &str, text: &str) -> Message {
        Message {
            tool_call_id: Some(id.into()),
            tool_name: Some("t".into()),
            ..Message::text(Role::Tool, text)
        }
    }

    #[test]
    fn unanswered_calls_get_a_result_and_a_note() {
        let msgs = vec![
            Message::text(Role::User, "go"),
            assistant(vec![call("a", "{}"), call("b", "{}")]),
            result("a", "ok"),
        ];
        let out = repair_turn(msgs, false);
        assert_eq!(out.len(), 5);
        assert_eq!(out[2].tool_call_id.as_deref(), Some("a"));
        assert_eq!(out[3].tool_call_id.as_deref(), Some("b"));
        assert_eq!(
            out[3].content,
            vec![ContentPart::Text(INTERRUPTED_RESULT.into())]
        );
        assert_eq!(out[4].role, Role::System);
    }

    #[test]
    fn a_complete_turn_is_unchanged() {
        let msgs = vec![
            Message::text(Role::User, "go"),
            assistant(vec![call("a", "{}")]),
            result("a", "ok"),
            Message::text(Role::Assistant, "done"),
        ];
        assert_eq!(repair_turn(msgs.clone(), false), msgs);
        assert_eq!(repair_turn(msgs[..3].to_vec(), true), msgs[..3].to_vec());
    }

    #[test]
    fn orphan_results_are_left_out_and_big_rejected_arguments_shrink() {
        let big = format!("{{\"content\":\"{}\"}}", "x".repeat(REJECTED_ARGS_LIMIT));
        let msgs = vec![
            Message::text(Role::User, "go"),
            result("zz", "stray"),
            assistant(vec![call("a", &big), call("b", &big)]),
            result("a", "error: invalid arguments: path is required"),
            result("b", "wrote it"),
            Message::text(Role::Assistant, "done"),
        ];
        let out = repair_turn(msgs, true);
        assert_eq!(out.len(), 5);
        let calls = &out[1].tool_calls;
        assert!(calls[0].arguments.len() < 200, "{}", calls[0].arguments);
        assert!(calls[0].arguments.contains(&big.len().to_string()));
        let _: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(calls[1].arguments, big);
    }
}
