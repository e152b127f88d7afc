//! The three search backends: the URL each is asked, and how its answer is read. Plain
//! functions (no host calls), tested natively on samples of each backend's real format.

use crate::html::{self, Tok};
use oxydra_sdk::url;
use serde_json::Value;

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

/// What is searched for.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub text: &'a str,
    pub count: usize,
    /// `day`, `week`, `month` or `year`.
    pub freshness: Option<&'a str>,
}

/// `[tools.web_search.searxng]`: instances tried in order, and what to ask them for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Searxng {
    pub base_urls: Vec<String>,
    pub engines: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
    pub safesearch: Option<u8>,
}

/// `GET {base}/search?q=...&format=json[&time_range=..][&engines=..][&categories=..][&safesearch=N]`
pub fn searxng_url(base: &str, opts: &Searxng, q: &Query) -> String {
    let engines = opts.engines.as_ref().map(|e| e.join(","));
    let categories = opts.categories.as_ref().map(|c| c.join(","));
    let safesearch = opts.safesearch.map(|s| s.to_string());
    let mut pairs = vec![("q", q.text), ("format", "json")];
    if let Some(f) = q.freshness {
        pairs.push(("time_range", f));
    }
    for (k, v) in [
        ("engines", &engines),
        ("categories", &categories),
        ("safesearch", &safesearch),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            pairs.push((k, v));
        }
    }
    url::with_query(&join(base, "search"), &pairs)
}

/// The `results` of a SearXNG JSON answer. No results while some engines did not
/// answer is a failure (the engines were blocked or timed out), so the next backend is
/// tried.
pub fn parse_searxng(body: &[u8]) -> Result<Vec<Hit>, String> {
    let v = json_object(body)?;
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .ok_or("the answer has no `results` list")?;
    let hits: Vec<Hit> = results
        .iter()
        .filter_map(|r| {
            hit(
                str_of(r, "title"),
                str_of(r, "url")?,
                str_of(r, "content"),
                false,
            )
        })
        .collect();
    if hits.is_empty()
        && let Some(dead) = v
            .get("unresponsive_engines")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
    {
        let names: Vec<String> = dead
            .iter()
            .map(|e| match e.as_array().map(Vec::as_slice) {
                Some([name, why, ..]) => format!(
                    "{} ({})",
                    name.as_str().unwrap_or("?"),
                    why.as_str().unwrap_or("?")
                ),
                _ => e.to_string(),
            })
            .collect();
        return Err(format!(
            "no results, and these engines did not answer: {}",
            names.join(", ")
        ));
    }
    Ok(hits)
}

/// `GET {base}/html/?q=...[&df=d|w|m|y]`
pub fn duckduckgo_url(base: &str, q: &Query) -> String {
    let mut pairs = vec![("q", q.text)];
    if let Some(f) = q.freshness {
        pairs.push(("df", &f[..1]));
    }
    url::with_query(&join(base, "html/"), &pairs)
}

/// The organic results of DuckDuckGo's HTML results page (ads left out). A page with
/// neither results nor DuckDuckGo's "No results" notice is a failure: a CAPTCHA page or
/// a changed layout.
pub fn parse_duckduckgo(page: &str) -> Result<Vec<Hit>, String> {
    #[derive(Default)]
    struct Partial {
        ad: bool,
        title: Option<String>,
        href: Option<String>,
        snippet: Option<String>,
    }
    enum Field {
        Title,
        Snippet,
    }
    struct Capture {
        field: Field,
        tag: String,
        nesting: usize,
        text: String,
    }
    let mut hits = Vec::new();
    let mut no_results = false;
    let mut div_depth = 0usize;
    // The div depth of the open result and what was read of it.
    let mut open: Option<(usize, Partial)> = None;
    let mut capture: Option<Capture> = None;
    let finish = |p: Partial, hits: &mut Vec<Hit>| {
        if p.ad {
            return;
        }
        if let (Some(title), Some(href)) = (p.title, p.href)
            && let Some(target) = duckduckgo_target(&href)
            && let Some(h) = hit(Some(title), target, p.snippet, false)
        {
            hits.push(h);
        }
    };
    for tok in html::tokens(page) {
        match &tok {
            Tok::Start { name, .. } => {
                if tok.has_class("no-results") {
                    no_results = true;
                }
                if name == "div" {
                    div_depth += 1;
                    if open.is_none() && tok.has_class("result") {
                        let ad = tok.has_class("result--ad");
                        open = Some((
                            div_depth,
                            Partial {
                                ad,
                                ..Partial::default()
                            },
                        ));
                    }
                }
                if let Some(c) = &mut capture {
                    if *name == c.tag {
                        c.nesting += 1;
                    }
                } else if let Some((_, p)) = &mut open {
                    if name == "a" && tok.has_class("result__a") && p.title.is_none() {
                        p.href = tok.attr("href").map(str::to_string);
                        capture = Some(Capture {
                            field: Field::Title,
                            tag: name.clone(),
                            nesting: 0,
                            text: String::new(),
                        });
                    } else if tok.has_class("result__snippet") && p.snippet.is_none() {
                        capture = Some(Capture {
                            field: Field::Snippet,
                            tag: name.clone(),
                            nesting: 0,
                            text: String::new(),
                        });
                    }
                }
            }
            Tok::End(name) => {
                if let Some(c) = &mut capture
                    && *name == c.tag
                {
                    if c.nesting > 0 {
                        c.nesting -= 1;
                    } else if let Some(c) = capture.take()
                        && let Some((_, p)) = &mut open
                    {
                        let text = html::squash(&c.text);
                        match c.field {
                            Field::Title => p.title = Some(text),
                            Field::Snippet => p.snippet = Some(text),
                        }
                    }
                }
                if name == "div" {
                    if open.as_ref().is_some_and(|(d, _)| *d == div_depth)
                        && let Some((_, p)) = open.take()
                    {
                        capture = None;
                        finish(p, &mut hits);
                    }
                    div_depth = div_depth.saturating_sub(1);
                }
            }
            Tok::Text(s) => {
                if let Some(c) = &mut capture {
                    c.text.push_str(s);
                }
            }
        }
    }
    if let Some((_, p)) = open {
        finish(p, &mut hits);
    }
    if hits.is_empty() && !no_results {
        return Err(
            "the page has neither results nor a \"No results\" notice (DuckDuckGo may be \
             asking for a CAPTCHA, or its page changed)"
                .to_string(),
        );
    }
    Ok(hits)
}

