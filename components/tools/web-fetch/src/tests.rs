#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use oxydra_sdk::Tool;

fn page(status: u16, content_type: Option<&str>, body: &[u8]) -> Page {
    Page {
        status,
        headers: content_type
            .map(|c| vec![("content-type".to_string(), c.as_bytes().to_vec())])
            .unwrap_or_default(),
        final_url: "https://example.com/docs/page.html".to_string(),
        body: body.to_vec(),
        truncated: false,
    }
}

fn ok(p: &Page, max_chars: usize) -> String {
    render(p, max_chars).unwrap_or_else(|e| panic!("{e}"))
}

const ARTICLE: &str = r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Rust &amp; WebAssembly</title>
<style>body { color: red }</style><script>var x = "<p>not text</p>";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/blog/">Blog</a></nav>
<main>
<h1>Getting started</h1>
<p>Read the <a href="guide/intro.html">introduction</a> and the
<a href="https://www.rust-lang.org/learn">official docs</a>. It is <strong>fast</strong>
and <em>safe</em>; run <code>cargo build</code>.</p>
<ul><li>First item</li><li>Second <a href="#top">item</a></li></ul>
<p><a href="/x"><img src="/icon.png"></a><img src="/logo.png" alt="Logo"></p>
<p>Enough text here to count as the main content of the page, which a reader wants to see.</p>
</main>
<footer>Copyright footer text</footer>
</body></html>"##;

#[test]
fn html_becomes_markdown_with_links() {
    let out = ok(
        &page(200, Some("text/html; charset=utf-8"), ARTICLE.as_bytes()),
        50_000,
    );
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("URL: https://example.com/docs/page.html")
    );
    assert_eq!(lines.next(), Some("Title: Rust & WebAssembly"));
    assert!(out.contains("# Getting started"), "{out}");
    assert!(
        out.contains("[introduction](https://example.com/docs/guide/intro.html)"),
        "{out}"
    );
    assert!(
        out.contains("[official docs](https://www.rust-lang.org/learn)"),
        "{out}"
    );
    assert!(out.contains("**fast**") && out.contains("*safe*"), "{out}");
    assert!(out.contains("`cargo build`"), "{out}");
    assert!(out.contains("- First item"), "{out}");
    // A same-page anchor keeps its text only; an image link with no text disappears.
    assert!(out.contains("- Second item"), "{out}");
    assert!(!out.contains("[]("), "{out}");
    assert!(
        out.contains("![Logo](https://example.com/logo.png)"),
        "{out}"
    );
    // Scripts and styles are not text; <main> leaves out the navigation and footer.
    assert!(
        !out.contains("not text") && !out.contains("color: red"),
        "{out}"
    );
    assert!(!out.contains("Home") && !out.contains("Copyright"), "{out}");
}

#[test]
fn a_page_without_main_is_rendered_whole() {
    let html = r#"<html><body><nav><a href="/">Home</a></nav>
        <h2>Section</h2><p>Text with a <a href="b.html">link (b)</a>.</p>
        <table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
        </body></html>"#;
    let (title, text) = convert::html_to_text(html, "http://h.example/dir/a.html");
    assert_eq!(title, None);
    assert!(text.contains("[Home](http://h.example/)"), "{text}");
    assert!(text.contains("## Section"), "{text}");
    assert!(
        text.contains("[link (b)](http://h.example/dir/b.html)"),
        "{text}"
    );
    assert!(text.contains("Name") && text.contains("Value"), "{text}");
}

#[test]
fn a_short_main_falls_back_to_the_whole_page() {
    let html = r#"<html><body><p>Everything that matters is outside main.</p>
        <main><div id="app"></div></main></body></html>"#;
    let (_, text) = convert::html_to_text(html, "http://h.example/");
    assert!(text.contains("Everything that matters"), "{text}");
}

#[test]
fn link_targets_that_would_break_markdown_are_escaped() {
    let html = r#"<main><p><a href="/wiki/Rust_(programming_language)">Rust</a>
        <a href="javascript:void(0)">click</a></p><p>padding</p></main>"#;
    let (_, text) = convert::html_to_text(html, "https://en.wikipedia.org/wiki/Main");
    assert!(
        text.contains("[Rust](https://en.wikipedia.org/wiki/Rust_%28programming_language%29)"),
        "{text}"
    );
    assert!(
        text.contains("click") && !text.contains("javascript"),
        "{text}"
    );
}

