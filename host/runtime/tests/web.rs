//! The `web` profile end to end: the real `web_fetch` and `web_search` components,
//! loaded under `web`, against loopback servers the test allows explicitly, and the
//! default policy's refusals with what reached the servers checked.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/dns.rs"]
mod dns;
#[path = "common/server.rs"]
mod server;

use common::{host, spec};
use oxydra_runtime::capabilities::http::Origin;
use oxydra_runtime::capabilities::web::{Policy, Rule};
use oxydra_runtime::{
    CallWeb, ComponentHost, LoadedTool, Profile, Resolver, Tier, WebAccess, Workspace,
};
use serde_json::json;
use server::{Piece, Reply, Server};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Env {
    host: ComponentHost,
    ws: Arc<Workspace>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ws = Arc::new(Workspace::open(dir.path()).unwrap());
        Env {
            host: host(),
            ws,
            _dir: dir,
        }
    }

    fn tool(&self, name: &str, access: WebAccess, settings: serde_json::Value) -> LoadedTool {
        let krate = format!("oxydra-tool-{}", name.replace('_', "-"));
        let mut s = spec(name, &krate, Profile::Web);
        s.limits.deadline_ms = 60_000;
        s.web = CallWeb {
            access: Some(Arc::new(access)),
            settings: Some(Arc::from(settings.to_string())),
        };
        self.host.load(&s).unwrap()
    }

    fn fetch(&self, access: WebAccess, url: &str) -> Result<String, String> {
        let tool = self.tool("web_fetch", access, json!({"max_chars": 50000}));
        self.call(&tool, json!({ "url": url }))
    }

    fn call(&self, tool: &LoadedTool, args: serde_json::Value) -> Result<String, String> {
        self.host
            .call(tool, &args.to_string(), &self.ws)
            .map_err(|e| e.to_string())
    }
}

fn allow(rules: &[&str]) -> WebAccess {
    WebAccess {
        policy: Policy {
            allow: rules.iter().map(|r| Rule::parse(r).unwrap()).collect(),
            deny: Vec::new(),
        },
        ..WebAccess::default()
    }
}

fn html(body: &str) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: vec![Piece::Bytes(body.as_bytes().to_vec())],
        before_head: None,
    }
}

fn redirect(to: &str) -> Reply {
    Reply::status(302, "").header("location", to)
}

#[test]
fn the_tools_load_under_web_as_read_only() {
    let env = Env::new();
    for name in ["web_fetch", "web_search"] {
        let t = env.tool(name, WebAccess::default(), json!({}));
        assert_eq!(t.descriptor.profiles, vec![Profile::Web]);
        assert_eq!(t.descriptor.tier, Tier::ReadOnly);
        let d = &t.descriptor.description;
        assert!(d.contains("redirect"), "{name}: {d}");
    }
    // A file profile cannot hold a web component.
    let mut s = spec("web_fetch", "oxydra-tool-web-fetch", Profile::FileReadOnly);
    s.limits.deadline_ms = 1000;
    let err = env.host.load(&s).err().unwrap().to_string();
    assert!(err.contains("wasi:http/outgoing-handler"), "{err}");
}

#[test]
fn fetch_turns_html_into_text_with_links_and_decodes_the_charset() {
    let server = Server::routes("127.0.0.1", |r| match r.path.as_str() {
        "/page" => html(
            "<html><head><title>T</title><style>p{}</style></head><body><h1>Release notes</h1>\
             <p>See <a href=\"/docs/intro\">the intro</a> for more.</p><script>var x=1;</script></body></html>",
        ),
        "/latin1" => Reply {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "text/plain; charset=iso-8859-1".into(),
            )],
            body: vec![Piece::Bytes(b"caf\xe9 cr\xe8me".to_vec())],
            before_head: None,
        },
        "/data.json" => Reply::status(200, "{\"a\":[1,2]}"),
        "/logo.png" => Reply {
            status: 200,
            headers: vec![("content-type".into(), "image/png".into())],
            body: vec![Piece::Bytes(vec![0x89, b'P', b'N', b'G'])],
            before_head: None,
        },
        _ => Reply::status(404, "no such page"),
    });
    let env = Env::new();
    let access = || allow(&["127.0.0.1"]);
    let out = env
        .fetch(access(), &format!("{}/page", server.url))
        .unwrap();
    assert!(out.contains("Release notes"), "{out}");
    assert!(out.contains("the intro"), "{out}");
    assert!(out.contains("/docs/intro"), "the link is kept: {out}");
    assert!(!out.contains("var x"), "scripts are dropped: {out}");
    assert!(
        out.contains(&format!("{}/page", server.url)),
        "the URL is named: {out}"
    );

    let out = env
        .fetch(access(), &format!("{}/latin1", server.url))
        .unwrap();
    assert!(out.contains("café crème"), "{out}");
    let out = env
        .fetch(access(), &format!("{}/data.json", server.url))
        .unwrap();
    assert!(out.contains("\"a\""), "{out}");
    let err = env
        .fetch(access(), &format!("{}/logo.png", server.url))
        .unwrap_err();
    assert!(err.contains("image/png"), "{err}");
    let err = env
        .fetch(access(), &format!("{}/missing", server.url))
        .unwrap_err();
    assert!(err.contains("404"), "{err}");
    // The host set the Host header to the URL's authority.
    let first = &server.requests()[0];
    assert_eq!(
        first.header("host"),
        Some(server.url.trim_start_matches("http://"))
    );
}

