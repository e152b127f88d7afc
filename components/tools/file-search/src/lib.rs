//! `file_search`: substring search over text files (profile file-read-only).

use oxydra_sdk::{ToolError, fs, tool};

const MAX_MATCHES: usize = 200;
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_FILES: usize = 5000;
const MAX_DEPTH: usize = 16;
/// Longest line echoed back, in characters.
const MAX_LINE_CHARS: usize = 300;

/// Find the lines that contain `query` (case-sensitive substring) in a file, or in
/// every text file under a directory, recursively. Returns `path:line: text`, at most
/// 200 matches; files over 1 MiB and non-text files are skipped, and at most 5000
/// files are searched.
#[tool(tier = "read-only")]
fn file_search(
    /// Virtual path of a file or directory in /shared or /tmp
    path: String,
    /// Text to look for
    #[arg(min_length = 1)]
    query: String,
) -> Result<String, ToolError> {
    let mut state = Search {
        query,
        matches: Vec::new(),
        files: 0,
        skipped: 0,
        truncated: false,
    };
    let meta = fs::stat(&path)?;
    match meta.kind {
        fs::EntryKind::Directory => state.walk(path.trim_end_matches('/'), 0)?,
        _ => state.file(&path, meta.size)?,
    }
    let mut out = if state.matches.is_empty() {
        format!(
            "no matches for {:?} ({} files searched)\n",
            state.query, state.files
        )
    } else {
        state.matches.join("\n") + "\n"
    };
    if state.truncated {
        out.push_str(&format!(
            "(stopped at {MAX_MATCHES} matches or {MAX_FILES} files; narrow the path)\n"
        ));
    }
    if state.skipped > 0 {
        out.push_str(&format!(
            "({} files skipped: larger than 1 MiB or not text)\n",
            state.skipped
        ));
    }
    Ok(out)
}

struct Search {
    query: String,
    matches: Vec<String>,
    files: usize,
    skipped: usize,
    truncated: bool,
}

impl Search {
    fn full(&mut self) -> bool {
        if self.matches.len() >= MAX_MATCHES || self.files >= MAX_FILES {
            self.truncated = true;
        }
        self.truncated
    }

    fn walk(&mut self, dir: &str, depth: usize) -> Result<(), ToolError> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        for e in fs::list_dir(dir)? {
            if self.full() {
                return Ok(());
            }
            let child = format!("{dir}/{}", e.name);
            match e.kind {
                fs::EntryKind::Directory => self.walk(&child, depth + 1)?,
                fs::EntryKind::File => self.file(&child, e.size)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64) -> Result<(), ToolError> {
        if size > MAX_FILE_BYTES {
            self.skipped += 1;
            return Ok(());
        }
        self.files += 1;
        let Ok(text) = fs::read_to_string(path, MAX_FILE_BYTES) else {
            self.skipped += 1;
            return Ok(());
        };
        for (i, line) in text.lines().enumerate() {
            if line.contains(&self.query) {
                let shown: String = line.chars().take(MAX_LINE_CHARS).collect();
                self.matches.push(format!("{path}:{}: {shown}", i + 1));
                if self.full() {
                    break;
                }
            }
        }
        Ok(())
    }
}

oxydra_sdk::export_tool!(FileSearch);