#[test]
fn charset_from_the_content_type() {
    // "Café – naïve" in windows-1252 (0x96 is the en dash there).
    let body = b"Caf\xe9 \x96 na\xefve";
    let out = ok(
        &page(200, Some("text/plain; charset=windows-1252"), body),
        50_000,
    );
    assert!(out.ends_with("Café – naïve"), "{out}");
    // ISO-8859-1 is read as windows-1252, as browsers do.
    let out = ok(
        &page(200, Some("text/plain; charset=ISO-8859-1"), body),
        50_000,
    );
    assert!(out.ends_with("Café – naïve"), "{out}");
}

#[test]
fn charset_from_meta_or_guessed() {
    let html =
        b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\">\
        </head><body><p>Gr\xfc\xdfe aus M\xfcnchen</p></body></html>";
    let out = ok(&page(200, Some("text/html"), html), 50_000);
    assert!(out.contains("Grüße aus München"), "{out}");
    let html = b"<meta charset='windows-1252'><p>\x93quoted\x94</p>";
    let out = ok(&page(200, Some("text/html"), html), 50_000);
    assert!(out.contains("\u{201c}quoted\u{201d}"), "{out}");
    // No charset anywhere, not UTF-8: windows-1252.
    let out = ok(&page(200, None, b"plain caf\xe9"), 50_000);
    assert!(out.ends_with("plain café"), "{out}");
    // A header charset beats the meta; UTF-8 stays UTF-8.
    let html = "<meta charset=\"windows-1252\"><p>naïve ✓</p>".as_bytes();
    let out = ok(&page(200, Some("text/html; charset=utf-8"), html), 50_000);
    assert!(out.contains("naïve ✓"), "{out}");
    // Shift_JIS.
    let out = ok(
        &page(
            200,
            Some("text/plain; charset=Shift_JIS"),
            b"\x93\xfa\x96\x7b",
        ),
        50_000,
    );
    assert!(out.ends_with("日本"), "{out}");
}

#[test]
fn truncation_lands_on_a_character_boundary() {
    let text = "é".repeat(1500) + &"日".repeat(500);
    let out = ok(&page(200, Some("text/plain"), text.as_bytes()), 1000);
    let (body, note) = out
        .split_once("\n\n[truncated")
        .unwrap_or_else(|| panic!("{out}"));
    let content = body.split_once("\n\n").map(|(_, c)| c).unwrap_or_default();
    assert_eq!(content, "é".repeat(1000));
    assert_eq!(
        note,
        ": 1000 of 2000 characters shown; ask for more with max_chars (at most 100000)]"
    );
    let (cut, total) = convert::cap("aé日b", 3);
    assert_eq!((cut, total), ("aé日", Some(4)));
    assert_eq!(convert::cap("aé", 2), ("aé", None));
    let out = ok(
        &page(200, Some("text/plain"), "x".repeat(100_001).as_bytes()),
        100_000,
    );
    assert!(
        out.ends_with("that is the most web_fetch returns]"),
        "{out}"
    );
}

#[test]
fn a_body_cut_by_bytes_says_so() {
    let mut p = page(200, Some("text/plain"), b"the first part");
    p.truncated = true;
    let out = ok(&p, 50_000);
    assert!(out.ends_with("only its first 4 MiB were read]"), "{out}");
}

#[test]
fn binaries_are_refused() {
    for (ct, body) in [
        (Some("image/png"), &b"\x89PNG\r\n\x1a\n"[..]),
        (Some("application/pdf"), b"%PDF-1.7"),
        (Some("application/octet-stream"), b"text really"),
        (Some("application/zip"), b"PK\x03\x04"),
        (Some("video/mp4"), b"...."),
        (None, b"\x00\x01\x02binary"),
    ] {
        match render(&page(200, ct, body), 50_000) {
            Err(ToolError::Failed(m)) => {
                assert!(m.contains("web_fetch returns text only"), "{m}");
                if let Some(ct) = ct {
                    assert!(m.contains(ct), "{m}");
                }
            }
            other => panic!("{ct:?}: {other:?}"),
        }
    }
}

