#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use oxydra_sdk::Tool;

/// html.duckduckgo.com's results page, trimmed: an ad first, then two results (the
/// second with an absolute link and entities), then the paging form.
const DDG_PAGE: &str = r##"<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
  <meta http-equiv="content-type" content="text/html; charset=UTF-8">
  <title>rust wasm at DuckDuckGo</title>
  <link rel="stylesheet" href="/dist/h.css" type="text/css">
  <script type="text/javascript">var x = '<a class="result__a" href="https://evil.example/">no</a>';</script>
</head>
<body class="body--html">
  <div>
    <div class="header" id="header"><form action="/html/" method="post"><input name="q" value="rust wasm"></form></div>
  </div>
  <div>
  <div class="serp__results">
  <div id="links" class="results">
    <div class="result results_links results_links_deep result--ad result--ad--small">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a" href="https://duckduckgo.com/y.js?ad_domain=example.com&amp;ad_provider=bingv7aa&amp;ad_type=txad&amp;u3=https%3A%2F%2Fwww.bing.com%2Faclick">Learn Rust Fast - Sponsored Course</a>
        </h2>
        <div class="result__extras"><div class="result__extras__url"><a class="result__url" href="https://duckduckgo.com/y.js?ad_domain=example.com">example.com</a></div></div>
        <a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=example.com">Ad text that must not be shown.</a>
        <div class="clear"></div>
      </div>
    </div>
    <div class="result results_links results_links_deep web-result ">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Frustwasm.github.io%2Fdocs%2Fbook%2F&amp;rut=5f2a8e3c9b1d4e6f">Rust and WebAssembly - <b>Rust</b> and <b>WebAssembly</b></a>
        </h2>
        <div class="result__extras">
          <div class="result__extras__url">
            <span class="result__icon"><a rel="nofollow" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Frustwasm.github.io%2Fdocs%2Fbook%2F&amp;rut=5f2a"><img class="result__icon__img" width="16" height="16" alt="" src="//external-content.duckduckgo.com/ip3/rustwasm.github.io.ico" name="i15" /></a></span>
            <a class="result__url" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Frustwasm.github.io%2Fdocs%2Fbook%2F&amp;rut=5f2a">rustwasm.github.io/docs/book/</a>
          </div>
        </div>
        <a class="result__snippet" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Frustwasm.github.io%2Fdocs%2Fbook%2F&amp;rut=5f2a">This small book describes how to use <b>Rust</b> and <b>WebAssembly</b> together. It&#x27;s for people who know   some Rust &amp; want to learn.</a>
        <div class="clear"></div>
      </div>
    </div>
    <div class="result results_links results_links_deep web-result ">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a" href="https://developer.mozilla.org/en-US/docs/WebAssembly/Guides/Rust_to_Wasm?utm=a&amp;b=c">Compiling from Rust to WebAssembly - MDN</a>
        </h2>
        <a class="result__snippet" href="https://developer.mozilla.org/en-US/docs/WebAssembly/Guides/Rust_to_Wasm">If you have some <b>Rust</b> code, you can compile it into &lt;WebAssembly&gt; (wasm).</a>
        <div class="clear"></div>
      </div>
    </div>
    <div class="nav-link">
      <form action="/html/" method="post"><input type="submit" class="btn btn--alt" value="Next" /><input type="hidden" name="q" value="rust wasm" /><input type="hidden" name="s" value="10" /></form>
    </div>
  </div>
  </div>
  </div>
</body>
</html>"##;

const DDG_NO_RESULTS: &str = r#"<html><body><div class="serp__results"><div id="links" class="results">
<div class="result results_links results_links_deep web-result result--no-result"><div class="no-results">No results.</div></div>
</div></div></body></html>"#;