#[test]
fn the_default_policy_refuses_loopback_and_nothing_reaches_the_server() {
    let server = Server::routes("127.0.0.1", |_| html("secret intranet page"));
    let env = Env::new();
    let port = server.port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://public@127.0.0.1:{port}/"),
    ] {
        let err = env.fetch(WebAccess::default(), &url).unwrap_err();
        assert!(err.starts_with("denied: egress denied:"), "{url}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
    let err = env
        .fetch(WebAccess::default(), &format!("http://127.0.0.1:{port}/x"))
        .unwrap_err();
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}/x")),
        "the URL: {err}"
    );
    assert!(err.contains("127.0.0.0/8"), "the rule: {err}");
    assert!(err.contains("[tools.web] allow"), "what to do: {err}");
    let err = env
        .fetch(
            WebAccess::default(),
            "http://169.254.169.254/latest/meta-data/",
        )
        .unwrap_err();
    assert!(
        err.contains("169.254.0.0/16") && err.contains("metadata"),
        "{err}"
    );
    assert!(
        server.requests().is_empty(),
        "a refused request reached the server"
    );
}

#[test]
fn redirects_are_followed_by_the_host_and_every_hop_is_checked() {
    let inner = Server::routes("127.0.0.2", |_| html("inside"));
    let inner_url = inner.url.clone();
    let outer = Server::routes("127.0.0.1", move |r| match r.path.as_str() {
        "/a" => redirect("/b"),
        "/b" => redirect("c"),
        "/c" => html("<p>arrived</p>"),
        "/inside" => redirect(&format!("{inner_url}/x")),
        "/metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/loop" => redirect("/loop"),
        "/smtp" => redirect("http://93.184.215.14:25/"),
        "/query" => redirect("?page=2"),
        _ => Reply::status(404, ""),
    });
    let env = Env::new();
    // Only the outer server's address and port are allowed.
    let access = || allow(&[&format!("127.0.0.1:{}", outer.port())]);
    let out = env.fetch(access(), &format!("{}/a", outer.url)).unwrap();
    assert!(out.contains("arrived"), "{out}");
    assert!(
        out.contains(&format!("{}/c", outer.url)),
        "the final URL: {out}"
    );

    let err = env
        .fetch(access(), &format!("{}/inside", outer.url))
        .unwrap_err();
    assert!(
        err.contains("egress denied") && err.contains("127.0.0.2"),
        "{err}"
    );
    assert!(
        inner.requests().is_empty(),
        "the denied hop was connected to"
    );
    let err = env
        .fetch(access(), &format!("{}/metadata", outer.url))
        .unwrap_err();
    assert!(err.contains("169.254.169.254"), "{err}");

    let err = env
        .fetch(access(), &format!("{}/smtp", outer.url))
        .unwrap_err();
    assert!(
        err.contains("port 25"),
        "a redirect to a non-web port: {err}"
    );
    // A query-only redirect keeps the path.
    let _ = env.fetch(access(), &format!("{}/query", outer.url));
    assert!(
        outer.requests().iter().any(|r| r.path == "/query?page=2"),
        "{:?}",
        outer
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );

    let before = outer.requests().len();
    let err = env
        .fetch(access(), &format!("{}/loop", outer.url))
        .unwrap_err();
    assert!(err.contains("tools.web.max_redirects"), "{err}");
    assert_eq!(
        outer.requests().len() - before,
        6,
        "the first request and 5 redirects"
    );
}

