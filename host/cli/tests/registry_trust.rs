//! `oxydra-host component` against a real OCI registry, the trust side: cosign-format
//! signatures under `[components.trust]`, TLS with a configured CA, basic auth and the
//! bearer token flow, credentials from the environment and shown nowhere.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/reap.rs"]
mod reap;
#[path = "common/registry.rs"]
mod support;

use std::process::Command;
use support::{Registry, Sandbox, fixture, openssl, oras, path, pushed_digest};

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

    // A token issued beforehand (`token_env`, as CI systems hand out): sent as it is from
    // the first request, the token service is not asked, and it is never shown.
    let issued = Command::new("python3")
        .args([
            "-c",
            "import base64,json,sys,urllib.request as u; r=u.Request(sys.argv[1]); r.add_header('Authorization','Basic '+base64.b64encode(sys.argv[2].encode()).decode()); print(json.load(u.urlopen(r))['token'])",
        ])
        .arg(format!(
            "http://127.0.0.1:{port}/token?service=oxydra-test-registry&scope=repository:acme/word-count:pull"
        ))
        .arg(format!("alice:{password}"))
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_string();
    let asked = std::fs::read_to_string(d.join("token.log"))
        .unwrap()
        .lines()
        .count();
    let t = Sandbox::new();
    t.config(&format!(
        "[components.registries.\"{}\"]\ntoken_env = \"REG_TOKEN\"\n",
        reg.host
    ));
    let install = ["component", "install", &r, "--grant", "file-read-only"];
    let o = t.run_env(
        &[
            "-v", install[0], install[1], install[2], install[3], install[4],
        ],
        &[("REG_TOKEN", &token)],
    );
    assert!(o.status.success(), "{}", support::err(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("token.log"))
            .unwrap()
            .lines()
            .count(),
        asked,
        "the token service was not asked"
    );
    let all = format!(
        "{}{}{}",
        support::out(&o),
        support::err(&o),
        t.lock().unwrap()
    );
    assert!(!all.contains(&token), "the token was shown: {all}");
    let u = Sandbox::new();
    u.config(&format!(
        "[components.registries.\"{}\"]\ntoken_env = \"REG_TOKEN\"\n",
        reg.host
    ));
    let o = u.run_env(&install, &[("REG_TOKEN", "forged-token-5e1a")]);
    assert_eq!(o.status.code(), Some(1));
    let e = support::err(&o);
    assert!(
        e.contains("the configured token was refused (check token_env)"),
        "{e}"
    );
    assert!(
        !e.contains("forged-token-5e1a"),
        "a token in a message: {e}"
    );
    assert!(u.lock().is_none(), "nothing written");
}
