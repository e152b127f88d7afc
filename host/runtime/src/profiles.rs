//! Capability profiles: what each WIT world grants, how a component's imports map to a
//! profile, and the WIT version range this host accepts.
//!
//! The host reads a component's imports and exports before instantiating it, derives the
//! narrowest profile that covers them, and refuses the component when that is more than
//! the operator granted. The linker of the granted profile is then the second key: it
//! holds nothing outside the grant.

use std::collections::BTreeSet;
use std::fmt;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The oxydra WIT versions this host supports, as a semver range: [`supported_wit`].
pub const WIT_RANGE: &str = ">=0.1.0, <0.2.0";
/// [`WIT_RANGE`] for messages.
pub const SUPPORTED_WIT: &str = "0.1.x (>=0.1.0, <0.2.0)";

/// The range of oxydra WIT versions this host supports (`>=0.1.0, <0.2.0`), built
/// without parsing so it cannot fail. Checked against every oxydra interface a component
/// imports or exports, and against a bundle manifest's `wit_version`.
pub fn supported_wit() -> semver::VersionReq {
    let at = |op, minor| semver::Comparator {
        op,
        major: 0,
        minor: Some(minor),
        patch: Some(0),
        pre: semver::Prerelease::EMPTY,
    };
    semver::VersionReq {
        comparators: vec![at(semver::Op::GreaterEq, 1), at(semver::Op::Less, 2)],
    }
}

/// Whether `version` (e.g. `0.1.0`) is a semver version inside [`supported_wit`].
pub fn wit_version_supported(version: &str) -> bool {
    semver::Version::parse(version).is_ok_and(|v| supported_wit().matches(&v))
}

/// How much a call can change the world (mirrors the WIT enum). Ordered: a later tier
/// can change more, so `max` of two tiers is the more careful one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    ReadOnly,
    SideEffecting,
    Privileged,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::ReadOnly => "read-only",
            Tier::SideEffecting => "side-effecting",
            Tier::Privileged => "privileged",
        }
    }
}

/// An oxydra capability interface a component may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    FsRead,
    FsWrite,
    VaultRead,
    /// `wasi:http/outgoing-handler` (with `wasi:http/types`), to one origin.
    HttpOutgoing,
    /// `oxydra:agent/delegate`: run a task as another agent.
    Delegate,
    /// `oxydra:tool/settings`: the operator's settings for the tool (no secrets).
    Settings,
    /// `oxydra:channel/host`: emit inbound messages, durable channel state, log.
    ChannelHost,
    /// `oxydra:scheduler/jobs`: the calling user's scheduled jobs.
    Jobs,
    /// `oxydra:channel/outbox`: send a file to the chat of the calling turn.
    Outbox,
    /// `oxydra:shell/exec`: run a command in the shell sidecar.
    Shell,
    /// `oxydra:memory/store`: the calling user's notes and conversations, and the
    /// calling session's scratchpad.
    Memory,
}

impl Capability {
    /// The interface named in messages; the rest is in [`crate::capabilities::CAPABILITIES`].
    pub fn interface(self) -> &'static str {
        crate::capabilities::row(self).interface
    }
}

/// What a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    Tool,
    Step,
    Provider,
    Channel,
}

impl ExportKind {
    fn interface(self) -> &'static str {
        match self {
            ExportKind::Tool => "oxydra:tool/tool",
            ExportKind::Step => "oxydra:tool/step",
            ExportKind::Provider => "oxydra:llm/provider",
            ExportKind::Channel => "oxydra:channel/channel",
        }
    }
}

/// A profile world of `oxydra:profiles`. Everything the host knows about a profile is
/// its row in [`PROFILES`]; the variant is only its name in config and manifests.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    FileReadOnly,
    FileReadWrite,
    VaultReadStep,
    VaultWriteStep,
    Delegation,
    LlmProvider,
    Web,
    ChatChannel,
    Scheduler,
    ChatMedia,
    Shell,
    Memory,
}

/// One profile as data: what it may import, what it exports, and the least careful
/// tier its components run as.
#[derive(Debug, Clone, Copy)]
pub struct ProfileRow {
    pub profile: Profile,
    /// The world's name in `wit/v0.1/profiles/profiles.wit` (and in config).
    pub name: &'static str,
    /// The oxydra (or wasi:http) interfaces a component granted this profile may import,
    /// on top of the WASI base every profile shares.
    pub capabilities: &'static [Capability],
    pub export: ExportKind,
    /// A component runs at least at this tier, whatever it declares: one that may write
    /// is never dispatched in parallel because it said "read-only".
    pub tier_floor: Tier,
}

