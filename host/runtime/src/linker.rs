//! One `Linker` per profile, each built from per-interface `add_to_linker` calls: the
//! WASI base every profile shares (never wasi:filesystem or wasi:sockets) plus exactly
//! the oxydra interfaces of that profile.

use crate::bindings::imports::oxydra::{agent, fs, tool, vault};
use crate::kernel::add_wasi_base;
use crate::profiles::{Capability, Profile};
use crate::state::CallState;
use std::collections::HashMap;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

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
                agent::delegate::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?
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
