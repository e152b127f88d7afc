//! The SDK crates carry their own copy of the WIT they bind (so they build from a
//! packaged `.crate`, outside this repository). The copies must stay byte-identical to
//! the repository's `wit/`, the WIT the host implements; this test fails when they drift.
//! Fix a failure by copying again, e.g. `cp wit/v0.1/tool/*.wit sdk/oxydra-sdk/wit/v0.1/tool/`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// (crate directory relative to the repository root, WIT packages it carries).
const COPIES: &[(&str, &[&str])] = &[
    (
        "sdk/oxydra-sdk",
        &[
            "agent",
            "channel",
            "fs",
            "llm",
            "memory",
            "scheduler",
            "sdk",
            "shell",
            "tool",
            "vault",
        ],
    ),
    ("sdk/oxydra-sdk-macros", &["channel", "llm", "tool"]),
];

fn repo_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Outside the repository (a packaged crate) there is nothing to compare against.
    root.join("wit/v0.1").is_dir().then_some(root)
}

/// Every file under `dir`, by path relative to `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn sdk_wit_copies_match_the_repository() {
    let Some(root) = repo_root() else {
        eprintln!("no repository wit/ beside this crate: nothing to compare");
        return;
    };
    let mut problems = Vec::new();
    for (krate, packages) in COPIES {
        let copy_root = root.join(krate).join("wit/v0.1");
        // No package beyond the listed ones (a stale leftover would go unnoticed).
        let mut present: Vec<String> = fs::read_dir(&copy_root)
            .unwrap_or_else(|e| panic!("{}: {e}", copy_root.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        if present != *packages {
            problems.push(format!(
                "{krate}/wit/v0.1 holds {present:?}, expected {packages:?}"
            ));
        }
        for pkg in *packages {
            let ours = files(&copy_root.join(pkg));
            let theirs = files(&root.join("wit/v0.1").join(pkg));
            if ours.is_empty() {
                problems.push(format!("{krate}/wit/v0.1/{pkg} is empty"));
            }
            for (rel, bytes) in &theirs {
                match ours.get(rel) {
                    None => problems.push(format!(
                        "{krate}/wit/v0.1/{pkg}/{} is missing",
                        rel.display()
                    )),
                    Some(b) if b != bytes => problems.push(format!(
                        "{krate}/wit/v0.1/{pkg}/{} differs from wit/v0.1/{pkg}/{}",
                        rel.display(),
                        rel.display()
                    )),
                    Some(_) => {}
                }
            }
            for rel in ours.keys().filter(|r| !theirs.contains_key(*r)) {
                problems.push(format!(
                    "{krate}/wit/v0.1/{pkg}/{} is not in wit/v0.1/{pkg}",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "SDK WIT copies drifted from wit/:\n  {}",
        problems.join("\n  ")
    );
}
