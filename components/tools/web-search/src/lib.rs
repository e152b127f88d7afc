//! `web_search`: search the web through the operator's backends (profile web).

mod backends;
mod html;

use backends::{Hit, Query, Searxng};
use oxydra_sdk::web::{self, Page};
use oxydra_sdk::{ToolEnum, ToolError, tool};

const DEFAULT_PROVIDERS: &[&str] = &["duckduckgo"];
const DUCKDUCKGO_BASE: &str = "https://html.duckduckgo.com";
const BRAVE_BASE: &str = "https://api.search.brave.com";
/// Most bytes of a backend's answer read (a results page is tens of KiB).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest snippet shown, in characters.
const SNIPPET_CHARS: usize = 300;
const MAX_QUERY_CHARS: usize = 400;
const USER_AGENT: &str = "Oxydra-web_search/0.1";

#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Day,
    Week,
    Month,
    Year,
}

/// Search the web and return a numbered list of results (title, URL and snippet of
/// each), saying which search backend answered. The operator chooses the backends
/// (SearXNG, DuckDuckGo, Brave Search) and their order; when one fails, the next is
/// tried. Read a result with web_fetch. Limits: http and https only; public addresses
/// only unless the operator allowed more; at most 5 redirects; responses of at most 5 MiB
/// by default; 30 seconds per request by default (each backend tried is one request).
#[tool(tier = "read-only")]
fn web_search(
    /// What to search for, as you would type it into a search engine (at most 400
    /// characters)
    #[arg(min_length = 1, max_length = 400)]
    query: String,
    /// How many results to return, 1 to 10
    #[arg(minimum = 1, maximum = 10, default = 5)]
    count: u8,
    /// Only results from the past day, week, month or year
    freshness: Option<Freshness>,
) -> Result<String, ToolError> {
    let query = check_query(&query)?;
    let settings: Settings = oxydra_sdk::settings::parse("web_search")?;
    let q = Query {
        text: &query,
        count: usize::from(count.clamp(1, 10)),
        freshness: freshness.as_ref().map(Freshness::as_str),
    };
    search(&settings, &q, &mut |url, headers| {
        web::get(url, headers, MAX_BODY_BYTES)
    })
}

/// The query, trimmed, when it has 1 to 400 characters.
fn check_query(query: &str) -> Result<String, ToolError> {
    let q = query.trim();
    let n = q.chars().count();
    if n == 0 {
        return Err(ToolError::InvalidArguments(
            "query is empty: say what to search for".to_string(),
        ));
    }
    if n > MAX_QUERY_CHARS {
        return Err(ToolError::InvalidArguments(format!(
            "query has {n} characters; at most {MAX_QUERY_CHARS} are allowed"
        )));
    }
    Ok(q.to_string())
}

