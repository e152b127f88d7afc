//! `oxydra-host component` against a real OCI registry: Debian's `docker-registry` on
//! 127.0.0.1, started per test. Install, list, run, update, remove; every refusal the
//! trust model promises; the terminal's confirmation; interop with oras. Signatures,
//! TLS and registry auth are in `registry_trust.rs`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/reap.rs"]
mod reap;
#[path = "../../runtime/tests/common/server.rs"]
mod server;
#[path = "common/registry.rs"]
mod support;

use std::process::Command;
use support::{Registry, Sandbox, fixture, oras, path, pushed_digest, pushed_layer};

#[test]
fn install_list_call_update_and_remove_from_a_registry() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let v1 = reg.oci("acme/word-count:0.1.0");
    let pushed = s.ok(&["component", "push", path(&fixture("word_count")), &v1]);
    let manifest = pushed_digest(&pushed);
    let layer = pushed_layer(&pushed);
    assert!(
        pushed.contains("package acme:word-count, version 0.1.0"),
        "{pushed}"
    );

    // No grant, no terminal: an error that says what to pass, and nothing written.
    let e = s.fails(2, &["component", "install", &v1]);
    assert!(
        e.contains("word_count declares profile `file-read-only`, and no grant was given: pass --grant file-read-only"),
        "{e}"
    );
    assert!(s.lock().is_none() && s.stored().is_empty());

    let o = s.ok(&["component", "install", &v1, "--grant", "file-read-only"]);
    assert!(o.contains("declares:    profile file-read-only"), "{o}");
    assert!(o.contains("  import     oxydra:fs/read@0.1.0"), "{o}");
    assert!(o.contains("installed word_count 0.1.0"), "{o}");
    let lock = s.lock().unwrap();
    for want in [
        format!("source = \"{v1}\""),
        "version = \"0.1.0\"".into(),
        format!("manifest_digest = \"{manifest}\""),
        format!("layer_digest = \"{layer}\""),
        "grant = \"file-read-only\"".into(),
        "profile = \"file-read-only\"".into(),
    ] {
        assert!(lock.contains(&want), "{want} not in\n{lock}");
    }
    let list = s.ok(&["component", "list"]);
    let row = list.lines().find(|l| l.starts_with("word_count")).unwrap();
    for want in ["0.1.0", &layer[7..19], "file-read-only", &v1] {
        assert!(row.contains(want), "{want} not in {row}");
    }
    std::fs::write(s.path().join("ws/shared/notes.md"), "one two three\n").unwrap();
    let call = |args: &str| s.run(&["tool", "call", "word_count", args, "--workspace", "ws"]);
    let o = call(r#"{"path": "/shared/notes.md"}"#);
    assert_eq!(support::out(&o), "3 words\n", "{}", support::err(&o));

    // 0.2.0 also writes: the update shows the changed profile and needs the new grant.
    let v2 = s.ok(&[
        "component",
        "push",
        path(&fixture("fx_word_count_v2")),
        &reg.oci("acme/word-count:0.2.0"),
    ]);
    // A write that fails midway (the new blob's place is taken by a directory) leaves
    // the lock and the previous version as they were, and working.
    let blocked = s.path().join(".oxydra/components/sha256").join(format!(
        "{}.wasm",
        pushed_layer(&v2).trim_start_matches("sha256:")
    ));
    std::fs::create_dir_all(blocked.join("x")).unwrap();
    let e = s.fails(
        1,
        &[
            "component",
            "update",
            "word_count",
            "--grant",
            "file-read-write",
        ],
    );
    assert!(
        e.contains(&format!(
            "components/sha256/{}.wasm: Is a directory",
            pushed_layer(&v2).trim_start_matches("sha256:")
        )) && e.contains("nothing was changed (what was installed before still is)"),
        "{e}"
    );
    assert_eq!(s.lock().unwrap(), lock, "a failed update changes nothing");
    assert_eq!(
        support::out(&call(r#"{"path": "/shared/notes.md"}"#)),
        "3 words\n"
    );
    std::fs::remove_dir_all(&blocked).unwrap();
    let e = s.fails(2, &["component", "update", "word_count"]);
    assert!(
        e.contains("declares profile `file-read-write` (it had profile `file-read-only`, granted `file-read-only`), and no grant was given: pass --grant file-read-write"),
        "{e}"
    );
    assert_eq!(s.lock().unwrap(), lock, "a refused update changes nothing");
    let o = s.ok(&[
        "component",
        "update",
        "word_count",
        "--grant",
        "file-read-write",
    ]);
    assert!(
        o.contains("profile:     changed: file-read-only → file-read-write")
            || o.contains("updated word_count 0.1.0 → 0.2.0"),
        "{o}"
    );
    assert!(o.contains("updated word_count 0.1.0 → 0.2.0"), "{o}");
    assert!(s.lock().unwrap().contains("grant = \"file-read-write\""));
    assert_eq!(s.stored().len(), 1, "the old version's bytes are gone");
    let o = call(r#"{"path": "/shared/notes.md", "out": "/shared/count"}"#);
    assert!(o.status.success(), "{}", support::err(&o));
    assert_eq!(
        std::fs::read_to_string(s.path().join("ws/shared/count")).unwrap(),
        "3"
    );
    assert!(
        s.ok(&["component", "update", "word_count"])
            .contains("is up to date")
    );
    // Without a name: every component installed from a registry.
    assert!(
        s.ok(&["component", "update"])
            .contains("word_count 0.2.0 is up to date")
    );

    // Loading checks the pinned digest every time.
    let stored = s.stored().pop().unwrap();
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    bad[200] ^= 1;
    std::fs::write(&stored, &bad).unwrap();
    let o = call(r#"{"path": "/shared/notes.md", "out": "/shared/count"}"#);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        support::err(&o).contains("but components.lock pins sha256:")
            && support::err(&o).contains("the file was changed after install"),
        "{}",
        support::err(&o)
    );
    std::fs::write(&stored, &good).unwrap();

    let o = s.ok(&["component", "remove", "word_count"]);
    assert!(o.contains("removed word_count 0.2.0"), "{o}");
    assert!(s.stored().is_empty());
    assert!(
        s.ok(&["component", "list"])
            .contains("no components installed")
    );
    let e = s.fails(2, &["component", "remove", "word_count"]);
    assert!(
        e.contains("no installed component `word_count` (installed: none)"),
        "{e}"
    );
}

#[test]
fn refusals_name_the_reference_and_write_nothing() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    // Declared beyond the grant: refused before the layer is downloaded.
    let writes = reg.oci("acme/fx-ro-writes:1.0.0");
    s.ok(&["component", "push", path(&fixture("fx_ro_writes")), &writes]);
    let e = s.fails(
        3,
        &["component", "install", &writes, "--grant", "file-read-only"],
    );
    assert!(
        e.contains(&format!("{writes}: by its own declaration, component `fx_ro_writes` imports `oxydra:fs/write@0.1.0`, which its grant `file-read-only` does not include"))
            && e.contains("nothing was downloaded"),
        "{e}"
    );

    // A config that lies (declares only fs/read): the real imports are read from the layer.
    std::fs::copy(fixture("fx_ro_writes"), work.path().join("liar.wasm")).unwrap();
    std::fs::write(
        work.path().join("config.json"),
        r#"{"architecture":"wasm","os":"wasip2","layerDigests":[],"component":{"imports":["oxydra:fs/read@0.1.0"],"exports":["oxydra:tool/tool@0.1.0"],"target":null}}"#,
    )
    .unwrap();
    let liar = format!("{}/acme/liar:1.0.0", reg.host);
    oras(&[
        "push",
        &liar,
        path(work.path()),
        "liar.wasm:application/wasm",
        "config.json:application/vnd.wasm.config.v0+json",
    ]);
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            &format!("oci://{liar}"),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains(&format!("oci://{liar}: component `liar` imports `oxydra:fs/write@0.1.0`, which its grant `file-read-only` does not include")),
        "{e}"
    );

    // A tampered layer: the registry serves bytes that do not match the manifest.
    let probe = reg.oci("acme/fx-probe:1.0.0");
    let pushed = s.ok(&["component", "push", path(&fixture("fx_probe")), &probe]);
    let blob = reg.blob_file(&pushed_layer(&pushed));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let e = s.fails(
        3,
        &["component", "install", &probe, "--grant", "file-read-only"],
    );
    assert!(
        e.contains(&format!("{probe}: the component layer has digest sha256:"))
            && e.contains("tampered or corrupt); nothing was installed"),
        "{e}"
    );

    // Built against a WIT version outside the host's range.
    let future = reg.oci("acme/fx-future-wit:1.0.0");
    s.ok(&[
        "component",
        "push",
        path(&fixture("fx_future_wit")),
        &future,
    ]);
    let e = s.fails(
        3,
        &["component", "install", &future, "--grant", "file-read-only"],
    );
    assert!(
        e.contains(
            "was built against `oxydra:tool/tool@0.9.0`; this host supports oxydra WIT 0.1.x"
        ),
        "{e}"
    );

    // Not a wasm artifact (oras's default config type), and a layer that is no component.
    std::fs::write(work.path().join("notes.txt"), "hello").unwrap();
    let text = format!("{}/acme/notes:1.0.0", reg.host);
    oras(&["push", &text, path(work.path()), "notes.txt:text/plain"]);
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            &format!("oci://{text}"),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(e.contains(&format!("oci://{text} is not a wasm component artifact: its config has media type `application/vnd.unknown.config.v1+json`")), "{e}");
    std::fs::write(work.path().join("junk.wasm"), b"\0asm\x01\0\0\0 not really").unwrap();
    let junk = format!("{}/acme/junk:1.0.0", reg.host);
    oras(&[
        "push",
        &junk,
        path(work.path()),
        "junk.wasm:application/wasm",
        "config.json:application/vnd.wasm.config.v0+json",
    ]);
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            &format!("oci://{junk}"),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains(&format!(
            "oci://{junk}: component `junk` is not a valid WebAssembly component"
        )),
        "{e}"
    );

    // A channel component needs its own grant: a tool's does not cover it.
    let channel = reg.oci("acme/telegram:1.0.0");
    s.ok(&[
        "component",
        "push",
        path(&fixture("oxydra_channel_telegram")),
        &channel,
    ]);
    let e = s.fails(2, &["component", "install", &channel]);
    assert!(e.contains("pass --grant chat-channel"), "{e}");
    let e = s.fails(3, &["component", "install", &channel, "--grant", "web"]);
    assert!(e.contains(&channel), "{e}");

    // A missing tag, an unreachable registry, a warg source.
    let e = s.fails(
        1,
        &[
            "component",
            "install",
            &reg.oci("acme/fx-probe:9.9.9"),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains(&format!(
            "{}: tag `9.9.9` not found in the registry",
            reg.oci("acme/fx-probe:9.9.9")
        )),
        "{e}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("oci://127.0.0.1:{closed}/acme/x:1.0.0");
    let e = s.fails(
        1,
        &["component", "install", &gone, "--grant", "file-read-only"],
    );
    assert!(
        e.contains(&format!(
            "{gone}: registry 127.0.0.1:{closed} is unreachable: connecting to 127.0.0.1:{closed}"
        )),
        "{e}"
    );
    let e = s.fails(
        2,
        &[
            "component",
            "install",
            "warg://registry.example/acme:x@1.0.0",
        ],
    );
    assert!(
        e.contains("warg registries are not supported") && e.contains("oci://"),
        "{e}"
    );
    let e = s.fails(
        2,
        &["component", "install", "acme/x:1.0.0", "--grant", "web"],
    );
    assert!(
        e.contains("is neither a file nor an oci:// reference"),
        "{e}"
    );

    assert!(
        s.lock().is_none() && s.stored().is_empty(),
        "a refused install writes nothing"
    );
}

#[test]
fn interop_with_oras_both_ways_and_files() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    // What `component push` publishes, oras pulls byte for byte.
    let ours = reg.oci("acme/word-count:0.1.0");
    s.ok(&["component", "push", path(&fixture("word_count")), &ours]);
    let pulled = oras(&["pull", &ours["oci://".len()..], path(work.path())]);
    assert_eq!(
        pulled.trim(),
        work.path().join("word_count.wasm").display().to_string()
    );
    assert_eq!(
        std::fs::read(work.path().join("word_count.wasm")).unwrap(),
        std::fs::read(fixture("word_count")).unwrap()
    );
    let (status, manifest) = reg.get(
        "/v2/acme/word-count/manifests/0.1.0",
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["artifactType"], "application/wasm");
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");

    // What oras pushes (wasm config, one application/wasm layer) installs and runs.
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixture("word_count"), src.join("word_count.wasm")).unwrap();
    std::fs::write(
        src.join("config.json"),
        r#"{"architecture":"wasm","os":"wasip2","layerDigests":[],"component":{"imports":["oxydra:fs/read@0.1.0"],"exports":["oxydra:tool/tool@0.1.0"],"target":null}}"#,
    )
    .unwrap();
    let theirs = format!("{}/other/word-count:1.0.0", reg.host);
    oras(&[
        "push",
        &theirs,
        path(&src),
        "word_count.wasm:application/wasm",
        "config.json:application/vnd.wasm.config.v0+json",
    ]);
    let o = s.ok(&[
        "component",
        "install",
        &format!("oci://{theirs}"),
        "--grant",
        "file-read-only",
    ]);
    assert!(o.contains("installed word_count 1.0.0"), "{o}");
    std::fs::write(s.path().join("ws/shared/a.md"), "a b\nc\n").unwrap();
    let o = s.ok(&[
        "tool",
        "call",
        "word_count",
        r#"{"path": "a.md", "unit": "lines"}"#,
        "--workspace",
        "ws",
    ]);
    assert_eq!(o, "2 lines\n");
    s.ok(&["component", "remove", "word_count"]);

    // A local file: the same checks, pinned by digest, under an explicit grant.
    let file = fixture("word_count");
    let e = s.fails(2, &["component", "install", path(&file)]);
    assert!(e.contains("pass --grant file-read-only"), "{e}");
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            path(&fixture("fx_ro_writes")),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains(
            "imports `oxydra:fs/write@0.1.0`, which its grant `file-read-only` does not include"
        ),
        "{e}"
    );
    let o = s.ok(&[
        "component",
        "install",
        path(&file),
        "--grant",
        "file-read-only",
    ]);
    assert!(
        o.contains("installed word_count (") && o.contains("granted file-read-only"),
        "{o}"
    );
    assert!(s.lock().unwrap().contains(&format!(
        "source = \"file://{}\"",
        file.canonicalize().unwrap().display()
    )));
}