/// What html.duckduckgo.com sends (HTTP 202) when it suspects a bot.
const DDG_CHALLENGE: &str = r#"<html><body><div class="anomaly-modal__mask"><div class="anomaly-modal__modal">
<div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
<form id="challenge-form" action="//duckduckgo.com/anomaly.js?sv=html&amp;cc=sre" method="POST"></form>
</div></div></body></html>"#;

const SEARXNG_JSON: &str = r#"{
  "query": "rust wasm",
  "number_of_results": 0,
  "results": [
    {"url": "https://rustwasm.github.io/docs/book/", "title": "Rust and WebAssembly",
     "content": "This small book describes how to use Rust and\n WebAssembly together.",
     "engine": "google", "parsed_url": ["https", "rustwasm.github.io", "/docs/book/", "", "", ""],
     "template": "default.html", "engines": ["google", "bing"], "positions": [1, 2], "score": 4.5,
     "category": "general", "publishedDate": null},
    {"url": "https://github.com/rustwasm/wasm-bindgen", "title": "GitHub - rustwasm/wasm-bindgen",
     "content": null, "engine": "bing", "engines": ["bing"], "positions": [3], "score": 0.33,
     "category": "general"},
    {"url": "https://rustwasm.github.io/docs/book/", "title": "duplicate", "content": "",
     "engine": "bing", "engines": ["bing"], "positions": [5], "score": 0.2, "category": "general"}
  ],
  "answers": [], "corrections": [], "infoboxes": [], "suggestions": ["rust wasm tutorial"],
  "unresponsive_engines": []
}"#;

const BRAVE_JSON: &str = r#"{
  "query": {"original": "rust wasm", "show_strict_warning": false, "is_navigational": false,
            "is_news_breaking": false, "spellcheck_off": true, "country": "us",
            "bad_results": false, "should_fallback": false, "postal_code": "", "city": "",
            "header_country": "", "more_results_available": true, "state": ""},
  "mixed": {"type": "mixed", "main": [{"type": "web", "index": 0, "all": false}], "top": [], "side": []},
  "type": "search",
  "web": {
    "type": "search",
    "results": [
      {"title": "<strong>Rust</strong> and <strong>WebAssembly</strong>",
       "url": "https://rustwasm.github.io/docs/book/", "is_source_local": false,
       "is_source_both": false,
       "description": "This small book describes how to use <strong>Rust</strong> and <strong>WebAssembly</strong> together. It&#x27;s for people who know some Rust &amp; JS.",
       "page_age": "2024-03-01T00:00:00", "profile": {"name": "Github", "url": "https://rustwasm.github.io/docs/book/", "long_name": "rustwasm.github.io", "img": "https://imgs.search.brave.com/x"},
       "language": "en", "family_friendly": true, "type": "search_result", "subtype": "generic",
       "is_live": false, "meta_url": {"scheme": "https", "netloc": "rustwasm.github.io", "hostname": "rustwasm.github.io", "favicon": "https://imgs.search.brave.com/y", "path": "› docs › book"}},
      {"title": "wasm-bindgen - crates.io", "url": "https://crates.io/crates/wasm-bindgen",
       "description": "Easy support for interacting between JS and <strong>Rust</strong>.",
       "type": "search_result", "subtype": "generic", "family_friendly": true}
    ],
    "family_friendly": true
  }
}"#;

fn q(text: &str) -> Query<'_> {
    Query {
        text,
        count: 5,
        freshness: None,
    }
}

#[test]
fn duckduckgo_page_results_without_ads() {
    let hits = backends::parse_duckduckgo(DDG_PAGE).unwrap();
    assert_eq!(
        hits,
        vec![
            Hit {
                title: "Rust and WebAssembly - Rust and WebAssembly".into(),
                url: "https://rustwasm.github.io/docs/book/".into(),
                snippet: "This small book describes how to use Rust and WebAssembly together. \
                          It's for people who know some Rust & want to learn."
                    .into(),
            },
            Hit {
                title: "Compiling from Rust to WebAssembly - MDN".into(),
                url: "https://developer.mozilla.org/en-US/docs/WebAssembly/Guides/Rust_to_Wasm?utm=a&b=c"
                    .into(),
                snippet: "If you have some Rust code, you can compile it into <WebAssembly> (wasm)."
                    .into(),
            },
        ]
    );
}