/// The profile table, narrowest first (derivation takes the first row that fits), in
/// the order of the [`Profile`] variants (a test checks it).
pub const PROFILES: [ProfileRow; 12] = [
    ProfileRow {
        profile: Profile::FileReadOnly,
        name: "file-read-only",
        capabilities: &[Capability::FsRead],
        export: ExportKind::Tool,
        tier_floor: Tier::ReadOnly,
    },
    ProfileRow {
        profile: Profile::FileReadWrite,
        name: "file-read-write",
        capabilities: &[Capability::FsRead, Capability::FsWrite],
        export: ExportKind::Tool,
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::VaultReadStep,
        name: "vault-read-step",
        capabilities: &[Capability::VaultRead],
        export: ExportKind::Step,
        tier_floor: Tier::ReadOnly,
    },
    ProfileRow {
        profile: Profile::VaultWriteStep,
        name: "vault-write-step",
        capabilities: &[Capability::FsWrite],
        export: ExportKind::Step,
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::Delegation,
        name: "delegation",
        capabilities: &[Capability::Delegate],
        export: ExportKind::Tool,
        // The delegated agent runs its own tools, writers included.
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::LlmProvider,
        name: "llm-provider",
        capabilities: &[Capability::HttpOutgoing],
        export: ExportKind::Provider,
        tier_floor: Tier::ReadOnly,
    },
    ProfileRow {
        profile: Profile::Web,
        name: "web",
        // wasi:http through the host's egress policy (public addresses only, pinned
        // connections, redirects checked per hop), and the tool's settings.
        capabilities: &[Capability::HttpOutgoing, Capability::Settings],
        export: ExportKind::Tool,
        // It reads; it changes nothing in the workspace.
        tier_floor: Tier::ReadOnly,
    },
    ProfileRow {
        profile: Profile::ChatChannel,
        name: "chat-channel",
        // wasi:http to the channel's API origin only (credential substituted by the
        // host), and the channel host interface.
        capabilities: &[Capability::HttpOutgoing, Capability::ChannelHost],
        export: ExportKind::Channel,
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::Scheduler,
        name: "scheduler",
        // The calling user's jobs, scoped by the host to the turn's user and origin;
        // no files, no network.
        capabilities: &[Capability::Jobs],
        export: ExportKind::Tool,
        // A job runs the agent later, with its tools, writers included.
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::ChatMedia,
        name: "chat-media",
        // Read workspace files (not the vault) and send one to the chat of the
        // calling turn; the host picks the chat, the tool cannot name one.
        capabilities: &[Capability::FsRead, Capability::Outbox],
        export: ExportKind::Tool,
        // It sends something out of the workspace.
        tier_floor: Tier::SideEffecting,
    },
    ProfileRow {
        profile: Profile::Shell,
        name: "shell",
        // Commands in the shell sidecar (its own container: /shared and /tmp, no vault,
        // no keys, no network); nothing in this runtime.
        capabilities: &[Capability::Shell],
        export: ExportKind::Tool,
        // A command can do anything the sidecar allows.
        tier_floor: Tier::Privileged,
    },
    ProfileRow {
        profile: Profile::Memory,
        name: "memory",
        // The calling user's notes and conversations and the calling session's
        // scratchpad, scoped by the host; no files, no network.
        capabilities: &[Capability::Memory],
        export: ExportKind::Tool,
        // Like the scheduler's: a component of this profile can write memory whatever
        // tier it declares, so none runs in parallel with another call.
        tier_floor: Tier::SideEffecting,
    },
];

impl Profile {
    /// Narrowest first: derivation takes the first that fits.
    pub const ALL: [Profile; PROFILES.len()] = {
        let mut all = [Profile::FileReadOnly; PROFILES.len()];
        let mut i = 0;
        while i < PROFILES.len() {
            all[i] = PROFILES[i].profile;
            i += 1;
        }
        all
    };

    /// This profile's row of [`PROFILES`].
    pub fn row(self) -> &'static ProfileRow {
        static TABLE: [ProfileRow; PROFILES.len()] = PROFILES;
        // The table is in variant order (checked by a test); the search is the fallback
        // that keeps this total without a panic.
        match TABLE.get(self as usize) {
            Some(row) if row.profile == self => row,
            _ => TABLE
                .iter()
                .find(|r| r.profile == self)
                .unwrap_or(&TABLE[0]),
        }
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn parse(s: &str) -> Option<Profile> {
        PROFILES.iter().find(|r| r.name == s).map(|r| r.profile)
    }