/// `[tools.web_search]`, as the host gives it (defaults filled in). A backend's table is
/// there when the backend is listed in `providers`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
struct Settings {
    providers: Vec<String>,
    searxng: Option<Searxng>,
    duckduckgo: Option<BaseUrl>,
    brave: Option<BaseUrl>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
struct BaseUrl {
    base_url: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Searxng,
    DuckDuckGo,
    Brave,
}

/// GET a URL with headers: [`web::get`], or a stand-in in the tests.
type Fetch<'a> = dyn FnMut(&str, &[(&str, &str)]) -> Result<Page, ToolError> + 'a;

/// One request to one backend.
struct Attempt {
    /// How the answer and errors name it.
    label: String,
    backend: Backend,
    url: String,
}

/// The requests to make, in order, and the backends that could not be asked at all.
fn plan(settings: &Settings, q: &Query) -> Vec<Result<Attempt, (String, ToolError)>> {
    let default_providers: Vec<String> = DEFAULT_PROVIDERS.iter().map(|p| p.to_string()).collect();
    let providers = if settings.providers.is_empty() {
        &default_providers
    } else {
        &settings.providers
    };
    let mut out = Vec::new();
    for name in providers {
        match name.as_str() {
            "searxng" => {
                let s = settings.searxng.clone().unwrap_or_default();
                if s.base_urls.is_empty() {
                    out.push(Err((
                        "searxng".to_string(),
                        ToolError::Failed("no base_urls in [tools.web_search.searxng]".to_string()),
                    )));
                }
                for base in &s.base_urls {
                    out.push(Ok(Attempt {
                        label: format!("searxng ({base})"),
                        backend: Backend::Searxng,
                        url: backends::searxng_url(base, &s, q),
                    }));
                }
            }
            "duckduckgo" => {
                let base = base_url(&settings.duckduckgo, DUCKDUCKGO_BASE);
                out.push(Ok(Attempt {
                    label: "duckduckgo".to_string(),
                    backend: Backend::DuckDuckGo,
                    url: backends::duckduckgo_url(&base, q),
                }));
            }
            "brave" => {
                let base = base_url(&settings.brave, BRAVE_BASE);
                out.push(Ok(Attempt {
                    label: "brave".to_string(),
                    backend: Backend::Brave,
                    url: backends::brave_url(&base, q),
                }));
            }
            other => out.push(Err((
                other.to_string(),
                ToolError::Failed(
                    "not a known search backend; expected searxng, duckduckgo or brave".to_string(),
                ),
            ))),
        }
    }
    out
}

fn base_url(table: &Option<BaseUrl>, default: &str) -> String {
    table
        .as_ref()
        .and_then(|t| t.base_url.clone())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Ask the backends in order until one answers.
fn search(settings: &Settings, q: &Query, fetch: &mut Fetch<'_>) -> Result<String, ToolError> {
    let mut failures: Vec<(String, ToolError)> = Vec::new();
    for step in plan(settings, q) {
        let attempt = match step {
            Ok(a) => a,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        match ask(&attempt, fetch) {
            Ok(hits) => return Ok(answer(q, &attempt.label, hits, &failures)),
            Err(e) => failures.push((attempt.label, e)),
        }
    }
    let list: Vec<String> = failures
        .iter()
        .map(|(label, e)| format!("- {label}: {}", e.message()))
        .collect();
    let msg = format!("no search backend answered:\n{}", list.join("\n"));
    if !failures.is_empty()
        && failures
            .iter()
            .all(|(_, e)| matches!(e, ToolError::Denied(_)))
    {
        Err(ToolError::Denied(msg))
    } else {
        Err(ToolError::Failed(msg))
    }
}

/// One backend's results, or why it gave none.
fn ask(attempt: &Attempt, fetch: &mut Fetch<'_>) -> Result<Vec<Hit>, ToolError> {
    let accept = match attempt.backend {
        Backend::DuckDuckGo => "text/html",
        Backend::Searxng | Backend::Brave => "application/json",
    };
    let page = fetch(
        &attempt.url,
        &[("accept", accept), ("user-agent", USER_AGENT)],
    )?;
    if !page.is_success() {
        let text = html::text(&String::from_utf8_lossy(&page.body));
        let (start, cut) = cap(&text, 200);
        return Err(ToolError::Failed(format!(
            "HTTP {}{}{start}{}",
            page.status,
            if start.is_empty() { "" } else { ": " },
            if cut { " ..." } else { "" }
        )));
    }
    let parsed = match attempt.backend {
        Backend::Searxng => backends::parse_searxng(&page.body),
        Backend::DuckDuckGo => backends::parse_duckduckgo(&String::from_utf8_lossy(&page.body)),
        Backend::Brave => backends::parse_brave(&page.body),
    };
    parsed.map_err(|e| {
        ToolError::Failed(if page.status == 200 {
            e
        } else {
            format!("HTTP {}: {e}", page.status)
        })
    })
}

/// The answer the model reads.
fn answer(q: &Query, label: &str, hits: Vec<Hit>, failures: &[(String, ToolError)]) -> String {
    let mut seen = std::collections::HashSet::new();
    let hits: Vec<Hit> = hits
        .into_iter()
        .filter(|h| seen.insert(h.url.clone()))
        .take(q.count)
        .collect();
    let mut out = if hits.is_empty() {
        format!("No results for \"{}\" (searched with {label}).", q.text)
    } else {
        format!("Results for \"{}\" from {label}:\n", q.text)
    };
    for (i, h) in hits.iter().enumerate() {
        out.push_str(&format!("\n{}. {}\n   {}\n", i + 1, h.title, h.url));
        let (snippet, cut) = cap(&h.snippet, SNIPPET_CHARS);
        if !snippet.is_empty() {
            out.push_str(&format!("   {snippet}{}\n", if cut { "…" } else { "" }));
        }
    }
    if !failures.is_empty() {
        let tried: Vec<String> = failures
            .iter()
            .map(|(l, e)| {
                let (m, cut) = cap(e.message(), 200);
                format!("{l}: {m}{}", if cut { "…" } else { "" })
            })
            .collect();
        out.push_str(&format!(
            "\n(tried first, without an answer: {})",
            tried.join("; ")
        ));
    }
    out.trim_end().to_string()
}

/// `s` cut to at most `n` characters on a character boundary, and whether it was cut.
fn cap(s: &str, n: usize) -> (&str, bool) {
    match s.char_indices().nth(n) {
        Some((end, _)) => (s[..end].trim_end(), true),
        None => (s, false),
    }
}

oxydra_sdk::export_tool!(WebSearch);

#[cfg(test)]
mod tests;
