//! The bundle manifest's `wit_version` is checked against the host's semver range.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::bundle::{self, BundleError};

fn manifest(wit_version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(bundle::MANIFEST),
        format!(r#"{{"wit_version": "{wit_version}", "tools": []}}"#),
    )
    .unwrap();
    dir
}

#[test]
fn a_bundle_inside_the_supported_range_is_read() {
    for v in ["0.1.0", "0.1.4"] {
        let dir = manifest(v);
        let m = bundle::read_manifest(dir.path()).unwrap();
        assert_eq!(m.wit_version, v);
    }
}

#[test]
fn a_bundle_built_for_another_wit_version_is_refused() {
    for v in ["0.2.0", "1.0.0", "0.1", "latest"] {
        let dir = manifest(v);
        let err = bundle::read_manifest(dir.path()).expect_err("refused");
        assert!(matches!(err, BundleError::WitVersion { .. }), "{v}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "the bundle was built against oxydra WIT `{v}`; this host supports oxydra WIT 0.1.x (>=0.1.0, <0.2.0)"
            )),
            "{msg}"
        );
    }
}
