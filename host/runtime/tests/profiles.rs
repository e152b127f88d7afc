//! Every profile has a negative test: a real component importing outside its world is
//! refused at load, before it runs, with the exact message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::{host, spec, wasm};
use oxydra_runtime::{ComponentSpec, Limits, LoadError, Profile, Tier, ToolSpec};

fn refused(s: &ToolSpec) -> String {
    match host().load(s) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("`{}` was loaded but must be refused", s.name),
    }
}

#[test]
fn file_read_only_refuses_a_component_that_writes() {
    let msg = refused(&spec("fx_ro_writes", "fx-ro-writes", Profile::FileReadOnly));
    assert_eq!(
        msg,
        "component `fx_ro_writes` imports `oxydra:fs/write@0.1.0`, which its grant `file-read-only` does not \
         include (`file-read-only` allows: oxydra:fs/read); grant a profile that includes it, or rebuild the \
         component without it"
    );
}

#[test]
fn file_read_write_refuses_a_component_that_reads_the_vault() {
    let msg = refused(&spec("fx_rw_vault", "fx-rw-vault", Profile::FileReadWrite));
    assert_eq!(
        msg,
        "component `fx_rw_vault` imports `oxydra:vault/read@0.1.0`, which its grant `file-read-write` does not \
         include (`file-read-write` allows: oxydra:fs/read, oxydra:fs/write); grant a profile that includes it, \
         or rebuild the component without it"
    );
}

#[test]
fn vault_read_step_refuses_a_step_that_also_writes() {
    let s = ToolSpec {
        name: "fx_step_both".into(),
        components: vec![
            ComponentSpec {
                name: "fx_step_both#step1".into(),
                wasm: wasm("fx-step-both"),
                grant: Profile::VaultReadStep,
                expected_sha256: None,
            },
            ComponentSpec {
                name: "fx_step_both#step2".into(),
                wasm: wasm("oxydra-tool-vault-copyto-write"),
                grant: Profile::VaultWriteStep,
                expected_sha256: None,
            },
        ],
        limits: Limits::default(),
        web: Default::default(),
    };
    assert_eq!(
        refused(&s),
        "component `fx_step_both#step1` imports `oxydra:fs/write@0.1.0`, which its grant `vault-read-step` does \
         not include (`vault-read-step` allows: oxydra:vault/read); grant a profile that includes it, or rebuild \
         the component without it"
    );
}

#[test]
fn vault_write_step_refuses_a_step_that_also_reads_the_vault() {
    let s = ToolSpec {
        name: "fx_step_both".into(),
        components: vec![
            ComponentSpec {
                name: "fx_step_both#step1".into(),
                wasm: wasm("oxydra-tool-vault-copyto-read"),
                grant: Profile::VaultReadStep,
                expected_sha256: None,
            },
            ComponentSpec {
                name: "fx_step_both#step2".into(),
                wasm: wasm("fx-step-both"),
                grant: Profile::VaultWriteStep,
                expected_sha256: None,
            },
        ],
        limits: Limits::default(),
        web: Default::default(),
    };
    assert_eq!(
        refused(&s),
        "component `fx_step_both#step2` imports `oxydra:vault/read@0.1.0`, which its grant `vault-write-step` does \
         not include (`vault-write-step` allows: oxydra:fs/write); grant a profile that includes it, or rebuild the \
         component without it"
    );
}

#[test]
fn wasi_filesystem_is_in_no_profile() {
    for grant in [Profile::FileReadOnly, Profile::FileReadWrite] {
        // The WASI patch version depends on which bindings the build linked (std's
        // 0.2.6, or 0.2.12 when the SDK's llm feature is unified in): compare without it.
        let msg = refused(&spec("fx_wasi_fs", "fx-wasi-fs", grant));
        let at = msg.find("@0.2.").expect("a WASI 0.2 version");
        let end = at + msg[at..].find('`').expect("closing backtick");
        let normalised = format!("{}@0.2.x{}", &msg[..at], &msg[end..]);
        assert_eq!(
            normalised,
            "component `fx_wasi_fs` imports `wasi:filesystem/types@0.2.x`, which no Oxydra profile grants: tools \
             reach files only through oxydra:fs/read and oxydra:fs/write"
        );
    }
}