#[test]
fn dns_rebinding_cannot_move_the_connection_to_another_address() {
    // The test resolver answers the first A query with the allowed address, every later
    // one with loopback: a host that resolved twice would connect to the second.
    let good = Server::routes("127.0.0.2", |_| html("<p>the checked address</p>"));
    let evil = Server::routes("127.0.0.1", |_| html("<p>rebound</p>"));
    assert_ne!(good.port(), 0);
    let dns = dns::Dns::start(|n, _| {
        let ip = if n == 0 { "127.0.0.2" } else { "127.0.0.1" };
        vec![ip.parse::<IpAddr>().unwrap()]
    });
    let env = Env::new();
    let mut access = allow(&["127.0.0.2"]);
    access.resolver = Resolver::Dns(dns.addr.parse().unwrap());
    let out = env
        .fetch(access, &format!("http://rebind.test:{}/", good.port()))
        .unwrap();
    assert!(out.contains("the checked address"), "{out}");
    assert_eq!(dns.a_queries(), 1, "the name was resolved once");
    assert_eq!(good.requests().len(), 1);
    assert!(evil.requests().is_empty());

    // A public address first, loopback second: the connection goes to the public
    // address (unreachable here) or nowhere, never to loopback.
    let dns = dns::Dns::start(|n, _| {
        let ip = if n == 0 { "93.184.215.14" } else { "127.0.0.1" };
        vec![ip.parse::<IpAddr>().unwrap()]
    });
    let mut access = WebAccess {
        connect_timeout: Duration::from_secs(1),
        ..WebAccess::default()
    };
    access.resolver = Resolver::Dns(dns.addr.parse().unwrap());
    let started = Instant::now();
    let err = env
        .fetch(
            access.clone(),
            &format!("http://rebind.test:{}/", evil.port()),
        )
        .unwrap_err();
    assert!(err.contains("93.184.215.14"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        evil.requests().is_empty(),
        "the connection was rebound to loopback"
    );

    // One answer holding a public and a loopback address: the name is denied.
    let dns = dns::Dns::start(|_, _| {
        vec![
            "93.184.215.14".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]
    });
    access.resolver = Resolver::Dns(dns.addr.parse().unwrap());
    let err = env
        .fetch(access, &format!("http://mixed.test:{}/", evil.port()))
        .unwrap_err();
    assert!(
        err.contains("resolves to 127.0.0.1") && err.contains("loopback"),
        "{err}"
    );
    assert!(evil.requests().is_empty());
}

#[test]
fn size_and_time_limits_end_a_fetch_with_the_key_to_raise() {
    let server = Server::routes("127.0.0.1", |r| match r.path.as_str() {
        "/big" => Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: (0..40)
                .map(|_| Piece::Bytes(vec![b'x'; 64 * 1024]))
                .collect(),
            before_head: None,
        },
        _ => Reply::silent(Duration::from_secs(8)),
    });
    let env = Env::new();
    let mut access = allow(&["127.0.0.1"]);
    access.max_response_bytes = 1024 * 1024;
    let err = env
        .fetch(access, &format!("{}/big", server.url))
        .unwrap_err();
    assert!(err.contains("tools.web.max_response_bytes"), "{err}");

    let mut access = allow(&["127.0.0.1"]);
    access.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = env
        .fetch(access, &format!("{}/slow", server.url))
        .unwrap_err();
    assert!(err.contains("tools.web.timeout_secs"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

const SEARXNG: &str = r#"{"query":"rust wasm","number_of_results":2,"results":[
 {"url":"https://component-model.bytecodealliance.org/","title":"The WebAssembly Component Model","content":"Components, WIT and worlds.","engine":"google","score":1.0},
 {"url":"https://docs.wasmtime.dev/","title":"Wasmtime docs","content":"A fast and secure runtime.","engine":"bing","score":0.5}],
 "answers":[],"corrections":[],"infoboxes":[],"suggestions":[],"unresponsive_engines":[]}"#;

const BRAVE: &str = r#"{"type":"search","query":{"original":"rust wasm"},"web":{"type":"search","results":[
 {"title":"Rust and <strong>WebAssembly</strong>","url":"https://rustwasm.github.io/docs/book/","description":"A book about <strong>Rust</strong> &amp; wasm.","language":"en"}]}}"#;