/// The real target of a DuckDuckGo result link: the `uddg` parameter of its
/// `//duckduckgo.com/l/?uddg=...` redirect, or a plain absolute link. `None` for ad
/// links (`y.js`) and anything else.
pub fn duckduckgo_target(href: &str) -> Option<String> {
    let href = href.trim();
    let abs = if href.starts_with("//") {
        format!("https:{href}")
    } else if href.starts_with('/') {
        format!("https://duckduckgo.com{href}")
    } else {
        href.to_string()
    };
    let lower = abs.to_ascii_lowercase();
    let (host, path) = match lower.split_once("://") {
        Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
        None => return None,
    };
    let ddg = host == "duckduckgo.com" || host.ends_with(".duckduckgo.com");
    if ddg && path.starts_with("y.js") {
        return None;
    }
    if ddg && path.starts_with("l/") {
        return url::query_value(&abs, "uddg").filter(|u| is_http(u));
    }
    is_http(&abs).then_some(abs)
}

/// `GET {base}/res/v1/web/search?q=...&count=N[&freshness=pd|pw|pm|py]`
pub fn brave_url(base: &str, q: &Query) -> String {
    let count = q.count.to_string();
    let mut pairs = vec![("q", q.text), ("count", count.as_str())];
    let freshness = q.freshness.map(|f| format!("p{}", &f[..1]));
    if let Some(f) = &freshness {
        pairs.push(("freshness", f));
    }
    url::with_query(&join(base, "res/v1/web/search"), &pairs)
}

/// The `web.results` of a Brave Search API answer (titles and descriptions carry
/// `<strong>` tags and entities: they are read as HTML).
pub fn parse_brave(body: &[u8]) -> Result<Vec<Hit>, String> {
    let v = json_object(body)?;
    if let Some(err) = v.get("error") {
        let detail = err
            .get("detail")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string);
        return Err(format!("Brave answered with an error: {detail}"));
    }
    let Some(web) = v.get("web") else {
        // Brave leaves `web` out when nothing matched.
        return match v.get("type").and_then(Value::as_str) {
            Some("search") => Ok(Vec::new()),
            _ => Err("the answer is not a web search result (no `web`)".to_string()),
        };
    };
    let results = web
        .get("results")
        .and_then(Value::as_array)
        .ok_or("the answer has no `web.results` list")?;
    Ok(results
        .iter()
        .filter_map(|r| {
            hit(
                str_of(r, "title"),
                str_of(r, "url")?,
                str_of(r, "description"),
                true,
            )
        })
        .collect())
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("the answer is JSON but not an object".to_string()),
        Err(e) => Err(format!("the answer is not JSON ({e})")),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A result with its text cleaned; `None` without an http(s) URL.
fn hit(title: Option<String>, url: String, snippet: Option<String>, html: bool) -> Option<Hit> {
    let url = url.trim().to_string();
    if !is_http(&url) {
        return None;
    }
    let clean = |s: Option<String>| {
        let s = s.unwrap_or_default();
        if html {
            html::text(&s)
        } else {
            html::squash(&s)
        }
    };
    let title = clean(title);
    Some(Hit {
        title: if title.is_empty() { url.clone() } else { title },
        snippet: clean(snippet),
        url,
    })
}

fn is_http(u: &str) -> bool {
    matches!(url::scheme(u).as_deref(), Some("http" | "https")) && u.contains("://")
}

/// Join a base URL and a path without doubling or dropping the `/`.
fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
