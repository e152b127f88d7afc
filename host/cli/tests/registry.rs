//! `oxydra-host component` against a real OCI registry: Debian's `docker-registry` on
//! 127.0.0.1, started per test. Install, list, run, update, remove; every refusal the
//! trust model promises; signatures; TLS with a configured CA; interop with oras.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/reap.rs"]
mod reap;
#[path = "common/registry.rs"]
mod support;

use std::process::Command;
use support::{Registry, Sandbox, fixture, oras, pushed_digest, pushed_layer};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

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
    s.ok(&[
        "component",
        "push",
        path(&fixture("fx_word_count_v2")),
        &reg.oci("acme/word-count:0.2.0"),
    ]);
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

    // A provider component: not a tool, refused from its declaration, before download.
    let provider = reg.oci("acme/openai-chat:1.0.0");
    s.ok(&[
        "component",
        "push",
        path(&fixture("oxydra_provider_openai_chat")),
        &provider,
    ]);
    let e = s.fails(3, &["component", "install", &provider]);
    assert!(
        e.contains(&format!("{provider}: it is a `llm-provider` component; only tools install from a registry so far")),
        "{e}"
    );

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

fn openssl(args: &[&str], dir: &std::path::Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", support::err(&o));
}

#[test]
fn signatures_under_require_and_cosign_format() {
    let reg = Registry::start();
    let s = Sandbox::new();
    let keys = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let k = keys.path();
    s.ok(&["component", "keygen", path(&k.join("ours"))]);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(k.join("ours")).unwrap().permissions()
        ) & 0o777,
        0o600
    );
    // A second key from an independent signer (openssl), in cosign.pub's format.
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "cosign.key",
        ],
        k,
    );
    openssl(
        &["ec", "-in", "cosign.key", "-pubout", "-out", "cosign.pub"],
        k,
    );

    // Installed unsigned under the default `warn`: then `require` refuses to load it.
    let unsigned = reg.oci("acme/word-count:0.1.0");
    s.ok(&["component", "push", path(&fixture("word_count")), &unsigned]);
    let o = s.run(&[
        "component",
        "install",
        &unsigned,
        "--grant",
        "file-read-only",
    ]);
    assert!(o.status.success(), "{}", support::err(&o));
    assert!(
        support::err(&o)
            .contains("is not signed by a trusted key ([components.trust] mode = \"warn\")")
    );
    s.config(&format!(
        "[components.trust]\nmode = \"require\"\nkeys = [{:?}, {:?}]\n",
        k.join("ours.pub"),
        k.join("cosign.pub")
    ));
    let e = s.fails(3, &["tool", "list"]);
    assert!(e.contains("component `word_count` was installed without a signature from a key in [components.trust] keys"), "{e}");
    s.ok(&["component", "remove", "word_count"]);

    // Unsigned under require: refused before download.
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            &unsigned,
            "--grant",
            "file-read-only",
        ],
    );
    assert!(e.contains(&format!("{unsigned} is not signed by a trusted key, and [components.trust] mode = \"require\": it has no signature (no tag sha256-")), "{e}");

    // Signed with an untrusted key: refused.
    s.ok(&["component", "keygen", path(&k.join("stranger"))]);
    s.ok(&[
        "component",
        "sign",
        &unsigned,
        "--key",
        path(&k.join("stranger")),
    ]);
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            &unsigned,
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains("made by a key that is not in [components.trust] keys"),
        "{e}"
    );

    // Signed by `component sign`: verified, recorded, loads.
    let o = s.ok(&[
        "component",
        "sign",
        &unsigned,
        "--key",
        path(&k.join("ours")),
    ]);
    assert!(o.contains("signature: ") && o.contains(".sig"), "{o}");
    let o = s.ok(&[
        "component",
        "install",
        &unsigned,
        "--grant",
        "file-read-only",
    ]);
    assert!(
        o.contains(&format!(
            "signature:   verified with {}",
            k.join("ours.pub").display()
        )),
        "{o}"
    );
    assert!(s.lock().unwrap().contains("signed_by = \"sha256:"));
    assert!(s.ok(&["tool", "list"]).contains("word_count"));
    s.ok(&["component", "remove", "word_count"]);

    // A signature made the way cosign makes it, by openssl: the simple-signing payload,
    // ECDSA P-256/SHA-256 DER, base64 in the annotation, at tag sha256-<hex>.sig.
    let other = reg.oci("acme/wc-cosign:1.0.0");
    let digest = pushed_digest(&s.ok(&["component", "push", path(&fixture("word_count")), &other]));
    let payload = format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{}/acme/wc-cosign\"}},\"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}",
        reg.host
    );
    std::fs::write(k.join("payload.json"), &payload).unwrap();
    openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            "cosign.key",
            "-out",
            "payload.sig",
            "payload.json",
        ],
        k,
    );
    let b64 = Command::new("openssl")
        .args(["base64", "-A", "-in", "payload.sig"])
        .current_dir(k)
        .output()
        .unwrap();
    let b64 = support::out(&b64);
    std::fs::write(
        k.join("annotations.json"),
        format!(
            "{{\"payload.json\": {{\"dev.cosignproject.cosign/signature\": \"{}\"}}}}",
            b64.trim()
        ),
    )
    .unwrap();
    let sig_target = format!(
        "{}/acme/wc-cosign:{}.sig",
        reg.host,
        digest.replace(':', "-")
    );
    oras(&[
        "push",
        &sig_target,
        path(k),
        "payload.json:application/vnd.dev.cosign.simplesigning.v1+json",
        "",
        "annotations.json",
    ]);
    let o = s.ok(&["component", "install", &other, "--grant", "file-read-only"]);
    assert!(
        o.contains(&format!(
            "signature:   verified with {}",
            k.join("cosign.pub").display()
        )),
        "{o}"
    );

    // A local file carries no signature: refused under require.
    let e = s.fails(
        3,
        &[
            "component",
            "install",
            path(&fixture("fx_probe")),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(e.contains("a local file carries no signature"), "{e}");
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

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn ca_and_server_cert(dir: &std::path::Path, cn: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-days", "2", "-subj", cn, "-keyout", "ca.key", "-out", "ca.pem",
    ]);
    openssl(&args, dir);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(&args, dir);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
        dir,
    );
}

