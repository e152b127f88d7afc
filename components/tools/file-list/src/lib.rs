//! `file_list`: list a directory (profile file-read-only).

use oxydra_sdk::{ToolError, fs, tool};

/// Most entries listed.
const MAX_ENTRIES: usize = 1000;

/// List the entries of a directory in /shared or /tmp, one per line: directories end
/// with `/`, files show their size in bytes. At most 1000 entries are listed.
#[tool(tier = "read-only")]
fn file_list(
    /// Virtual directory path
    #[arg(default = "/shared")]
    path: String,
) -> Result<String, ToolError> {
    let entries = fs::list_dir(&path)?;
    if entries.is_empty() {
        return Ok(format!("{path} is empty"));
    }
    let mut out = String::new();
    for e in entries.iter().take(MAX_ENTRIES) {
        match e.kind {
            fs::EntryKind::Directory => out.push_str(&format!("{}/\n", e.name)),
            fs::EntryKind::File => out.push_str(&format!("{} ({} bytes)\n", e.name, e.size)),
            fs::EntryKind::Symlink => out.push_str(&format!("{} (symlink)\n", e.name)),
            fs::EntryKind::Other => out.push_str(&format!("{} (special file)\n", e.name)),
        }
    }
    if entries.len() > MAX_ENTRIES {
        out.push_str(&format!(
            "... and {} more entries\n",
            entries.len() - MAX_ENTRIES
        ));
    }
    Ok(out)
}

oxydra_sdk::export_tool!(FileList);
