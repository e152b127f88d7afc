//! `[mcp.servers.<name>]` in agent.toml: one table per MCP server, stdio (`command`) or
//! streamable HTTP (`url`), checked before anything starts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `(key, message)`: what is wrong, and where.
pub type KeyError = (String, String);

/// `[mcp]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    pub servers: BTreeMap<String, ServerConfig>,
}

/// The separator between a server's name and its tool's in the tool name the model sees.
pub const SEPARATOR: &str = "__";
/// Longest tool name providers accept (`^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_TOOL_NAME: usize = 64;
/// Longest server name.
pub const MAX_SERVER_NAME: usize = 32;

/// `[mcp.servers.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub enabled: bool,
    // stdio
    /// The program (a path, or a name looked up in `PATH`).
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Variables the server gets, with their values.
    pub env: BTreeMap<String, String>,
    /// Variables the server gets from the host's environment: `NAME = "HOST_VAR"`.
    pub env_from: BTreeMap<String, String>,
    /// The server's working directory (default: its private scratch directory).
    pub cwd: Option<PathBuf>,
    /// Directories (or files) the server may read, besides the system's and its own.
    pub read_only: Vec<PathBuf>,
    /// Directories the server may read and write, besides its scratch directory.
    pub read_write: Vec<PathBuf>,
    /// `RLIMIT_DATA` of the server, MiB.
    pub max_memory_mib: u64,
    // streamable HTTP
    pub url: Option<String>,
    /// Headers sent with every request (not secrets: they are in the config).
    pub headers: BTreeMap<String, String>,
    /// Headers whose value the host reads from its environment: `Header = "HOST_VAR"`;
    /// added by the host for the server's origin only.
    pub headers_from_env: BTreeMap<String, String>,
    // both
    /// From start to the tool list.
    pub startup_timeout_secs: u64,
    /// One tool call.
    pub call_timeout_secs: u64,
    /// Longest tool result passed on (longer ones are cut, and say so).
    pub max_result_bytes: usize,
    /// Of the server's tools, only these (its own names); default all.
    pub tools: Option<Vec<String>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enabled: true,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            env_from: BTreeMap::new(),
            cwd: None,
            read_only: Vec::new(),
            read_write: Vec::new(),
            max_memory_mib: 1024,
            url: None,
            headers: BTreeMap::new(),
            headers_from_env: BTreeMap::new(),
            startup_timeout_secs: 30,
            call_timeout_secs: 60,
            max_result_bytes: 100_000,
            tools: None,
        }
    }
}

/// How a server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

fn env_name_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Variables the host always sets for a stdio server (the config may not).
pub const FIXED_ENV: [&str; 3] = ["HOME", "TMPDIR", "PATH"];

impl McpConfig {
    /// Every problem is a key and what to do.
    pub fn validate(&self) -> Result<(), KeyError> {
        for (name, s) in &self.servers {
            s.validate(name)?;
        }
        Ok(())
    }
}

impl ServerConfig {
    pub fn transport(&self) -> Transport {
        if self.url.is_some() {
            Transport::Http
        } else {
            Transport::Stdio
        }
    }