#[test]
fn duckduckgo_no_results_and_challenges() {
    assert_eq!(backends::parse_duckduckgo(DDG_NO_RESULTS), Ok(Vec::new()));
    let err = backends::parse_duckduckgo(DDG_CHALLENGE).unwrap_err();
    assert!(err.contains("CAPTCHA"), "{err}");
    assert!(backends::parse_duckduckgo("").is_err());
}

#[test]
fn duckduckgo_link_targets() {
    use backends::duckduckgo_target as t;
    assert_eq!(
        t("//duckduckgo.com/l/?uddg=https%3A%2F%2Fexample.com%2Fa%20b%3Fx%3D1&rut=abc").as_deref(),
        Some("https://example.com/a b?x=1")
    );
    assert_eq!(
        t("/l/?uddg=http%3A%2F%2Fexample.org%2F").as_deref(),
        Some("http://example.org/")
    );
    assert_eq!(
        t("https://example.net/x").as_deref(),
        Some("https://example.net/x")
    );
    assert_eq!(t("https://duckduckgo.com/y.js?ad_domain=x"), None);
    assert_eq!(t("//duckduckgo.com/l/?uddg=javascript%3Aalert(1)"), None);
    assert_eq!(t("javascript:void(0)"), None);
}

#[test]
fn searxng_results() {
    let hits = backends::parse_searxng(SEARXNG_JSON.as_bytes()).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].title, "Rust and WebAssembly");
    assert_eq!(
        hits[0].snippet,
        "This small book describes how to use Rust and WebAssembly together."
    );
    assert_eq!(hits[1].url, "https://github.com/rustwasm/wasm-bindgen");
    assert_eq!(hits[1].snippet, "");
    let empty = r#"{"query":"x","results":[],"unresponsive_engines":[]}"#;
    assert_eq!(backends::parse_searxng(empty.as_bytes()), Ok(Vec::new()));
    let blocked = r#"{"query":"x","results":[],"unresponsive_engines":[["google","CAPTCHA"],["bing","timeout"]]}"#;
    let err = backends::parse_searxng(blocked.as_bytes()).unwrap_err();
    assert!(err.contains("google (CAPTCHA), bing (timeout)"), "{err}");
    assert!(backends::parse_searxng(b"<html>403 Forbidden</html>").is_err());
    assert!(backends::parse_searxng(b"{\"query\":\"x\"}").is_err());
}

#[test]
fn brave_results_lose_their_tags() {
    let hits = backends::parse_brave(BRAVE_JSON.as_bytes()).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].title, "Rust and WebAssembly");
    assert_eq!(
        hits[0].snippet,
        "This small book describes how to use Rust and WebAssembly together. It's for people \
         who know some Rust & JS."
    );
    assert_eq!(hits[1].url, "https://crates.io/crates/wasm-bindgen");
    assert_eq!(
        backends::parse_brave(br#"{"type":"search","query":{"original":"zzqx"}}"#),
        Ok(Vec::new())
    );
    let err = backends::parse_brave(
        br#"{"type":"ErrorResponse","error":{"id":"x","status":422,"code":"SUBSCRIPTION_TOKEN_INVALID","detail":"The provided subscription token is invalid."}}"#,
    )
    .unwrap_err();
    assert!(err.contains("subscription token is invalid"), "{err}");
}

