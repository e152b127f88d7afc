use oxydra_sdk::{ToolEnum, ToolError, fs, tool};

#[derive(ToolEnum)]
enum Unit { Words, Lines }

/// Count the words or lines of a text file in /shared or /tmp (files up to 1 MiB).
#[tool(tier = "read-only")]
fn word_count(
    /// Virtual path, e.g. /shared/notes.md
    path: String,
    /// What to count
    #[arg(default = "words")]
    unit: Unit,
) -> Result<String, ToolError> {
    let text = fs::read_to_string(&path, 1 << 20)?;
    let n = match unit { Unit::Words => text.split_whitespace().count(), Unit::Lines => text.lines().count() };
    Ok(format!("{n} {}", unit.as_str()))
}

oxydra_sdk::export_tool!(WordCount);
