//! The MCP servers the tests run: `tests/fixtures/mcp/server.py` (the official `mcp` SDK
//! from PyPI) with the python of a cached venv holding the pinned SDK.
//! `server.py stdio`, `server.py http PORT_FILE` (writes its port once listening, serves
//! `http://127.0.0.1:PORT/mcp`), `server.py garbage` (never speaks JSON-RPC).
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MCP_VERSION: &str = "2.3.0";

/// A python that can import the pinned `mcp`, created once per cache directory.
pub fn mcp_python() -> PathBuf {
    // Tests of one binary run in threads: one of them creates the venv.
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

/// The absolute path of the test server script.
pub fn server_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mcp/server.py")
        .canonicalize()
        .unwrap()
}

fn make_venv() -> PathBuf {
    let base = std::env::var_os("CI_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/oxydra-ci")
        });
    let venv = base.join(format!("mcp-{MCP_VERSION}"));
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args([
                "-c",
                "import mcp.server.lowlevel, mcp.server.stdio, uvicorn",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&python) {
        return python;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!(".mcp-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |c: &mut Command| {
        let o = c.output().unwrap();
        if !o.status.success() {
            panic!(
                "installing mcp {MCP_VERSION} from PyPI failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&tmp));
    run(Command::new(tmp.join("bin/pip")).args(["install", "-q", &format!("mcp=={MCP_VERSION}")]));
    // Another test process may have won the race; either venv works.
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(
        ok(&python),
        "mcp is not importable from {}",
        python.display()
    );
    python
}