#[test]
fn backend_urls() {
    let query = Query {
        text: "rust & wasm",
        count: 3,
        freshness: Some("week"),
    };
    let s = Searxng {
        base_urls: vec![],
        engines: Some(vec!["google".into(), "bing".into()]),
        categories: Some(vec!["general".into()]),
        safesearch: Some(1),
    };
    assert_eq!(
        backends::searxng_url("http://127.0.0.1:8888/", &s, &query),
        "http://127.0.0.1:8888/search?q=rust+%26+wasm&format=json&time_range=week&engines=google%2Cbing&categories=general&safesearch=1"
    );
    assert_eq!(
        backends::searxng_url("http://127.0.0.1:8888", &Searxng::default(), &q("x")),
        "http://127.0.0.1:8888/search?q=x&format=json"
    );
    assert_eq!(
        backends::duckduckgo_url("https://html.duckduckgo.com", &query),
        "https://html.duckduckgo.com/html/?q=rust+%26+wasm&df=w"
    );
    assert_eq!(
        backends::brave_url("https://api.search.brave.com", &query),
        "https://api.search.brave.com/res/v1/web/search?q=rust+%26+wasm&count=3&freshness=pw"
    );
}

fn page(status: u16, body: &str) -> Page {
    Page {
        status,
        headers: Vec::new(),
        final_url: String::new(),
        body: body.as_bytes().to_vec(),
        truncated: false,
    }
}

fn settings(json: &str) -> Settings {
    oxydra_sdk::settings::parse_str("web_search", json).unwrap()
}

const ALL: &str = r#"{"providers": ["searxng", "duckduckgo", "brave"],
    "searxng": {"base_urls": ["http://127.0.0.1:8888", "http://127.0.0.1:8889"], "engines": ["google","bing"], "categories": ["general"], "safesearch": 1},
    "duckduckgo": {"base_url": "https://html.duckduckgo.com"},
    "brave": {"base_url": "https://api.search.brave.com"}}"#;

/// Run a search with canned answers, one per request in order; also returns the URLs asked.
fn run(
    settings_json: &str,
    query: &Query,
    answers: Vec<Result<Page, ToolError>>,
) -> (Result<String, ToolError>, Vec<String>) {
    let mut answers = answers.into_iter();
    let mut asked = Vec::new();
    let out = search(&settings(settings_json), query, &mut |url, headers| {
        asked.push(url.to_string());
        assert!(headers.contains(&("user-agent", USER_AGENT)));
        answers
            .next()
            .unwrap_or_else(|| panic!("unexpected request to {url}"))
    });
    (out, asked)
}