    pub fn validate(&self, name: &str) -> Result<(), KeyError> {
        let key = |k: &str| format!("mcp.servers.{name}.{k}");
        if name.is_empty()
            || name.len() > MAX_SERVER_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            || name.contains(SEPARATOR)
            || name.starts_with('_')
            || name.ends_with('_')
        {
            return Err((
                format!("mcp.servers.{name}"),
                format!(
                    "a server name is 1 to {MAX_SERVER_NAME} lower-case letters, digits, `-` and `_`, without `{SEPARATOR}` and not starting or ending with `_` (its tools are named `<server>{SEPARATOR}<tool>`)"
                ),
            ));
        }
        match (&self.command, &self.url) {
            (None, None) => {
                return Err((
                    format!("mcp.servers.{name}"),
                    "set `command` (a stdio server) or `url` (a streamable HTTP server)".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err((
                    format!("mcp.servers.{name}"),
                    "set `command` (a stdio server) or `url` (an HTTP server), not both".into(),
                ));
            }
            (Some(c), None) => {
                if c.trim().is_empty() {
                    return Err((key("command"), "is empty".into()));
                }
                for (k, set) in [
                    ("headers", !self.headers.is_empty()),
                    ("headers_from_env", !self.headers_from_env.is_empty()),
                ] {
                    if set {
                        return Err((key(k), "is for an HTTP server (`url`); this one is stdio (`command`): pass what it needs in `env`/`env_from`".into()));
                    }
                }
                for (table, k) in self
                    .env
                    .keys()
                    .map(|k| ("env", k))
                    .chain(self.env_from.keys().map(|k| ("env_from", k)))
                {
                    if !env_name_ok(k) {
                        return Err((
                            key(table),
                            format!("`{k}` is not an environment variable name"),
                        ));
                    }
                    if k.starts_with("OXYDRA_") {
                        return Err((
                            key(table),
                            format!("`{k}`: names starting with OXYDRA_ are the host's"),
                        ));
                    }
                    if FIXED_ENV.contains(&k.as_str()) {
                        return Err((
                            key(table),
                            format!(
                                "`{k}` is set by the host (HOME and TMPDIR: the server's scratch directory; PATH: /usr/local/bin:/usr/bin:/bin)"
                            ),
                        ));
                    }
                }
                for (k, v) in &self.env_from {
                    if !env_name_ok(v) {
                        return Err((
                            key(&format!("env_from.{k}")),
                            format!("`{v}` is not an environment variable name"),
                        ));
                    }
                }
                for (k, list) in [
                    ("read_only", &self.read_only),
                    ("read_write", &self.read_write),
                ] {
                    if let Some(p) = list.iter().find(|p| !p.is_absolute()) {
                        return Err((key(k), format!("`{}` is not an absolute path", p.display())));
                    }
                    if let Some(p) = list.iter().find(|p| *p == Path::new("/")) {
                        return Err((
                            key(k),
                            format!("`{}` would give the server the whole machine", p.display()),
                        ));
                    }
                }
                if let Some(c) = &self.cwd
                    && !c.is_absolute()
                {
                    return Err((
                        key("cwd"),
                        format!("`{}` is not an absolute path", c.display()),
                    ));
                }
                if !(64..=65_536).contains(&self.max_memory_mib) {
                    return Err((key("max_memory_mib"), "must be 64 to 65536".into()));
                }
            }
            (None, Some(u)) => {
                let uri: http::Uri = u
                    .parse()
                    .map_err(|e| (key("url"), format!("`{u}` is not a URL: {e}")))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err((
                        key("url"),
                        format!("`{u}` must be an http:// or https:// URL with a host"),
                    ));
                }
                for (k, set) in [
                    ("args", !self.args.is_empty()),
                    ("env", !self.env.is_empty()),
                    ("env_from", !self.env_from.is_empty()),
                    ("cwd", self.cwd.is_some()),
                    ("read_only", !self.read_only.is_empty()),
                    ("read_write", !self.read_write.is_empty()),
                ] {
                    if set {
                        return Err((
                            key(k),
                            "is for a stdio server (`command`); this one is HTTP (`url`)".into(),
                        ));
                    }
                }
                for (table, h) in self.headers.keys().map(|h| ("headers", h)).chain(
                    self.headers_from_env
                        .keys()
                        .map(|h| ("headers_from_env", h)),
                ) {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return Err((key(table), format!("`{h}` is not a header name")));
                    }
                }
                for (h, v) in &self.headers {
                    if http::HeaderValue::from_str(v).is_err() {
                        return Err((
                            key(&format!("headers.{h}")),
                            "is not a valid header value".into(),
                        ));
                    }
                }
                for (h, v) in &self.headers_from_env {
                    if !env_name_ok(v) {
                        return Err((
                            key(&format!("headers_from_env.{h}")),
                            format!("`{v}` is not an environment variable name"),
                        ));
                    }
                }
            }
        }
        if !(1..=600).contains(&self.startup_timeout_secs) {
            return Err((key("startup_timeout_secs"), "must be 1 to 600".into()));
        }
        if !(1..=3600).contains(&self.call_timeout_secs) {
            return Err((key("call_timeout_secs"), "must be 1 to 3600".into()));
        }
        if !(1024..=16 << 20).contains(&self.max_result_bytes) {
            return Err((key("max_result_bytes"), "must be 1024 to 16777216".into()));
        }
        if let Some(t) = &self.tools
            && t.is_empty()
        {
            return Err((
                key("tools"),
                "is empty: list the server's tools to offer, or set enabled = false".into(),
            ));
        }
        Ok(())
    }
}

