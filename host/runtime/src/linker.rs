//! The tool kind's linkers, one per tool profile: the WASI base every profile shares
//! (never wasi:filesystem or wasi:sockets), the type-only interfaces, and exactly the
//! capabilities of the profile's row, each added by its row in the capability table.

use crate::bindings::imports::oxydra::tool;
use crate::capabilities;
use crate::kernel::add_wasi_base;
use crate::profiles::Profile;
use crate::state::CallState;
use std::collections::HashMap;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

fn build(engine: &Engine, profile: Profile) -> wasmtime::Result<Linker<CallState>> {
    let mut l = Linker::new(engine);
    add_wasi_base(&mut l)?;
    // Type-only interfaces: no function, no authority.
    tool::types::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?;
    capabilities::fs::add_types_to_linker(&mut l)?;
    for cap in profile.capabilities() {
        if let Some(link) = capabilities::row(*cap).link {
            link(&mut l)?;
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
            if matches!(
                p.export(),
                crate::profiles::ExportKind::Tool | crate::profiles::ExportKind::Step
            ) {
                map.insert(p, build(engine, p)?);
            }
        }
        Ok(Linkers(map))
    }

    pub fn get(&self, profile: Profile) -> Option<&Linker<CallState>> {
        self.0.get(&profile)
    }
}