#[test]
fn falls_back_in_order_and_says_who_answered() {
    let denied = "egress denied: http://127.0.0.1:8888/search resolves to 127.0.0.1, a loopback \
                  address (tools.web.allow_private)";
    let (out, asked) = run(
        ALL,
        &q("rust wasm"),
        vec![
            Err(ToolError::Denied(denied.into())),
            Ok(page(
                403,
                "<html><body><h1>403 Forbidden</h1></body></html>",
            )),
            Ok(page(202, DDG_CHALLENGE)),
            Ok(page(200, BRAVE_JSON)),
        ],
    );
    assert_eq!(asked.len(), 4);
    assert!(asked[0].starts_with("http://127.0.0.1:8888/search?q=rust+wasm&format=json"));
    assert!(asked[1].starts_with("http://127.0.0.1:8889/search?"));
    assert!(asked[2].starts_with("https://html.duckduckgo.com/html/?q=rust+wasm"));
    assert!(
        asked[3].starts_with("https://api.search.brave.com/res/v1/web/search?q=rust+wasm&count=5")
    );
    let out = out.unwrap();
    assert!(out.starts_with("Results for \"rust wasm\" from brave:\n\n1. Rust and WebAssembly\n   https://rustwasm.github.io/docs/book/\n   This small book"), "{out}");
    assert!(
        out.contains("\n2. wasm-bindgen - crates.io\n   https://crates.io/crates/wasm-bindgen\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "tried first, without an answer: searxng (http://127.0.0.1:8888): egress denied"
        ),
        "{out}"
    );
    assert!(
        out.contains("searxng (http://127.0.0.1:8889): HTTP 403: 403 Forbidden"),
        "{out}"
    );
    assert!(out.contains("duckduckgo: HTTP 202"), "{out}");
}

#[test]
fn the_first_answer_wins_and_count_is_kept() {
    let query = Query {
        text: "rust wasm",
        count: 1,
        freshness: None,
    };
    let (out, asked) = run(ALL, &query, vec![Ok(page(200, SEARXNG_JSON))]);
    assert_eq!(asked.len(), 1);
    let out = out.unwrap();
    assert_eq!(
        out,
        "Results for \"rust wasm\" from searxng (http://127.0.0.1:8888):\n\n1. Rust and WebAssembly\n   \
         https://rustwasm.github.io/docs/book/\n   This small book describes how to use Rust and WebAssembly together."
    );
}

#[test]
fn duplicates_are_dropped() {
    let (out, _) = run(ALL, &q("rust wasm"), vec![Ok(page(200, SEARXNG_JSON))]);
    let out = out.unwrap();
    assert!(out.contains("\n2. GitHub"), "{out}");
    assert!(!out.contains("\n3.") && !out.contains("duplicate"), "{out}");
}

#[test]
fn zero_results_is_an_answer() {
    let (out, asked) = run(
        r#"{"providers": ["duckduckgo", "brave"]}"#,
        &q("zzqxv"),
        vec![Ok(page(200, DDG_NO_RESULTS))],
    );
    assert_eq!(asked.len(), 1);
    assert_eq!(
        out.unwrap(),
        "No results for \"zzqxv\" (searched with duckduckgo)."
    );
}

#[test]
fn an_unparsable_answer_moves_on() {
    let (out, _) = run(
        r#"{"providers": ["searxng", "duckduckgo"], "searxng": {"base_urls": ["http://s.example"]}}"#,
        &q("rust"),
        vec![
            Ok(page(200, "<html>not json</html>")),
            Ok(page(200, DDG_PAGE)),
        ],
    );
    let out = out.unwrap();
    assert!(
        out.starts_with("Results for \"rust\" from duckduckgo:"),
        "{out}"
    );
    assert!(
        out.contains("searxng (http://s.example): the answer is not JSON"),
        "{out}"
    );
}

#[test]
fn all_failing_lists_every_backend() {
    let (out, _) = run(
        ALL,
        &q("rust"),
        vec![
            Err(ToolError::Failed(
                "could not connect to host 127.0.0.1:8888: connection refused".into(),
            )),
            Err(ToolError::Denied("egress denied: b".into())),
            Ok(page(202, DDG_CHALLENGE)),
            Ok(page(
                401,
                r#"{"type":"ErrorResponse","error":{"detail":"bad token"}}"#,
            )),
        ],
    );
    match out {
        Err(ToolError::Failed(m)) => {
            let lines: Vec<&str> = m.lines().collect();
            assert_eq!(lines[0], "no search backend answered:");
            assert_eq!(
                lines[1],
                "- searxng (http://127.0.0.1:8888): could not connect to host 127.0.0.1:8888: connection refused"
            );
            assert_eq!(
                lines[2],
                "- searxng (http://127.0.0.1:8889): egress denied: b"
            );
            assert!(
                lines[3].starts_with("- duckduckgo: HTTP 202: the page has neither"),
                "{m}"
            );
            assert!(lines[4].starts_with("- brave: HTTP 401: {\"type\""), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn all_denied_is_denied() {
    let (out, _) = run(
        r#"{"providers": ["duckduckgo", "brave"]}"#,
        &q("rust"),
        vec![
            Err(ToolError::Denied("egress denied: a".into())),
            Err(ToolError::Denied("egress denied: b".into())),
        ],
    );
    assert_eq!(
        out,
        Err(ToolError::Denied(
            "no search backend answered:\n- duckduckgo: egress denied: a\n- brave: egress denied: b"
                .into()
        ))
    );
}

#[test]
fn settings_defaults_and_mistakes() {
    // No table: DuckDuckGo at its public address.
    let (_, asked) = run("{}", &q("x"), vec![Ok(page(200, DDG_NO_RESULTS))]);
    assert_eq!(asked, vec!["https://html.duckduckgo.com/html/?q=x"]);
    // Absent or null searxng options.
    let s = settings(
        r#"{"providers":["searxng"],"searxng":{"base_urls":["http://s"],"engines":null}}"#,
    );
    assert_eq!(s.searxng.as_ref().unwrap().engines, None);
    // A listed backend without its table, and an unknown one.
    let (out, _) = run(r#"{"providers":["bing","searxng"]}"#, &q("x"), vec![]);
    let m = out.unwrap_err();
    assert!(
        m.message().contains("- bing: not a known search backend"),
        "{m}"
    );
    assert!(m.message().contains("- searxng: no base_urls"), "{m}");
    assert!(
        oxydra_sdk::settings::parse_str::<Settings>("web_search", r#"{"providers":"x"}"#).is_err()
    );
}

#[test]
fn snippets_are_cut_on_a_character_boundary() {
    let long = "é".repeat(400);
    let json =
        format!(r#"{{"results":[{{"url":"https://a.example/","title":"A","content":"{long}"}}]}}"#);
    let (out, _) = run(
        r#"{"providers":["searxng"],"searxng":{"base_urls":["http://s"]}}"#,
        &q("x"),
        vec![Ok(page(200, &json))],
    );
    let out = out.unwrap();
    let snippet = out.lines().nth(4).unwrap().trim();
    assert_eq!(snippet, format!("{}…", "é".repeat(300)));
}

#[test]
fn freshness_reaches_every_backend() {
    let query = Query {
        text: "x",
        count: 5,
        freshness: Some(Freshness::Month.as_str()),
    };
    let (_, asked) = run(
        ALL,
        &query,
        vec![
            Err(ToolError::Failed("a".into())),
            Err(ToolError::Failed("b".into())),
            Err(ToolError::Failed("c".into())),
            Ok(page(200, BRAVE_JSON)),
        ],
    );
    assert!(asked[0].contains("&time_range=month"));
    assert!(asked[2].ends_with("&df=m"));
    assert!(asked[3].ends_with("&freshness=pm"));
}

#[test]
fn argument_bounds() {
    let schema = WebSearch::schema();
    assert_eq!(schema["required"], serde_json::json!(["query"]));
    assert_eq!(schema["properties"]["count"]["minimum"], 1);
    assert_eq!(schema["properties"]["count"]["maximum"], 10);
    assert_eq!(schema["properties"]["count"]["default"], 5);
    assert_eq!(
        schema["properties"]["freshness"]["enum"],
        serde_json::json!(["day", "week", "month", "year"])
    );
    assert_eq!(schema["properties"]["query"]["maxLength"], 400);
    let long = "x".repeat(401);
    for args in [
        r#"{"query":""}"#.to_string(),
        r#"{"query":"   "}"#.to_string(),
        format!(r#"{{"query":"{long}"}}"#),
        r#"{"query":"x","count":0}"#.to_string(),
        r#"{"query":"x","count":11}"#.to_string(),
        r#"{"query":"x","freshness":"hour"}"#.to_string(),
        r#"{"count":3}"#.to_string(),
    ] {
        assert!(
            matches!(
                WebSearch::invoke(&args),
                Err(ToolError::InvalidArguments(_))
            ),
            "{args}"
        );
    }
    assert_eq!(check_query("  rust  ").unwrap(), "rust");
    assert!(check_query(&"é".repeat(400)).is_ok());
}

#[test]
fn description_states_the_limits() {
    let d = WebSearch::DESCRIPTION;
    for s in [
        "http and https only",
        "public addresses",
        "5 redirects",
        "5 MiB",
        "30 seconds",
    ] {
        assert!(d.contains(s), "{s}: {d}");
    }
}
