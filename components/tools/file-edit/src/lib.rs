//! `file_edit`: replace one exact occurrence (profile file-read-write).

use oxydra_sdk::{ToolError, fs, tool};

const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Replace `old_text` with `new_text` in a text file in /shared or /tmp. `old_text`
/// must occur exactly once (include surrounding lines to make it unique); otherwise
/// nothing is changed and the error says how many times it occurred. Files up to 4 MiB.
#[tool(tier = "side-effecting")]
fn file_edit(
    /// Virtual path of the file
    path: String,
    /// Exact text to replace, including whitespace
    #[arg(min_length = 1)]
    old_text: String,
    /// Replacement text
    new_text: String,
) -> Result<String, ToolError> {
    let text = fs::read_to_string(&path, MAX_BYTES)?;
    let count = text.matches(old_text.as_str()).count();
    match count {
        0 => Err(ToolError::InvalidArguments(format!(
            "old_text was not found in {path}; read the file and copy the text exactly"
        ))),
        1 => {
            let updated = text.replacen(old_text.as_str(), &new_text, 1);
            fs::write_file(&path, updated.as_bytes())?;
            Ok(format!("replaced 1 occurrence in {path}"))
        }
        n => Err(ToolError::InvalidArguments(format!(
            "old_text occurs {n} times in {path}; include more surrounding text so it matches exactly once"
        ))),
    }
}

oxydra_sdk::export_tool!(FileEdit);
