//! `file_read`: read a UTF-8 text file (profile file-read-only).

use oxydra_sdk::{ToolError, fs, tool};

/// Largest file `file_read` returns.
const MAX_BYTES: u64 = 1024 * 1024;

/// Read a UTF-8 text file from /shared or /tmp and return its contents. Files up to
/// 1 MiB; use `offset` and `limit` to return a range of lines. /vault is not readable:
/// use vault_copyto to copy a vault file into /shared first.
#[tool(tier = "read-only")]
fn file_read(
    /// Virtual path of the file, e.g. /shared/notes.md (a relative path means /shared/...)
    path: String,
    /// First line to return, counting from 1
    #[arg(minimum = 1)]
    offset: Option<u64>,
    /// Number of lines to return
    #[arg(minimum = 1)]
    limit: Option<u64>,
) -> Result<String, ToolError> {
    let text = fs::read_to_string(&path, MAX_BYTES)?;
    if offset.is_none() && limit.is_none() {
        return Ok(text);
    }
    let start = offset.unwrap_or(1).saturating_sub(1) as usize;
    let take = limit.map_or(usize::MAX, |l| l as usize);
    let total = text.lines().count();
    if start >= total && total > 0 {
        return Err(ToolError::InvalidArguments(format!(
            "offset {} is past the end of {path}, which has {total} lines",
            start + 1
        )));
    }
    let mut out: String = text
        .lines()
        .skip(start)
        .take(take)
        .collect::<Vec<_>>()
        .join("\n");
    if text.ends_with('\n') && start + take >= total {
        out.push('\n');
    }
    Ok(out)
}

oxydra_sdk::export_tool!(FileRead);