    pub fn capabilities(self) -> &'static [Capability] {
        self.row().capabilities
    }

    pub fn export(self) -> ExportKind {
        self.row().export
    }

    /// The least careful tier a component granted this profile runs as.
    pub fn tier_floor(self) -> Tier {
        self.row().tier_floor
    }

    fn allowed_list(self) -> String {
        self.capabilities()
            .iter()
            .map(|c| c.interface())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a component was refused at load. Every message names the component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(
        "component `{component}` imports {interfaces}, which its grant `{grant}` does not include \
         (`{grant}` allows: {allowed}); grant a profile that includes it, or rebuild the component without it"
    )]
    NotGranted {
        component: String,
        interfaces: String,
        grant: Profile,
        allowed: String,
    },
    #[error("component `{component}` imports `{interface}`, which no Oxydra profile grants: {why}")]
    Forbidden {
        component: String,
        interface: String,
        why: &'static str,
    },
    #[error(
        "component `{component}` was built against `{found}`; this host supports oxydra WIT {SUPPORTED_WIT}: \
         rebuild it with oxydra-sdk 0.1"
    )]
    WitVersion { component: String, found: String },
    #[error("component `{component}` {problem}")]
    Exports { component: String, problem: String },
    #[error("component `{component}` is not a valid WebAssembly component: {message}")]
    Invalid { component: String, message: String },
    #[error("component `{component}` could not be linked: {message}")]
    Link { component: String, message: String },
    #[error(
        "component `{component}`: its sha256 is {actual} but the manifest says {expected}; \
         the file was changed after the build: rebuild with scripts/build.sh"
    )]
    Checksum {
        component: String,
        expected: String,
        actual: String,
    },
    #[error("component `{component}`: {message}")]
    Other { component: String, message: String },
}

/// What a component asks for, read from its type before it runs.
#[derive(Debug, Clone)]
pub struct Shape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub capabilities: BTreeSet<Capability>,
    pub export: ExportKind,
    /// Version of the `oxydra:tool` interface it exports, e.g. `0.1.0`.
    pub wit_version: String,
}

impl Shape {
    /// The narrowest profile that grants everything this component imports.
    pub fn derived_profile(&self) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| {
            p.export() == self.export
                && self
                    .capabilities
                    .iter()
                    .all(|c| p.capabilities().contains(c))
        })
    }

    /// Refuse the component if it needs more than `grant`.
    pub fn check_grant(&self, component: &str, grant: Profile) -> Result<(), LoadError> {
        let outside: Vec<String> = self
            .imports
            .iter()
            .filter(|name| capability_of(name).is_some_and(|c| !grant.capabilities().contains(&c)))
            .map(|n| format!("`{n}`"))
            .collect();
        if !outside.is_empty() {
            return Err(LoadError::NotGranted {
                component: component.to_string(),
                interfaces: outside.join(", "),
                grant,
                allowed: grant.allowed_list(),
            });
        }
        if grant.export() != self.export {
            return Err(LoadError::Exports {
                component: component.to_string(),
                problem: format!(
                    "exports {}, but its grant `{grant}` is for components that export {}",
                    self.export.interface(),
                    grant.export().interface()
                ),
            });
        }
        Ok(())
    }
}

/// `ns:pkg/iface@version` → (`ns:pkg/iface`, version).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn capability_of(name: &str) -> Option<Capability> {
    crate::capabilities::of_import(split_version(name).0)
}

/// The harmless WASI that Rust's std imports; linked with a locked-down context.
fn is_base_wasi(unversioned: &str) -> bool {
    let Some(rest) = unversioned.strip_prefix("wasi:") else {
        return false;
    };
    let (pkg, iface) = rest.split_once('/').unwrap_or((rest, ""));
    match pkg {
        "io" => matches!(iface, "error" | "poll" | "streams"),
        "clocks" => matches!(iface, "wall-clock" | "monotonic-clock"),
        "random" => matches!(iface, "random" | "insecure" | "insecure-seed"),
        "cli" => matches!(
            iface,
            "environment"
                | "exit"
                | "stdin"
                | "stdout"
                | "stderr"
                | "terminal-input"
                | "terminal-output"
                | "terminal-stdin"
                | "terminal-stdout"
                | "terminal-stderr"
        ),
        _ => false,
    }
}

