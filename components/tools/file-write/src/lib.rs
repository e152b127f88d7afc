//! `file_write`: create or replace a file (profile file-read-write).

use oxydra_sdk::{ToolError, fs, tool};

const MAX_BYTES: usize = 4 * 1024 * 1024;

/// Create or replace a text file in /shared or /tmp with `content`, creating missing
/// parent directories. The write is atomic: readers see the old or the new file, never
/// a half-written one. Up to 4 MiB. /vault cannot be written.
#[tool(tier = "side-effecting")]
fn file_write(
    /// Virtual path of the file, e.g. /shared/report.md
    path: String,
    /// The whole new content of the file
    content: String,
) -> Result<String, ToolError> {
    if content.len() > MAX_BYTES {
        return Err(ToolError::TooLarge(format!(
            "content is {} bytes; file_write writes at most {MAX_BYTES} bytes",
            content.len()
        )));
    }
    fs::write_file(&path, content.as_bytes())?;
    Ok(format!("wrote {} bytes to {path}", content.len()))
}

oxydra_sdk::export_tool!(FileWrite);
