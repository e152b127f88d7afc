//! `file_delete`: remove a file or directory (profile file-read-write).

use oxydra_sdk::{ToolError, fs, tool};

/// Delete a file, or a directory and everything in it, under /shared or /tmp.
/// The roots themselves and /vault cannot be deleted.
#[tool(tier = "side-effecting")]
fn file_delete(
    /// Virtual path to delete
    path: String,
) -> Result<String, ToolError> {
    fs::remove(&path)?;
    Ok(format!("deleted {path}"))
}

oxydra_sdk::export_tool!(FileDelete);
