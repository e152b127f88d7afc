//! `file_read`: read a UTF-8 text file (profile file-read-only).

use oxydra_sdk::{ToolError, fs, tool};

/// Largest text `file_read` returns (a whole file, or a window of one).
const MAX_BYTES: u64 = 1024 * 1024;
/// Bytes asked of the host per read while looking for a window's lines.
const CHUNK: u64 = 1024 * 1024;

/// Read a UTF-8 text file from /shared or /tmp and return its contents. Whole files up to
/// 1 MiB; for a larger file (of any size) use `offset` and `limit` to return a range of
/// lines, up to 1 MiB of them. /vault is not readable: use vault_copyto to copy a vault
/// file into /shared first.
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
    if offset.is_none() && limit.is_none() {
        return fs::read_to_string(&path, MAX_BYTES).map_err(|e| match e {
            ToolError::TooLarge(m) => ToolError::TooLarge(format!(
                "{m}; read it in windows with offset and limit (lines)"
            )),
            other => other,
        });
    }
    window(&path, offset.unwrap_or(1), limit.unwrap_or(u64::MAX))
}

/// Lines `first ..` (1-based), at most `count` of them, read in chunks so the file's
/// size does not matter; only what is returned is capped. Lines are returned as
/// `str::lines` gives them, joined by `\n`, with the file's final newline kept when the
/// window reaches the end of the file.
fn window(path: &str, first: u64, count: u64) -> Result<String, ToolError> {
    let end = first.saturating_add(count); // the first line not wanted
    let mut line: u64 = 1; // the line the next byte belongs to
    let mut out: Vec<u8> = Vec::new(); // wanted lines, each with its newline
    let mut pos: u64 = 0;
    let mut size: u64;
    let mut ends_with_newline = false;
    'read: loop {
        let (chunk, file_size) = fs::read_range(path, pos, CHUNK)?;
        size = file_size;
        if chunk.is_empty() {
            break;
        }
        for &b in &chunk {
            pos += 1;
            ends_with_newline = b == b'\n';
            if line >= first {
                out.push(b);
                if out.len() as u64 > MAX_BYTES {
                    return Err(ToolError::TooLarge(format!(
                        "lines {first}.. of {path} are more than {MAX_BYTES} bytes; ask for fewer lines (limit)"
                    )));
                }
            }
            if b == b'\n' {
                line += 1;
                if line >= end {
                    break 'read;
                }
            }
        }
        if pos >= size {
            break;
        }
    }
    let at_end = pos >= size;
    // Lines in the file: a final newline does not start another line.
    if at_end {
        let total = if ends_with_newline || size == 0 {
            line - 1
        } else {
            line
        };
        if first > total && total > 0 {
            return Err(ToolError::InvalidArguments(format!(
                "offset {first} is past the end of {path}, which has {total} lines"
            )));
        }
    }
    if !(at_end && ends_with_newline) && out.last() == Some(&b'\n') {
        out.pop();
    }
    let text = String::from_utf8(out).map_err(|_| {
        ToolError::Failed(format!(
            "{path} is not UTF-8 text; this tool reads text files only"
        ))
    })?;
    // `\r\n` line ends read as `str::lines` reads them.
    Ok(text.replace("\r\n", "\n"))
}

oxydra_sdk::export_tool!(FileRead);
