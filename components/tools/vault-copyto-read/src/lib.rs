//! `vault_copyto`, step 1 (profile vault-read-step): read the vault file. This
//! component can read /vault and nothing else; it cannot write a file.

use oxydra_sdk::{StepContext, StepOutput, ToolError, tool, vault};

const MAX_BYTES: u64 = 16 * 1024 * 1024;

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
    let _ = destination_path;
    let data = vault::read_file(&source_path, MAX_BYTES)?;
    let message = format!(
        "{}: read {} bytes from {source_path}",
        ctx.operation_id,
        data.len()
    );
    Ok(StepOutput { data, message })
}

oxydra_sdk::export_step!(VaultCopyto);
