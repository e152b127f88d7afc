//! Finding, checking and merging the layers.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// Where layers come from. Tests point these at temporary directories.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Directories searched in order, lowest precedence first.
    pub dirs: Vec<PathBuf>,
    /// `OXYDRA__...` variables, in the order given.
    pub env: Vec<(String, String)>,
    /// `--set key=value` flags, highest precedence.
    pub sets: Vec<String>,
    /// `--config FILE`: one more file above the directories.
    pub extra_file: Option<PathBuf>,
}

impl Sources {
    /// The standard search path for this process.
    pub fn standard(sets: Vec<String>, extra_file: Option<PathBuf>) -> Sources {
        let mut dirs = vec![PathBuf::from("/etc/oxydra")];
        let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(d) = xdg.or_else(|| home.map(|h| h.join(".config"))) {
            dirs.push(d.join("oxydra"));
        }
        dirs.push(PathBuf::from(".oxydra"));
        // `--config <dir>/runner.toml` (the seed's `runner --config .oxydra/runner.toml`)
        // names a configuration directory: its runner.toml and agent.toml are the top
        // file layers.
        let mut extra_file = extra_file;
        if let Some(f) = &extra_file
            && f.file_name().is_some_and(|n| n == "runner.toml")
        {
            let dir = match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let same = |d: &PathBuf| match (d.canonicalize(), dir.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => *d == dir,
            };
            if f.exists() {
                dirs.retain(|d| !same(d));
                dirs.push(dir);
                extra_file = None;
            }
        }
        let env = std::env::vars()
            .filter(|(k, _)| k.starts_with("OXYDRA__"))
            .collect();
        Sources {
            dirs,
            env,
            sets,
            extra_file,
        }
    }
}

/// One layer that contributed to the result.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
}

#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    pub layers: Vec<Layer>,
    /// The last directory that held this file (relative paths in it resolve there).
    pub base_dir: Option<PathBuf>,
    /// Each layer's own table (and text, for files), to say where a key was set.
    tables: Vec<(String, Table, Option<String>)>,
}

impl<T> Loaded<T> {
    /// Whether any layer sets `key` (dotted), as a value or a table.
    pub fn sets(&self, key: &str) -> bool {
        self.tables.iter().any(|(_, table, _)| {
            let mut cur = table;
            let parts: Vec<&str> = key.split('.').collect();
            for (i, p) in parts.iter().enumerate() {
                match cur.get(*p) {
                    Some(Value::Table(t)) => cur = t,
                    Some(_) => return i + 1 == parts.len(),
                    None => return false,
                }
            }
            true
        })
    }

    /// Where `key` (dotted) got its value: the last layer that set it, as the user named
    /// it (`.oxydra/agent.toml:12`, `--set runtime.max_cost=nan`), or `fallback`.
    pub fn locate(&self, key: &str, fallback: &str) -> String {
        let path: Vec<&str> = key.split('.').collect();
        for (name, table, text) in self.tables.iter().rev() {
            let mut at = Some(table);
            let mut found = true;
            for (i, seg) in path.iter().enumerate() {
                match at.and_then(|t| t.get(*seg)) {
                    Some(Value::Table(t)) => at = Some(t),
                    Some(_) if i + 1 == path.len() => at = None,
                    _ => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            let line = text.as_deref().and_then(|t| line_of(t, &path));
            return match line {
                Some(n) => format!("{name}:{n}"),
                None => name.clone(),
            };
        }
        fallback.to_string()
    }
}

/// The line (1-based) where the last segment of `path` is assigned, after its table's
/// header when there is one.
fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let (last, parent) = path.split_last()?;
    let header = format!("[{}]", parent.join("."));
    let mut in_table = parent.is_empty();
    let mut first = None;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_table = l == header || parent.is_empty();
            if l == format!("[{}]", path.join(".")) {
                return Some(i + 1);
            }
            continue;
        }
        let assigned = l
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'))
            .is_some_and(|k| k == *last || k.ends_with(&format!(".{last}")));
        if assigned {
            if in_table {
                return Some(i + 1);
            }
            first.get_or_insert(i + 1);
        }
    }
    first
}

/// Check one layer against the schema, and say where a mistake is.
fn check_layer<T: DeserializeOwned>(
    source_name: &str,
    table: &Table,
    text: Option<&str>,
) -> Result<(), ConfigError> {
    // With a source text, toml's own error shows the line and column.
    if let Some(text) = text
        && let Err(e) = toml::from_str::<T>(text)
    {
        let key = key_path::<T>(table);
        let mut message = e.to_string().trim_end().to_string();
        if let Some(key) = key {
            message = format!("key `{key}`: {message}");
        }
        return Err(ConfigError::Invalid {
            source_name: source_name.to_string(),
            message,
        });
    }
    if text.is_none()
        && let Err(e) = serde_path_to_error::deserialize::<_, T>(Value::Table(table.clone()))
    {
        return Err(ConfigError::Invalid {
            source_name: source_name.to_string(),
            message: format!("key `{}`: {}", e.path(), first_line(&e.inner().to_string())),
        });
    }
    Ok(())
}

/// toml's value deserializer repeats the key on later lines; the path is already given.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

fn key_path<T: DeserializeOwned>(table: &Table) -> Option<String> {
    match serde_path_to_error::deserialize::<_, T>(Value::Table(table.clone())) {
        Err(e) => Some(e.path().to_string()).filter(|p| p != "."),
        Ok(_) => None,
    }
}

fn merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `a.b.c` + value → `{a = {b = {c = value}}}`.
fn nested(path: &[String], value: Value) -> Table {
    let mut table = Table::new();
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            table.insert(first.clone(), Value::Table(nested(rest, value)));
        }
    }
    table
}