/// The system directories every stdio server may read (those that exist): programs,
/// libraries, the dynamic loader's cache, TLS roots and time zones. Not `/etc` as a
/// whole, not home directories.
pub const SYSTEM_READ: [&str; 16] = [
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/dev/urandom",
    "/dev/random",
];

/// The `PATH` a stdio server gets.
pub const SERVER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where a stdio server's program is: `command` as a path, or looked up in
/// [`SERVER_PATH`]. `Err` names the server and what to do.
pub fn resolve_command(name: &str, command: &str) -> Result<PathBuf, String> {
    let found = if command.contains('/') {
        let p = PathBuf::from(command);
        p.is_file().then_some(p)
    } else {
        SERVER_PATH
            .split(':')
            .map(|d| Path::new(d).join(command))
            .find(|p| p.is_file())
    };
    found.ok_or_else(|| {
        format!(
            "MCP server `{name}`: the command `{command}` does not exist{} (mcp.servers.{name}.command); give its absolute path",
            if command.contains('/') {
                String::new()
            } else {
                format!(" in {SERVER_PATH}")
            }
        )
    })
}

/// What a stdio server may touch, beyond its scratch directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
}

/// A stdio server's reach: the system directories, the installation its program
/// belongs to (`<prefix>` of `<prefix>/bin/<program>`, as written and resolved), the
/// directory of each argument that is an existing file (a script), `cwd`, and what
/// `read_only`/`read_write` list. A directory too wide to grant (`/`, `/home`, `/root`,
/// `/etc`, `/tmp`, `/var`, `/opt`, `/srv`, the home directory or one above it) is not:
/// only the program or script file in it is. Only paths that exist.
pub fn access(name: &str, s: &ServerConfig) -> Result<Access, String> {
    let command = s.command.as_deref().unwrap_or_default();
    let program = resolve_command(name, command)?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    // A directory too wide to grant for a program or a script in it: only the file is.
    let too_wide = |d: &Path| {
        [
            "/", "/home", "/root", "/etc", "/tmp", "/var", "/opt", "/srv",
        ]
        .iter()
        .any(|w| d == Path::new(w))
            || home.as_deref().is_some_and(|h| d == h || h.starts_with(d))
    };
    let grant = |file: &Path, dir: &Path| {
        if too_wide(dir) {
            file.to_path_buf()
        } else {
            dir.to_path_buf()
        }
    };
    let mut ro: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    let canonical = program.canonicalize().unwrap_or_else(|_| program.clone());
    for p in [&program, &canonical] {
        let Some(dir) = p.parent() else { continue };
        let prefix = dir
            .file_name()
            .filter(|n| *n == "bin")
            .and_then(|_| dir.parent())
            .filter(|pre| !too_wide(pre));
        ro.push(match prefix {
            Some(pre) => pre.to_path_buf(),
            None => grant(p, dir),
        });
    }
    for a in &s.args {
        let p = Path::new(a);
        if p.is_absolute()
            && p.is_file()
            && let Some(d) = p.parent()
        {
            ro.push(grant(p, d));
        }
    }
    ro.extend(s.cwd.iter().cloned());
    ro.extend(s.read_only.iter().cloned());
    let mut rw = s.read_write.clone();
    rw.push(PathBuf::from("/dev/null"));
    let existing = |v: Vec<PathBuf>| {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in v {
            if p.exists() && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    };
    Ok(Access {
        read_only: existing(ro),
        read_write: existing(rw),
    })
}

/// A stdio server's private directory (its HOME and TMPDIR): `<workspace>/.oxydra/mcp/<name>`.
pub fn scratch_dir(workspace: &Path, name: &str) -> PathBuf {
    workspace.join(".oxydra").join("mcp").join(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stdio(cmd: &str) -> ServerConfig {
        ServerConfig {
            command: Some(cmd.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_transports_are_checked() {
        let ok = stdio("python3");
        assert!(ok.validate("files").is_ok());
        for bad in ["", "a__b", "Files", "_x", &"x".repeat(33), "a b"] {
            let (k, m) = ok.validate(bad).unwrap_err();
            assert!(k.starts_with("mcp.servers."), "{k}");
            assert!(m.contains("server name"), "{m}");
        }
        let (k, m) = ServerConfig::default().validate("x").unwrap_err();
        assert_eq!(k, "mcp.servers.x");
        assert!(m.contains("`command`") && m.contains("`url`"), "{m}");
        let both = ServerConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            ..stdio("python3")
        };
        assert!(both.validate("x").unwrap_err().1.contains("not both"));
        let http = ServerConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            args: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(http.validate("x").unwrap_err().0, "mcp.servers.x.args");
        let ftp = ServerConfig {
            url: Some("ftp://example.com/".into()),
            ..Default::default()
        };
        assert!(ftp.validate("x").unwrap_err().1.contains("http://"));
        let mut env = stdio("python3");
        env.env.insert("HOME".into(), "/root".into());
        assert!(env.validate("x").unwrap_err().1.contains("set by the host"));
        let mut rel = stdio("python3");
        rel.read_only.push("data".into());
        assert_eq!(rel.validate("x").unwrap_err().0, "mcp.servers.x.read_only");
        let mut root = stdio("python3");
        root.read_write.push("/".into());
        assert!(root.validate("x").unwrap_err().1.contains("whole machine"));
    }

    #[test]
    fn a_missing_command_names_the_server_and_the_key() {
        let e = resolve_command("files", "no-such-program-oxydra").unwrap_err();
        assert!(e.contains("MCP server `files`"), "{e}");
        assert!(e.contains("mcp.servers.files.command"), "{e}");
        let e = resolve_command("files", "/nonexistent/bin/x").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn access_covers_the_program_and_its_script_but_not_home() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, "").unwrap();
        let mut s = stdio("/bin/sh");
        s.args = vec![script.display().to_string(), "--flag".into()];
        let a = access("x", &s).unwrap();
        assert!(a.read_only.contains(&dir.path().to_path_buf()), "{a:?}");
        assert!(a.read_only.iter().all(|p| p != Path::new("/")), "{a:?}");
        assert!(a.read_only.iter().all(|p| p != Path::new("/etc")), "{a:?}");
        assert_eq!(a.read_write, vec![PathBuf::from("/dev/null")]);
        // A script directly in /tmp (or home, /etc, …): the file, not the directory.
        let wide = std::env::temp_dir().join(format!("oxydra-mcp-test-{}.py", std::process::id()));
        std::fs::write(&wide, "").unwrap();
        let mut s = stdio("/bin/sh");
        s.args = vec![wide.display().to_string()];
        let a = access("x", &s);
        let _ = std::fs::remove_file(&wide);
        let a = a.unwrap();
        if std::env::temp_dir() == Path::new("/tmp") {
            assert!(a.read_only.contains(&wide), "{a:?}");
            assert!(!a.read_only.contains(&PathBuf::from("/tmp")), "{a:?}");
        }
    }
}