fn ddg_page() -> String {
    let result = |url: &str, title: &str, snippet: &str| {
        format!(
            "<div class=\"result results_links results_links_deep web-result \"><div class=\"links_main links_deep result__body\">\
             <h2 class=\"result__title\"><a rel=\"nofollow\" class=\"result__a\" href=\"//duckduckgo.com/l/?uddg={}&amp;rut=abc\">{title}</a></h2>\
             <a class=\"result__snippet\" href=\"//duckduckgo.com/l/?uddg=x\">{snippet}</a></div></div>",
            url.replace(':', "%3A").replace('/', "%2F")
        )
    };
    format!(
        "<!DOCTYPE html><html><body><div id=\"links\" class=\"results\">{}{}</div></body></html>",
        result(
            "https://www.rust-lang.org/what/wasm",
            "Rust for <b>WebAssembly</b>",
            "Use <b>Rust</b> to build wasm."
        ),
        result(
            "https://webassembly.org/",
            "WebAssembly",
            "A binary instruction format."
        )
    )
}

#[test]
fn search_backends_answer_in_their_real_formats_and_fall_back_in_order() {
    const KEY: &str = "BSA-test-key-never-in-the-component";
    let brave_seen = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let seen = brave_seen.clone();
    let server = Server::routes("127.0.0.1", move |r| {
        if r.path.starts_with("/broken/search") {
            Reply::status(500, "engine down")
        } else if r.path.starts_with("/sx/search") {
            assert!(r.path.contains("format=json"), "{}", r.path);
            Reply::status(200, SEARXNG)
        } else if r.path.starts_with("/html/") {
            html(&ddg_page())
        } else {
            Reply::status(404, "")
        }
    });
    // Brave on its own origin: the key goes to that origin only.
    let brave = Server::routes("127.0.0.1", move |r| {
        if r.path.starts_with("/res/v1/web/search") {
            seen.lock()
                .unwrap()
                .push(r.header("x-subscription-token").map(str::to_string));
            Reply::status(200, BRAVE)
        } else {
            Reply::status(404, "")
        }
    });
    let base = server.url.clone();
    let brave_base = brave.url.clone();
    let env = Env::new();
    let mut access = allow(&["127.0.0.1"]);
    access.secrets.push((
        Origin::parse(&brave_base).unwrap(),
        http::HeaderName::from_static("x-subscription-token"),
        http::HeaderValue::from_static(KEY),
    ));
    let search = |settings: serde_json::Value| env.tool("web_search", access.clone(), settings);

    // SearXNG: the first instance fails, the second answers.
    let t = search(json!({
        "providers": ["searxng"],
        "searxng": {"base_urls": [format!("{base}/broken"), format!("{base}/sx")]}
    }));
    let out = env
        .call(&t, json!({"query": "rust wasm", "count": 5}))
        .unwrap();
    assert!(out.contains("The WebAssembly Component Model"), "{out}");
    assert!(out.contains("https://docs.wasmtime.dev/"), "{out}");

    // DuckDuckGo's HTML results page: links decoded from uddg.
    let t = search(json!({"providers": ["duckduckgo"], "duckduckgo": {"base_url": base}}));
    let out = env
        .call(&t, json!({"query": "rust wasm", "count": 1}))
        .unwrap();
    assert!(out.contains("https://www.rust-lang.org/what/wasm"), "{out}");
    assert!(!out.contains("webassembly.org"), "count is honoured: {out}");

    // Brave: the host adds the key; the component never had it.
    let t = search(json!({"providers": ["brave"], "brave": {"base_url": brave_base}}));
    let out = env
        .call(&t, json!({"query": "rust wasm", "freshness": "week"}))
        .unwrap();
    assert!(
        out.contains("https://rustwasm.github.io/docs/book/"),
        "{out}"
    );
    assert!(!out.contains(KEY));
    assert_eq!(
        brave_seen.lock().unwrap().last().cloned(),
        Some(Some(KEY.to_string()))
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("x-subscription-token").is_none()),
        "only Brave's origin gets the key"
    );

    // Ordered fallback across backends; every failure named when all fail.
    let t = search(json!({
        "providers": ["searxng", "duckduckgo"],
        "searxng": {"base_urls": [format!("{base}/broken")]},
        "duckduckgo": {"base_url": base}
    }));
    let out = env.call(&t, json!({"query": "rust wasm"})).unwrap();
    assert!(out.contains("rust-lang.org"), "{out}");
    let t = search(json!({
        "providers": ["searxng", "duckduckgo"],
        "searxng": {"base_urls": [format!("{base}/broken")]},
        "duckduckgo": {"base_url": "http://10.1.2.3"}
    }));
    let err = env.call(&t, json!({"query": "rust wasm"})).unwrap_err();
    assert!(err.contains("500") && err.contains("10.1.2.3"), "{err}");
}
