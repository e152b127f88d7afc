//! `vault_copyto`, step 2 (profile vault-write-step): write the bytes step 1 read.
//! This component can write /shared and /tmp and cannot read anything.

use oxydra_sdk::{StepContext, StepOutput, ToolError, fs, tool};

/// Copy a file from /vault to /shared or /tmp so other tools can use it. The copy runs
/// as two separate sandboxed steps: one that can only read /vault, one that can only
/// write /shared and /tmp. Files up to 16 MiB.
#[tool(step, tier = "side-effecting")]
fn vault_copyto(
    ctx: StepContext,
    /// Virtual path of the vault file, e.g. /vault/api-notes.txt
    source_path: String,
    /// Where to write the copy, under /shared or /tmp
    destination_path: String,
) -> Result<StepOutput, ToolError> {
    fs::write_file(&destination_path, &ctx.input)?;
    Ok(StepOutput {
        data: Vec::new(),
        message: format!(
            "copied {source_path} to {destination_path} ({} bytes)",
            ctx.input.len()
        ),
    })
}

oxydra_sdk::export_step!(VaultCopyto);