#[test]
fn a_component_built_for_another_wit_version_is_refused() {
    assert_eq!(
        refused(&spec(
            "fx_future_wit",
            "fx-future-wit",
            Profile::FileReadOnly
        )),
        "component `fx_future_wit` was built against `oxydra:tool/tool@0.9.0`; this host supports oxydra WIT 0.1.x \
         (>=0.1.0, <0.2.0): rebuild it with oxydra-sdk 0.1"
    );
}

#[test]
fn a_tool_cannot_be_granted_a_step_profile() {
    let msg = refused(&spec(
        "file_read",
        "oxydra-tool-file-read",
        Profile::VaultReadStep,
    ));
    assert!(
        msg.contains("`oxydra:fs/read@0.1.0`, which its grant `vault-read-step` does not include"),
        "{msg}"
    );
}

#[test]
fn bundled_tools_derive_their_narrowest_profile() {
    let h = host();
    for (krate, profile) in [
        ("oxydra-tool-file-read", Profile::FileReadOnly),
        ("oxydra-tool-file-list", Profile::FileReadOnly),
        ("oxydra-tool-file-search", Profile::FileReadOnly),
        ("oxydra-tool-file-write", Profile::FileReadWrite),
        ("oxydra-tool-file-edit", Profile::FileReadWrite),
        ("oxydra-tool-file-delete", Profile::FileReadWrite),
        ("oxydra-tool-vault-copyto-read", Profile::VaultReadStep),
        ("oxydra-tool-vault-copyto-write", Profile::VaultWriteStep),
    ] {
        let (shape, _) = h.inspect(krate, &wasm(krate)).unwrap();
        assert_eq!(
            shape.derived_profile(),
            Some(profile),
            "{krate}: {:?}",
            shape.imports
        );
        assert_eq!(shape.wit_version, "0.1.0");
        assert!(
            !shape
                .imports
                .iter()
                .any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets"))
        );
    }
    // file_write never reads, so it does not even import oxydra:fs/read
    let (shape, _) = h.inspect("w", &wasm("oxydra-tool-file-write")).unwrap();
    assert!(
        !shape
            .imports
            .iter()
            .any(|i| i.starts_with("oxydra:fs/read")),
        "{:?}",
        shape.imports
    );
}

#[test]
fn a_tampered_component_is_refused_by_checksum() {
    let mut s = spec("file_read", "oxydra-tool-file-read", Profile::FileReadOnly);
    s.components[0].expected_sha256 = Some("00".repeat(32));
    let err = host().load(&s).err().expect("refused");
    assert!(matches!(err, LoadError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("rebuild with scripts/build.sh"));
}

#[test]
fn garbage_is_not_a_component() {
    let mut s = spec("file_read", "oxydra-tool-file-read", Profile::FileReadOnly);
    s.components[0].wasm = std::sync::Arc::new(b"\0asm not really".to_vec());
    let err = host().load(&s).err().expect("refused");
    assert!(
        err.to_string()
            .starts_with("component `file_read` is not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn a_tool_runs_at_least_at_its_profiles_tier_floor() {
    let h = host();
    // fx_probe declares read-only and imports no oxydra capability.
    let tier = |grant| {
        h.load(&spec("fx_probe", "fx-probe", grant))
            .unwrap()
            .descriptor
            .tier
    };
    assert_eq!(tier(Profile::FileReadOnly), Tier::ReadOnly);
    // Granted a profile that may write (or delegate), it is never treated as read-only,
    // so it is never dispatched in parallel.
    assert_eq!(tier(Profile::FileReadWrite), Tier::SideEffecting);
    assert_eq!(tier(Profile::Delegation), Tier::SideEffecting);
    // A component that really imports oxydra:fs/write is side-effecting too.
    let writes = h
        .load(&spec(
            "fx_ro_writes",
            "fx-ro-writes",
            Profile::FileReadWrite,
        ))
        .unwrap();
    assert_eq!(writes.descriptor.tier, Tier::SideEffecting);
}
