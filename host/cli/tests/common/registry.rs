//! What the registry tests share: Debian's `docker-registry` on 127.0.0.1 (a random free
//! port, a temporary storage directory, killed when the test ends, a failing one
//! included), oras-py from PyPI in a cached venv, and a clean sandbox for the binary.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::reap::Reaped;

pub const ORAS_VERSION: &str = "0.2.43";
/// For htpasswd files (docker-registry takes bcrypt only).
pub const BCRYPT_VERSION: &str = "4.2.1";

pub fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/wasm-release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which builds the components first",
        p.display()
    );
    p
}

pub struct Registry {
    _child: Reaped,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host: String,
}

impl Registry {
    /// A plain-http registry on 127.0.0.1.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `tls = Some((cert, key))`, an https registry.
    pub fn start_with(tls: Option<(&Path, &Path)>) -> Registry {
        Registry::start_full(tls, "")
    }

    /// With `auth`: YAML lines of an `auth:` section (htpasswd).
    pub fn start_full(tls: Option<(&Path, &Path)>, auth: &str) -> Registry {
        assert!(
            Command::new("docker-registry")
                .arg("--version")
                .output()
                .is_ok(),
            "docker-registry is not installed: apt-get install docker-registry (.ci/run does)"
        );
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cfg = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            if let Some((cert, key)) = tls {
                cfg.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
            cfg.push_str(auth);
            std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut child = Reaped(child);
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry {
                        _child: child,
                        dir,
                        port,
                        host: format!("127.0.0.1:{port}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last}");
    }

    pub fn oci(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host)
    }

    /// The file the registry stores blob `digest` in (to tamper with it).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// GET over plain http, for checks the binary should not be trusted with.
    pub fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head[9..12].parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

/// The python of a venv holding oras-py (PyPI `oras`) and `bcrypt`, both pinned,
/// created once in `$CI_CACHE_DIR` (or `~/.cache/oxydra-ci`).
pub fn oras_python() -> PathBuf {
    // Tests of one binary run in threads: one of them creates the venv.
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    let base = std::env::var_os("CI_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/oxydra-ci")
        });
    let venv = base.join(format!("oras-{ORAS_VERSION}-bcrypt-{BCRYPT_VERSION}"));
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", "import oras.client, bcrypt"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&python) {
        return python;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!(".oras-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "installing oras-py {ORAS_VERSION} from PyPI failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&tmp));
    run(Command::new(tmp.join("bin/pip")).args([
        "install",
        "-q",
        &format!("oras=={ORAS_VERSION}"),
        &format!("bcrypt=={BCRYPT_VERSION}"),
    ]));
    // Another test process may have won the race; either venv works.
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(
        ok(&python),
        "oras-py is not importable from {}",
        python.display()
    );
    python
}

/// oras-py helpers: `push TARGET DIR FILE:TYPE [CONFIG:TYPE] [ANNOTATIONS.json]`,
/// `pull TARGET OUTDIR`.
const ORAS_SCRIPT: &str = r#"
import sys, os, oras.client
cmd, target = sys.argv[1], sys.argv[2]
c = oras.client.OrasClient(hostname=target.split("/")[0], insecure=True)
if cmd == "push":
    os.chdir(sys.argv[3])
    kw = {}
    if len(sys.argv) > 5 and sys.argv[5]:
        kw["manifest_config"] = sys.argv[5]
    if len(sys.argv) > 6 and sys.argv[6]:
        kw["annotation_file"] = sys.argv[6]
    r = c.push(target=target, files=[sys.argv[4]], **kw)
    assert r.status_code in (200, 201), r.status_code
elif cmd == "pull":
    print("\n".join(c.pull(target=target, outdir=sys.argv[3])))
"#;

/// An htpasswd line for `user` (bcrypt, as docker-registry requires).
pub fn htpasswd(user: &str, password: &str) -> String {
    let script = "import sys, bcrypt; print(sys.argv[1] + ':' + bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt(rounds=4)).decode())";
    let o = Command::new(oras_python())
        .args(["-c", script, user, password])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn oras(args: &[&str]) -> String {
    let o = Command::new(oras_python())
        .arg("-c")
        .arg(ORAS_SCRIPT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "oras {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A clean home, config directory and working directory for the binary.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

#[allow(clippy::new_without_default)]
impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
        std::fs::create_dir_all(dir.path().join("ws/shared")).unwrap();
        Sandbox { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config(&self, text: &str) {
        std::fs::write(self.path().join(".oxydra/agent.toml"), text).unwrap();
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }
    /// [`Sandbox::run`] with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_oxydra-host"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env("XDG_CACHE_HOME", self.path().join("home/.cache"))
            .current_dir(self.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .args(args)
            .output()
            .unwrap()
    }
    /// Run and require success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}{}", out(&o), err(&o));
        out(&o)
    }
    /// Run and require exit `code`; stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}{}",
            out(&o),
            err(&o)
        );
        err(&o)
    }
    pub fn lock(&self) -> Option<String> {
        std::fs::read_to_string(self.path().join(".oxydra/components.lock")).ok()
    }
    /// The stored components (`.oxydra/components/sha256/*.wasm`).
    pub fn stored(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path().join(".oxydra/components/sha256"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `pushed REF@sha256:…` → the manifest digest.
pub fn pushed_digest(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("pushed ")).unwrap();
    line.rsplit_once('@').unwrap().1.to_string()
}

/// `layer:  sha256:… (N bytes)` → the layer digest.
pub fn pushed_layer(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("layer:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn openssl(args: &[&str], dir: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", err(&o));
}