/// The binary on a pseudo-terminal (util-linux `script`), `answer` typed at the prompt.
fn on_a_terminal(s: &Sandbox, args: &[&str], answer: &str) -> String {
    use std::io::Write;
    let line = std::iter::once(env!("CARGO_BIN_EXE_oxydra-host"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", s.path().join("home"))
        .env("XDG_CACHE_HOME", s.path().join("home/.cache"))
        .env("SHELL", "/bin/sh")
        .current_dir(s.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    support::out(&child.wait_with_output().unwrap())
}

#[test]
fn a_terminal_is_asked_to_confirm_the_declared_profile() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let r = reg.oci("acme/word-count:0.1.0");
    s.ok(&["component", "push", path(&fixture("word_count")), &r]);
    let o = on_a_terminal(&s, &["component", "install", &r], "n");
    assert!(
        o.contains("grant `file-read-only` to word_count? [y/N]"),
        "{o}"
    );
    assert!(o.contains("not granted; nothing was changed"), "{o}");
    assert!(s.lock().is_none());
    let o = on_a_terminal(&s, &["component", "install", &r], "y");
    assert!(o.contains("installed word_count 0.1.0"), "{o}");
    assert!(s.lock().unwrap().contains("grant = \"file-read-only\""));
}

#[test]
fn an_installed_provider_adapter_answers_the_agent() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let model = server::Server::start(vec![server::openai::answer(
        "answered by the installed adapter",
        None,
    )]);
    let src = reg.oci("acme/chat-adapter:1.0.0");
    s.ok(&[
        "component",
        "push",
        path(&fixture("oxydra_provider_openai_chat")),
        &src,
    ]);
    let e = s.fails(2, &["component", "install", &src]);
    assert!(e.contains("pass --grant llm-provider"), "{e}");
    // A tool's grant does not cover a provider.
    s.fails(3, &["component", "install", &src, "--grant", "web"]);
    assert!(
        s.lock().is_none() && s.stored().is_empty(),
        "nothing written"
    );
    let o = s.ok(&["component", "install", &src, "--grant", "llm-provider"]);
    let name = o
        .lines()
        .find_map(|l| l.strip_prefix("installed "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{o}"))
        .to_string();
    assert!(
        o.contains(&format!("component = \"{name}\"")),
        "how to use it: {o}"
    );
    assert!(s.lock().unwrap().contains("grant = \"llm-provider\""));
    // Not a tool: `tool list` does not show it.
    assert!(!s.ok(&["tool", "list"]).contains(&name));

    s.config(&format!(
        "[selection]\nprovider = \"mine\"\nmodel = \"gpt-4o-mini\"\n\
         [providers.registry.mine]\nprovider_type = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"MY_KEY\"\ncomponent = \"{name}\"\n",
        model.url
    ));
    let run = || {
        s.run_env(
            &["run", "--workspace", "ws", "say hi"],
            &[("MY_KEY", "sk-installed-adapter")],
        )
    };
    let o = run();
    assert!(o.status.success(), "{}", support::err(&o));
    assert!(
        support::out(&o).contains("answered by the installed adapter"),
        "{}",
        support::out(&o)
    );
    assert_eq!(
        model.requests()[0].header("authorization"),
        Some("Bearer sk-installed-adapter"),
        "the host adds the key to the adapter's request"
    );

    // Its pinned digest is checked at every load.
    let stored = s.stored().pop().unwrap();
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    bad[300] ^= 1;
    std::fs::write(&stored, &bad).unwrap();
    let o = run();
    assert!(!o.status.success());
    assert!(
        support::err(&o).contains("providers.registry.mine.component")
            && support::err(&o).contains("but components.lock pins sha256:"),
        "{}",
        support::err(&o)
    );
    std::fs::write(&stored, &good).unwrap();
    s.ok(&["component", "remove", &name]);
    let o = run();
    assert!(!o.status.success());
    assert!(
        support::err(&o).contains(&format!("no installed component `{name}`")),
        "{}",
        support::err(&o)
    );
}