#[test]
fn json_is_pretty_printed_in_its_own_order() {
    let body = br#"{"zeta":1,"alpha":[1,2.50,{}],"s":"a{b}, \"c\": [d]","e":[],"n":null}"#;
    let out = ok(&page(200, Some("application/json"), body), 50_000);
    let content = out.split_once("\n\n").map(|(_, c)| c).unwrap_or_default();
    assert_eq!(
        content,
        "{\n  \"zeta\": 1,\n  \"alpha\": [\n    1,\n    2.50,\n    {}\n  ],\n  \
         \"s\": \"a{b}, \\\"c\\\": [d]\",\n  \"e\": [],\n  \"n\": null\n}"
    );
    // Not JSON after all: passed through.
    let out = ok(&page(200, Some("application/json"), b"{oops"), 50_000);
    assert!(out.ends_with("\n\n{oops"), "{out}");
    // Sniffed JSON (no content type).
    let out = ok(&page(200, None, b"[1,2]"), 50_000);
    assert!(out.ends_with("[\n  1,\n  2\n]"), "{out}");
}

#[test]
fn other_text_passes_through() {
    let out = ok(
        &page(200, Some("text/markdown"), b"# Title\n\nbody"),
        50_000,
    );
    assert!(out.ends_with("\n\n# Title\n\nbody"), "{out}");
    let out = ok(&page(200, Some("application/rss+xml"), b"<rss/>"), 50_000);
    assert!(out.ends_with("<rss/>"), "{out}");
    let out = ok(&page(203, Some("text/plain"), b"x"), 50_000);
    assert!(
        out.starts_with("URL: https://example.com/docs/page.html (HTTP 203)\n"),
        "{out}"
    );
    let out = ok(&page(200, Some("text/plain"), b"  "), 50_000);
    assert!(out.ends_with("(the page has no text)"), "{out}");
}

#[test]
fn error_statuses() {
    let html = b"<html><body><h1>Not Found</h1><p>No such page.</p></body></html>";
    match render(&page(404, Some("text/html"), html), 50_000) {
        Err(ToolError::NotFound(m)) => assert_eq!(
            m,
            "https://example.com/docs/page.html answered HTTP 404: # Not Found No such page."
        ),
        other => panic!("{other:?}"),
    }
    let long = "x".repeat(2000);
    match render(&page(503, Some("text/plain"), long.as_bytes()), 50_000) {
        Err(ToolError::Failed(m)) => {
            assert!(m.starts_with("https://example.com/docs/page.html answered HTTP 503: xxx"));
            assert!(m.ends_with("x ...") && m.len() < 600, "{m}");
        }
        other => panic!("{other:?}"),
    }
    match render(&page(302, None, b""), 50_000) {
        Err(ToolError::Failed(m)) => assert!(m.ends_with("without a Location header"), "{m}"),
        other => panic!("{other:?}"),
    }
    match render(&page(500, Some("image/png"), b"\x89PNG"), 50_000) {
        Err(ToolError::Failed(m)) => {
            assert_eq!(m, "https://example.com/docs/page.html answered HTTP 500")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn urls_are_checked() {
    assert_eq!(
        check_url(" HTTPS://example.com/a ").ok().as_deref(),
        Some("HTTPS://example.com/a")
    );
    for (url, says) in [
        ("ftp://example.com/f", "is a ftp: URL"),
        ("file:///etc/passwd", "is a file: URL"),
        ("mailto:a@example.com", "is a mailto: URL"),
        ("example.com/page", "did you mean https://example.com/page?"),
        ("/relative", "is not an absolute URL"),
    ] {
        match check_url(url) {
            Err(ToolError::InvalidArguments(m)) => assert!(m.contains(says), "{url}: {m}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn argument_bounds() {
    let schema = WebFetch::schema();
    assert_eq!(schema["required"], serde_json::json!(["url"]));
    assert_eq!(schema["properties"]["max_chars"]["minimum"], 1000);
    assert_eq!(schema["properties"]["max_chars"]["maximum"], 100000);
    for args in [
        r#"{"url":"https://example.com","max_chars":999}"#,
        r#"{"url":"https://example.com","max_chars":100001}"#,
        r#"{"max_chars":5000}"#,
        r#"{"url":"ftp://example.com"}"#,
    ] {
        assert!(
            matches!(WebFetch::invoke(args), Err(ToolError::InvalidArguments(_))),
            "{args}"
        );
    }
}

#[test]
fn max_chars_from_the_settings() {
    use serde_json::json;
    assert_eq!(default_max_chars(&json!({})), 50_000);
    assert_eq!(default_max_chars(&json!({"max_chars": 20000})), 20_000);
    assert_eq!(default_max_chars(&json!({"max_chars": 5})), 1_000);
    assert_eq!(
        default_max_chars(&json!({"max_chars": 10_000_000})),
        100_000
    );
    assert_eq!(default_max_chars(&json!({"max_chars": "many"})), 50_000);
}

#[test]
fn description_states_the_limits() {
    let d = WebFetch::DESCRIPTION;
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
