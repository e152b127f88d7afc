//! Host implementations of the capabilities a component may import, one module each,
//! and the capability table: which import names are a capability, and how a tool
//! linker gets it.
//!
//! Each module follows wasmtime-wasi's ctx/view pattern: a per-call context type that
//! implements the generated host traits (`paths::WorkspaceCtx` for `fs` and `vault`,
//! `delegate::DelegateCtx`, `jobs::JobsCtx`, `memory::MemoryCtx`), a view trait the
//! store data implements to hand it out, and `add_to_linker` functions generic over
//! that view.

pub mod delegate;
pub mod egress;
pub mod fs;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod outbox;
pub mod paths;
pub mod shell;
pub mod vault;
pub mod web;

use crate::profiles::Capability;
use crate::state::CallState;
use wasmtime::component::Linker;

/// Adds one capability's interfaces to a tool linker.
pub type Link = fn(&mut Linker<CallState>) -> wasmtime::Result<()>;

/// One capability as data.
#[derive(Clone, Copy)]
pub struct CapabilityRow {
    pub capability: Capability,
    /// The interface named in messages (`... allows: oxydra:fs/read`).
    pub interface: &'static str,
    /// Every unversioned import name that is this capability.
    pub imports: &'static [&'static str],
    /// How a tool linker gets it; `None` for a capability of another kind's linker.
    pub link: Option<Link>,
}

/// The capability table, in the order of the [`Capability`] variants (a test checks it).
pub const CAPABILITIES: [CapabilityRow; 11] = [
    CapabilityRow {
        capability: Capability::FsRead,
        interface: "oxydra:fs/read",
        imports: &["oxydra:fs/read"],
        link: Some(fs::add_read_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::FsWrite,
        interface: "oxydra:fs/write",
        imports: &["oxydra:fs/write"],
        link: Some(fs::add_write_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::VaultRead,
        interface: "oxydra:vault/read",
        imports: &["oxydra:vault/read"],
        link: Some(vault::add_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::HttpOutgoing,
        interface: "wasi:http/outgoing-handler",
        imports: &["wasi:http/outgoing-handler", "wasi:http/types"],
        // A tool linker's wasi:http goes through the web egress policy; the provider
        // kind links its own (one origin, llm.rs).
        link: Some(web::add_http_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::Delegate,
        interface: "oxydra:agent/delegate",
        imports: &["oxydra:agent/delegate"],
        link: Some(delegate::add_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::Settings,
        interface: "oxydra:tool/settings",
        imports: &["oxydra:tool/settings"],
        link: Some(web::add_settings_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::ChannelHost,
        interface: "oxydra:channel/host",
        imports: &["oxydra:channel/host"],
        // The channel kind links it itself (channels.rs).
        link: None,
    },
    CapabilityRow {
        capability: Capability::Jobs,
        interface: "oxydra:scheduler/jobs",
        imports: &["oxydra:scheduler/jobs"],
        link: Some(jobs::add_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::Outbox,
        interface: "oxydra:channel/outbox",
        imports: &["oxydra:channel/outbox"],
        link: Some(outbox::add_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::Shell,
        interface: "oxydra:shell/exec",
        imports: &["oxydra:shell/exec"],
        link: Some(shell::add_to_linker::<CallState>),
    },
    CapabilityRow {
        capability: Capability::Memory,
        interface: "oxydra:memory/store",
        imports: &["oxydra:memory/store"],
        link: Some(memory::add_to_linker::<CallState>),
    },
];

/// `capability`'s row of [`CAPABILITIES`].
pub fn row(capability: Capability) -> &'static CapabilityRow {
    static TABLE: [CapabilityRow; CAPABILITIES.len()] = CAPABILITIES;
    match TABLE.get(capability as usize) {
        Some(row) if row.capability == capability => row,
        _ => TABLE
            .iter()
            .find(|r| r.capability == capability)
            .unwrap_or(&TABLE[0]),
    }
}

/// The capability an unversioned import name is, if any.
pub fn of_import(unversioned: &str) -> Option<Capability> {
    CAPABILITIES
        .iter()
        .find(|r| r.imports.contains(&unversioned))
        .map(|r| r.capability)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_variant_order() {
        for (i, r) in CAPABILITIES.iter().enumerate() {
            assert_eq!(r.capability as usize, i, "{}", r.interface);
            assert_eq!(row(r.capability).interface, r.interface);
        }
    }
}
