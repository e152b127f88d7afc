//! `shell_exec` (profile shell): run a command with `/bin/sh -c` in the shell sidecar,
//! through `oxydra:shell/exec`. The sidecar is a separate container holding the user's
//! /shared and /tmp and nothing else: no vault, no API keys, no network, its own memory
//! and process limits. The host registers this tool only when the sidecar is up.

use oxydra_sdk::shell::{self, Request};
use oxydra_sdk::{ToolError, tool};

/// Run a shell command (busybox sh and its utilities: ls, cat, grep, sed, awk, find,
/// sort, wc, tar, …) in a sandbox that sees only /shared and /tmp: no /vault, no network,
/// no secrets. The working directory defaults to /shared. The command and everything it
/// starts are killed at the timeout (default 60 s, at most 300 s). At most 64 KiB of
/// stdout and 64 KiB of stderr are returned; the rest is dropped and marked truncated, so
/// redirect long output to a file in /shared and read parts of it. Memory and the number
/// of processes are limited; a command that exceeds them is killed.
#[tool(tier = "privileged")]
fn shell_exec(
    /// The command line, e.g. `ls -la /shared` or `grep -rn TODO src | head`
    #[arg(min_length = 1, max_length = 16384)]
    command: String,
    /// Seconds before the command is killed (1 to 300)
    #[arg(minimum = 1, maximum = 300, default = 60)]
    timeout_secs: u32,
    /// Directory to run in, under /shared or /tmp (default /shared)
    working_dir: Option<String>,
) -> Result<String, ToolError> {
    let out = shell::run(&Request {
        command,
        working_dir,
        timeout_ms: timeout_secs.saturating_mul(1000),
    })
    .map_err(ToolError::Failed)?;
    let mut text = match (out.exit_code, out.signal, out.timed_out) {
        (_, _, true) => {
            format!("timed out after {timeout_secs} s: the command and its children were killed\n")
        }
        (Some(code), _, _) => format!("exit code {code}\n"),
        (None, Some(9), _) => {
            "killed by signal 9 (SIGKILL: the sandbox's memory or process limit, most likely)\n"
                .to_string()
        }
        (None, Some(sig), _) => format!("killed by signal {sig}\n"),
        (None, None, _) => "ended without an exit status\n".to_string(),
    };
    if !out.stdout.is_empty() {
        text.push_str("--- stdout\n");
        text.push_str(&out.stdout);
        if !out.stdout.ends_with('\n') {
            text.push('\n');
        }
    }
    if !out.stderr.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&out.stderr);
        if !out.stderr.ends_with('\n') {
            text.push('\n');
        }
    }
    if out.truncated {
        text.push_str("(output truncated at 64 KiB per stream: redirect it to a file in /shared and read the part you need)\n");
    }
    Ok(text)
}

oxydra_sdk::export_tool!(ShellExec);