/// A value as TOML if it parses as one (`20`, `true`, `["a"]`), else as a string.
fn scalar(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn read_file(path: &Path) -> Result<Option<(String, Table)>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    let table: Table = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        source_name: path.display().to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    Ok(Some((text, table)))
}

/// Load `file_name` from every layer (files, then env with `env_prefix`, then flags).
fn load_layers<T: DeserializeOwned + Default>(
    sources: &Sources,
    file_name: &str,
    with_overrides: bool,
) -> Result<Loaded<T>, ConfigError> {
    let mut merged = Table::new();
    let mut layers = vec![Layer {
        name: "built-in defaults".into(),
    }];
    let mut base_dir = None;
    let mut tables = Vec::new();
    let mut files: Vec<PathBuf> = sources.dirs.iter().map(|d| d.join(file_name)).collect();
    if with_overrides && let Some(extra) = &sources.extra_file {
        if !extra.exists() {
            return Err(ConfigError::Io {
                path: extra.display().to_string(),
                message: "no such file".into(),
            });
        }
        files.push(extra.clone());
    }
    for path in files {
        if let Some((text, table)) = read_file(&path)? {
            check_layer::<T>(&path.display().to_string(), &table, Some(&text))?;
            tables.push((path.display().to_string(), table.clone(), Some(text)));
            merge(&mut merged, table);
            layers.push(Layer {
                name: path.display().to_string(),
            });
            base_dir = path.parent().map(Path::to_path_buf);
        }
    }
    if with_overrides {
        for (name, raw) in &sources.env {
            let Some(rest) = name.strip_prefix("OXYDRA__") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid {
                    source_name: format!("environment variable {name}"),
                    message: "empty key segment; write OXYDRA__SECTION__KEY".into(),
                });
            }
            let layer = nested(&path, scalar(raw));
            check_layer::<T>(&format!("environment variable {name}"), &layer, None)?;
            tables.push((format!("environment variable {name}"), layer.clone(), None));
            merge(&mut merged, layer);
            layers.push(Layer {
                name: format!("environment variable {name}"),
            });
        }
        for set in &sources.sets {
            let Some((key, raw)) = set.split_once('=') else {
                return Err(ConfigError::Invalid {
                    source_name: format!("--set {set}"),
                    message: "expected key=value, e.g. --set runtime.max_turns=20".into(),
                });
            };
            let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
            let layer = nested(&path, scalar(raw.trim()));
            check_layer::<T>(&format!("--set {set}"), &layer, None)?;
            tables.push((format!("--set {set}"), layer.clone(), None));
            merge(&mut merged, layer);
            layers.push(Layer {
                name: format!("--set {set}"),
            });
        }
    }
    let value = serde_path_to_error::deserialize::<_, T>(Value::Table(merged)).map_err(|e| {
        ConfigError::Invalid {
            source_name: "merged configuration".into(),
            message: format!("key `{}`: {}", e.path(), first_line(&e.inner().to_string())),
        }
    })?;
    Ok(Loaded {
        value,
        layers,
        base_dir,
        tables,
    })
}

/// The key variables of the built-in providers: with none of them set and no provider
/// chosen in any layer, the agent runs on the managed local model.
pub const KNOWN_KEY_VARIABLES: [&str; 3] =
    ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"];

/// No `selection` or `providers` in any layer, and no known key variable set: select
/// the managed local model, and say so in a notice.
fn local_default(loaded: &mut Loaded<super::AgentConfig>, key_set: impl Fn(&str) -> bool) {
    if loaded.sets("selection") || loaded.sets("providers") {
        return;
    }
    if KNOWN_KEY_VARIABLES.iter().any(|k| key_set(k)) {
        return;
    }
    loaded.value.selection = super::agent::Selection {
        provider: "local".into(),
        model: crate::local::MODEL_ID.into(),
    };
    loaded.value.notices.push(format!(
        "no API key set: using the local {} on this machine (small: expect simple answers); set OPENAI_API_KEY or configure a provider for a capable model",
        crate::local::MODEL_NAME
    ));
}

pub fn load_agent(sources: &Sources) -> Result<Loaded<super::AgentConfig>, ConfigError> {
    let mut loaded = load_layers::<super::AgentConfig>(sources, "agent.toml", true)?;
    local_default(&mut loaded, |k| {
        std::env::var(k).is_ok_and(|v| !v.trim().is_empty())
    });
    loaded
        .value
        .validate()
        .map_err(|(key, message)| ConfigError::Invalid {
            source_name: loaded.locate(&key, "agent.toml"),
            message: format!("key `{key}`: {message}"),
        })?;
    Ok(loaded)
}

pub fn load_runner(sources: &Sources) -> Result<Loaded<super::RunnerConfig>, ConfigError> {
    let loaded = load_layers::<super::RunnerConfig>(sources, "runner.toml", false)?;
    loaded
        .value
        .validate()
        .map_err(|(key, message)| ConfigError::Invalid {
            source_name: loaded.locate(&key, "runner.toml"),
            message: format!("key `{key}`: {message}"),
        })?;
    Ok(loaded)
}

/// One user's file (`users/<id>.toml`, or the `config_path` runner.toml names).
pub fn load_user(path: &Path) -> Result<super::UserConfig, ConfigError> {
    let Some((text, table)) = read_file(path)? else {
        return Err(ConfigError::Io {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    };
    check_layer::<super::UserConfig>(&path.display().to_string(), &table, Some(&text))?;
    let user: super::UserConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        source_name: path.display().to_string(),
        message: e.to_string(),
    })?;
    user.validate()
        .map_err(|(key, message)| ConfigError::Invalid {
            source_name: path.display().to_string(),
            message: format!("key `{key}`: {message}"),
        })?;
    Ok(user)
}