#[test]
fn tls_registry_with_a_configured_ca() {
    let certs = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    ca_and_server_cert(certs.path(), "/CN=oxydra test CA");
    let reg = Registry::start_with(Some((
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )));
    let s = Sandbox::new();
    let r = reg.oci("acme/word-count:0.1.0");
    // A loopback registry with a ca_file is reached over https, checked against that CA.
    s.config(&format!(
        "[components.registries.\"{}\"]\nca_file = {:?}\n",
        reg.host,
        certs.path().join("ca.pem")
    ));
    s.ok(&["component", "push", path(&fixture("word_count")), &r]);
    let o = s.ok(&["component", "install", &r, "--grant", "file-read-only"]);
    assert!(o.contains("installed word_count 0.1.0"), "{o}");
    // Another CA: the certificate is refused, with what to configure.
    let other = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    ca_and_server_cert(other.path(), "/CN=another CA");
    s.config(&format!(
        "[components.registries.\"{}\"]\nca_file = {:?}\n",
        reg.host,
        other.path().join("ca.pem")
    ));
    let e = s.fails(
        1,
        &[
            "component",
            "install",
            &reg.oci("acme/word-count:0.1.0"),
            "--grant",
            "file-read-only",
        ],
    );
    assert!(
        e.contains("TLS with ") && e.contains("set ca_file under [components.registries."),
        "{e}"
    );
    // Config mistakes are refused with the key.
    s.config(&format!(
        "[components.registries.\"{}\"]\nusername_env = \"U\"\n",
        reg.host
    ));
    let o = s.run(&["component", "install", &r, "--grant", "file-read-only"]);
    assert!(
        support::err(&o).contains("basic credentials need both username_env and password_env"),
        "{}",
        support::err(&o)
    );
    s.config("[components.trust]\nmode = \"require\"\n");
    let o = s.run(&["component", "install", &r, "--grant", "file-read-only"]);
    assert!(
        support::err(&o).contains("components.trust.keys")
            && support::err(&o).contains("needs at least one public key"),
        "{}",
        support::err(&o)
    );
}