fn check_oxydra_version(component: &str, name: &str) -> Result<(), LoadError> {
    match split_version(name).1 {
        Some(v) if wit_version_supported(v) => Ok(()),
        _ => Err(LoadError::WitVersion {
            component: component.to_string(),
            found: name.to_string(),
        }),
    }
}

/// Read a component's imports and exports and classify them.
pub fn inspect(
    engine: &Engine,
    component_name: &str,
    component: &Component,
) -> Result<Shape, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    classify(component_name, imports, exports)
}

/// Classify import and export names: what [`inspect`] does once it has read them from a
/// compiled component. Also used on names a component only *declares* (an OCI
/// artifact's config), to show the profile it asks for before its bytes are fetched.
pub fn classify(
    component_name: &str,
    imports: Vec<String>,
    exports: Vec<String>,
) -> Result<Shape, LoadError> {
    // Exports first: they carry the WIT version the component was built against.
    let mut export = None;
    let mut wit_version = String::new();
    for name in &exports {
        let (unversioned, version) = split_version(name);
        let kind = match unversioned {
            "oxydra:tool/tool" => ExportKind::Tool,
            "oxydra:tool/step" => ExportKind::Step,
            "oxydra:llm/provider" => ExportKind::Provider,
            "oxydra:channel/channel" => ExportKind::Channel,
            _ if unversioned.starts_with("oxydra:") => {
                check_oxydra_version(component_name, name)?;
                continue;
            }
            _ => continue,
        };
        check_oxydra_version(component_name, name)?;
        if export.is_some() {
            return Err(LoadError::Exports {
                component: component_name.to_string(),
                problem: "exports more than one of oxydra:tool/tool, oxydra:tool/step, oxydra:llm/provider and oxydra:channel/channel; a component is one of them".into(),
            });
        }
        export = Some(kind);
        wit_version = version.unwrap_or_default().to_string();
    }
    let Some(export) = export else {
        return Err(LoadError::Exports {
            component: component_name.to_string(),
            problem: format!(
                "exports none of oxydra:tool/tool, oxydra:tool/step, oxydra:llm/provider (it exports: {}); build it with oxydra-sdk's export_tool!, export_step! or export_provider!",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ),
        });
    };

    let mut capabilities = BTreeSet::new();
    for name in &imports {
        let unversioned = split_version(name).0;
        if is_base_wasi(unversioned) {
            continue;
        }
        let forbidden = |why| LoadError::Forbidden {
            component: component_name.to_string(),
            interface: name.clone(),
            why,
        };
        if unversioned.starts_with("wasi:filesystem/") {
            return Err(forbidden(
                "tools reach files only through oxydra:fs/read and oxydra:fs/write",
            ));
        }
        if unversioned.starts_with("wasi:sockets/") {
            return Err(forbidden(
                "tools get no sockets; network access comes through a web profile",
            ));
        }
        if let Some(cap) = capability_of(name) {
            if unversioned.starts_with("oxydra:") {
                check_oxydra_version(component_name, name)?;
            }
            capabilities.insert(cap);
            continue;
        }
        match unversioned {
            // Type-only interfaces: no functions, no authority.
            "oxydra:fs/types"
            | "oxydra:tool/types"
            | "oxydra:llm/types"
            | "oxydra:channel/types" => check_oxydra_version(component_name, name)?,
            _ if unversioned.starts_with("oxydra:") => {
                check_oxydra_version(component_name, name)?;
                return Err(forbidden("it is not an interface this host provides"));
            }
            _ => return Err(forbidden("it is not an interface this host provides")),
        }
    }
    Ok(Shape {
        imports,
        exports,
        capabilities,
        export,
        wit_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_variant_order_and_names_are_unique() {
        for (i, row) in PROFILES.iter().enumerate() {
            assert_eq!(row.profile as usize, i, "{}", row.name);
            assert_eq!(Profile::parse(row.name), Some(row.profile));
        }
    }

    #[test]
    fn wit_versions_are_a_semver_range() {
        for ok in ["0.1.0", "0.1.7", "0.1.12"] {
            assert!(wit_version_supported(ok), "{ok}");
        }
        for no in ["0.0.9", "0.2.0", "0.9.0", "1.0.0", "0.1", "0.1.0-rc.1", "x"] {
            assert!(!wit_version_supported(no), "{no}");
        }
    }
}
