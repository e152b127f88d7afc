//! One `Linker` per profile, each built from per-interface `add_to_linker` calls: the
//! WASI base every profile shares (never wasi:filesystem or wasi:sockets) plus exactly
//! the oxydra interfaces of that profile.

use crate::bindings::file_read_write::oxydra::{fs, tool};
use crate::bindings::vault_read_step::oxydra::vault;
use crate::profiles::{Capability, Profile};
use crate::state::CallState;
use std::collections::HashMap;
use wasmtime::Engine;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
use wasmtime_wasi::random::WasiRandom;

struct HasIo;
impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// wasi:io, wasi:clocks, wasi:random and wasi:cli (empty environment, closed stdin,
/// captured stdout/stderr): what Rust's std imports even in a tool that never uses it.
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

fn build(engine: &Engine, profile: Profile) -> wasmtime::Result<Linker<CallState>> {
    let mut l = Linker::new(engine);
    add_wasi_base(&mut l)?;
    tool::types::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?;
    let caps = profile.capabilities();
    if caps
        .iter()
        .any(|c| matches!(c, Capability::FsRead | Capability::FsWrite))
    {
        fs::types::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?;
    }
    for cap in caps {
        match cap {
            Capability::FsRead => {
                fs::read::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?
            }
            Capability::FsWrite => {
                fs::write::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?
            }
            Capability::VaultRead => {
                vault::read::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?
            }
            Capability::Delegate => {
                crate::bindings::delegation::oxydra::agent::delegate::add_to_linker::<
                    CallState,
                    HasSelf<CallState>,
                >(&mut l, |s| s)?
            }
            // Tools get no HTTP; providers have their own linker (llm.rs).
            Capability::HttpOutgoing => {}
        }
    }
    Ok(l)
}

/// The linkers of every profile, built once per engine.
pub struct Linkers(HashMap<Profile, Linker<CallState>>);

impl Linkers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Linkers> {
        let mut map = HashMap::new();
        for p in Profile::ALL {
            if p.export() != crate::profiles::ExportKind::Provider {
                map.insert(p, build(engine, p)?);
            }
        }
        Ok(Linkers(map))
    }

    pub fn get(&self, profile: Profile) -> Option<&Linker<CallState>> {
        self.0.get(&profile)
    }
}
