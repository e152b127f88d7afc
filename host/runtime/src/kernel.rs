//! The core every kind of component (tools, providers) is loaded and run through: the
//! engine, the compiled-component cache, the one checked load, the WASI base all kinds
//! link, the store recipe, and the one trap classifier.
//!
//! Kinds sit on top: [`crate::tools`] and [`crate::llm`] each own their linker and their
//! store state, and turn a [`Stop`] into their own error type. Nothing here knows a kind.

use crate::cache::{CacheOutcome, ComponentCache};
use crate::profiles::{self, LoadError, Profile, Shape};
use crate::state::CallLimiter;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
use wasmtime_wasi::random::WasiRandom;

/// One component to load: its bytes, the profile the operator grants it, its limits.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// Name used in messages (the tool name, or `tool#step`).
    pub name: String,
    pub wasm: Arc<Vec<u8>>,
    pub grant: Profile,
    pub expected_sha256: Option<String>,
}

/// What loading one component did (for `tool list -v` and the benchmark).
#[derive(Debug, Clone)]
pub struct ComponentReport {
    pub name: String,
    pub sha256: String,
    pub cache: CacheOutcome,
    pub shape: Shape,
    pub grant: Profile,
}

/// A component that passed every check of [`Core::load`].
pub(crate) struct Checked {
    pub component: Component,
    pub report: ComponentReport,
}

/// Store data every kind keeps: the limiter the core attaches to each store.
pub(crate) trait Limited: 'static {
    fn limiter(&mut self) -> &mut CallLimiter;
}

pub(crate) struct Core {
    engine: Engine,
    cache: ComponentCache,
}

impl Core {
    pub fn new(engine: Engine, cache_dir: Option<PathBuf>) -> Core {
        let cache = ComponentCache::new(&engine, cache_dir);
        Core { engine, cache }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn compile_hashed(
        &self,
        name: &str,
        wasm: &[u8],
        digest: [u8; 32],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        self.cache
            .load_hashed(&self.engine, wasm, digest)
            .map_err(|e| LoadError::Invalid {
                component: name.to_string(),
                message: format!("{e:#}"),
            })
    }

    /// Compile (or fetch from the cache), without any check.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<(Component, CacheOutcome), LoadError> {
        self.compile_hashed(name, wasm, Sha256::digest(wasm).into())
    }

    /// The one checked load: bytes → checksum → compile/cache → inspect (WIT version,
    /// forbidden imports) → grant check. Every kind loads through here.
    pub fn load(&self, spec: &ComponentSpec) -> Result<Checked, LoadError> {
        let digest: [u8; 32] = Sha256::digest(spec.wasm.as_slice()).into();
        let sha256 = hex::encode(digest);
        if let Some(expected) = &spec.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::Checksum {
                component: spec.name.clone(),
                expected: expected.clone(),
                actual: sha256,
            });
        }
        let (component, cache) = self.compile_hashed(&spec.name, &spec.wasm, digest)?;
        let shape = profiles::inspect(&self.engine, &spec.name, &component)?;
        shape.check_grant(&spec.name, spec.grant)?;
        Ok(Checked {
            component,
            report: ComponentReport {
                name: spec.name.clone(),
                sha256,
                cache,
                shape,
                grant: spec.grant,
            },
        })
    }

    /// A fresh store for one call: the limiter attached and the epoch deadline set
    /// (before instantiation: with epochs on, a zero deadline traps at once).
    pub fn store<T: Limited>(&self, data: T, deadline_ticks: u64) -> Store<T> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(deadline_ticks);
        store
    }
}

/// Why a guest stopped without returning, whatever its kind.
#[derive(Debug)]
pub(crate) enum Stop {
    /// It tried to grow its memory to `wanted_bytes`, past its limit.
    Memory { wanted_bytes: usize },
    /// Its epoch deadline passed.
    Deadline,
    /// It trapped (a panic, `unreachable`, stack overflow, ...).
    Trap(Trap),
    /// The host failed it (instantiation, a host function's error).
    Host,
}

/// The one trap classifier. The limiter is consulted first: a guest that hit its memory
/// limit usually aborts with a bare `unreachable`, which is not the reason to report.
pub(crate) fn classify(e: &wasmtime::Error, limiter: &CallLimiter) -> Stop {
    if let Some(wanted_bytes) = limiter.memory_hit {
        return Stop::Memory { wanted_bytes };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Stop::Deadline,
        Some(trap) => Stop::Trap(*trap),
        None => Stop::Host,
    }
}

/// What a guest said on stderr before it stopped, as `": said"` (empty if nothing).
pub(crate) fn said(stderr: &[u8]) -> String {
    let said = String::from_utf8_lossy(stderr).trim().to_string();
    if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    }
}

struct HasIo;
impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// wasi:io, wasi:clocks, wasi:random and wasi:cli (empty environment, closed stdin,
/// captured stdout/stderr): what Rust's std imports even in a component that never uses
/// it. Every kind's linker starts with this.
pub(crate) fn add_wasi_base<T: WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    sync::io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    sync::io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, |t| {
        use wasmtime_wasi::clocks::WasiClocksView;
        t.clocks()
    })?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, |t| {
        use wasmtime_wasi::clocks::WasiClocksView;
        t.clocks()
    })?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    use wasmtime_wasi::cli::WasiCliView;
    cli::exit::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::environment::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, |t| t.cli())?;
    Ok(())
}