#[test]
fn basic_auth_from_environment_variables_and_never_shown() {
    let auth_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let password = "pw-9f3a7c1e5b";
    std::fs::write(
        auth_dir.path().join("htpasswd"),
        format!("{}\n", support::htpasswd("alice", password)),
    )
    .unwrap();
    let reg = Registry::start_full(
        None,
        &format!(
            "auth:\n  htpasswd:\n    realm: oxydra-test\n    path: {}\n",
            auth_dir.path().join("htpasswd").display()
        ),
    );
    let s = Sandbox::new();
    let r = reg.oci("acme/word-count:0.1.0");
    let wc = fixture("word_count");
    let push = ["component", "push", path(&wc), &r];
    // No credentials configured: what to set.
    let e = s.fails(1, &push);
    assert!(
        e.contains(&format!("{r}: the registry refused access (401): it needs credentials: set username_env and password_env (or token_env) under [components.registries.\"{}\"]", reg.host)),
        "{e}"
    );
    s.config(&format!(
        "[components.registries.\"{}\"]\nusername_env = \"REG_USER\"\npassword_env = \"REG_PASS\"\n",
        reg.host
    ));
    let e = support::err(&s.run(&push));
    assert!(
        e.contains("the environment variable REG_USER is not set"),
        "{e}"
    );
    let wrong = s.run_env(&push, &[("REG_USER", "alice"), ("REG_PASS", "not-it-4b2d")]);
    assert_eq!(wrong.status.code(), Some(1));
    let e = support::err(&wrong);
    assert!(
        e.contains("the configured username and password were refused"),
        "{e}"
    );
    assert!(!e.contains("not-it-4b2d"), "a password in a message: {e}");
    let creds = [("REG_USER", "alice"), ("REG_PASS", password)];
    let o = s.run_env(&push, &creds);
    assert!(o.status.success(), "{}", support::err(&o));
    let o = s.run_env(
        &[
            "-v",
            "component",
            "install",
            &r,
            "--grant",
            "file-read-only",
        ],
        &creds,
    );
    assert!(o.status.success(), "{}", support::err(&o));
    let all = format!(
        "{}{}{}",
        support::out(&o),
        support::err(&o),
        s.lock().unwrap()
    );
    assert!(!all.contains(password), "the password was shown: {all}");
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

/// A token service in the shape docker-registry's `auth.token` expects (the flow GHCR and
/// Docker Hub use): `GET /token?service=…&scope=…` with basic credentials answers a JWT
/// (ES256, signed with openssl, its certificate in `x5c`) granting the scopes asked for.
const TOKEN_SERVER: &str = r#"
import base64, json, subprocess, sys, time, http.server, urllib.parse, os
port, key, cert, user, password, log = sys.argv[1:7]
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True).stdout
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def raw(sig):  # DER ECDSA signature -> r || s, as JWS wants
    i = 2 if sig[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        n = sig[i + 1]; v = sig[i + 2:i + 2 + n]; i += 2 + n
        out += v.lstrip(b"\0").rjust(32, b"\0")
    return out
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        with open(log, "a") as f:
            f.write(json.dumps({"scope": q.get("scope"), "service": q.get("service"), "auth": self.headers.get("Authorization") == want}) + "\n")
        if self.headers.get("Authorization") != want:
            self.send_response(401); self.end_headers(); return
        access = []
        for s in q.get("scope", []):
            t, name, actions = s.split(":")
            access.append({"type": t, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        head = b64(json.dumps({"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}).encode())
        claims = b64(json.dumps({"iss": "oxydra-test-issuer", "sub": user, "aud": q["service"][0], "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{claims}".encode(), capture_output=True, check=True).stdout
        body = json.dumps({"token": f"{head}.{claims}.{b64(raw(sig))}"}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(port)), H).serve_forever()
"#;

#[test]
fn the_registry_token_flow_with_basic_credentials() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = dir.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=oxydra token signer",
            "-keyout",
            "signer.key",
            "-out",
            "signer.pem",
        ],
        d,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let password = "tok-pw-61c0d2";
    let log = d.join("token.log");
    let server = Command::new("python3")
        .args(["-c", TOKEN_SERVER, &port.to_string()])
        .arg(d.join("signer.key"))
        .arg(d.join("signer.pem"))
        .args(["alice", password])
        .arg(&log)
        .spawn()
        .unwrap();
    let _server = reap::Reaped(server);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "the token server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let reg = Registry::start_full(
        None,
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: oxydra-test-registry\n    issuer: oxydra-test-issuer\n    rootcertbundle: {}\n",
            d.join("signer.pem").display()
        ),
    );
    let s = Sandbox::new();
    let r = reg.oci("acme/word-count:0.1.0");
    let wc = fixture("word_count");
    let push = ["component", "push", path(&wc), &r];
    let e = s.fails(1, &push);
    assert!(
        e.contains("the registry refused access (401): it needs credentials"),
        "{e}"
    );
    s.config(&format!(
        "[components.registries.\"{}\"]\nusername_env = \"REG_USER\"\npassword_env = \"REG_PASS\"\n",
        reg.host
    ));
    let creds = [("REG_USER", "alice"), ("REG_PASS", password)];
    let o = s.run_env(&push, &creds);
    assert!(o.status.success(), "{}", support::err(&o));
    let o = s.run_env(
        &["component", "install", &r, "--grant", "file-read-only"],
        &creds,
    );
    assert!(o.status.success(), "{}", support::err(&o));
    assert!(!support::err(&o).contains(password) && !support::out(&o).contains(password));
    // The token service saw the registry's service name and the repository scopes.
    let log = std::fs::read_to_string(&log).unwrap();
    // (The registry's challenge names push and pull in either order.)
    assert!(
        ["pull,push", "push,pull"].iter().any(|a| log.contains(&format!(
            r#""scope": ["repository:acme/word-count:{a}"], "service": ["oxydra-test-registry"], "auth": true"#
        ))),
        "{log}"
    );
    assert!(log.contains(r#""scope": ["repository:acme/word-count:pull"], "service": ["oxydra-test-registry"], "auth": true"#), "{log}");
}
