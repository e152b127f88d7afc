//! `web_fetch`: fetch a web page and return it as text (profile web).

mod convert;

use convert::Kind;
use oxydra_sdk::web::{self, Page};
use oxydra_sdk::{ToolError, tool};

/// Characters of content returned when neither the call nor the operator says.
const DEFAULT_MAX_CHARS: usize = 50_000;
const MIN_MAX_CHARS: usize = 1_000;
const MAX_MAX_CHARS: usize = 100_000;
/// Most bytes of a response read (a page's text is far shorter than its HTML).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Characters of an error page quoted in the error.
const ERROR_BODY_CHARS: usize = 500;
const ACCEPT: &str = "text/html,application/xhtml+xml,application/json,text/plain;q=0.9,*/*;q=0.1";
const USER_AGENT: &str = "Oxydra-web_fetch/0.1";

/// Fetch a web page (or other text resource) over HTTP or HTTPS and return it as text.
/// HTML comes back as Markdown-like text with its links kept as [text](url), reduced to
/// the page's main content when the page marks one (<main> or a single <article>); JSON
/// comes back pretty-printed; other text as it is. Binary content (images, PDF,
/// archives, audio, video, octet-stream) is refused: web_fetch returns text only. The
/// first line gives the final URL after redirects (and the status when it is not 200).
/// The content is cut at max_chars characters, with a note saying how much was left
/// out. An HTTP error status is an error quoting the start of the page. Limits: http and
/// https only; public addresses only unless the operator allowed more; at most 5
/// redirects; a response of at most 5 MiB by default (only its first 4 MiB are read); 30
/// seconds per request by default.
#[tool(tier = "read-only")]
fn web_fetch(
    /// The http:// or https:// URL to fetch
    url: String,
    /// Most characters of content to return, 1000 to 100000 (default and ceiling: 50000
    /// unless the operator set another)
    #[arg(minimum = 1000, maximum = 100000)]
    max_chars: Option<u32>,
) -> Result<String, ToolError> {
    let url = check_url(&url)?;
    // The operator's max_chars is the ceiling; the model may ask for less.
    let ceiling = default_max_chars(&oxydra_sdk::settings::get());
    let max_chars = match max_chars {
        Some(n) => usize::try_from(n).unwrap_or(MAX_MAX_CHARS).min(ceiling),
        None => ceiling,
    };
    let page = web::get(
        &url,
        &[("accept", ACCEPT), ("user-agent", USER_AGENT)],
        MAX_BODY_BYTES,
    )?;
    render(&page, max_chars)
}

/// The URL, trimmed, when it is an absolute http(s) URL.
fn check_url(url: &str) -> Result<String, ToolError> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(url.to_string());
    }
    let scheme = match lower.split_once("://") {
        Some((s, _)) => Some(s.to_string()),
        None => oxydra_sdk::url::scheme(url).filter(|s| {
            matches!(
                s.as_str(),
                "mailto" | "data" | "javascript" | "file" | "about" | "tel" | "blob"
            )
        }),
    };
    Err(ToolError::InvalidArguments(match scheme {
        Some(s) => {
            format!("`{url}` is a {s}: URL; web_fetch fetches http:// and https:// URLs only")
        }
        None if url.starts_with(|c: char| c.is_ascii_alphanumeric()) => format!(
            "`{url}` is not an absolute URL; web_fetch fetches http:// and https:// URLs only \
             (did you mean https://{url}?)"
        ),
        None => format!(
            "`{url}` is not an absolute URL; web_fetch fetches http:// and https:// URLs only"
        ),
    }))
}

/// `max_chars` from the operator's settings, kept within the bounds a call may ask for.
fn default_max_chars(settings: &serde_json::Value) -> usize {
    settings
        .get("max_chars")
        .and_then(serde_json::Value::as_u64)
        .map_or(DEFAULT_MAX_CHARS, |n| {
            usize::try_from(n)
                .unwrap_or(MAX_MAX_CHARS)
                .clamp(MIN_MAX_CHARS, MAX_MAX_CHARS)
        })
}

/// The tool's answer for a response.
fn render(page: &Page, max_chars: usize) -> Result<String, ToolError> {
    let media = page.content_type();
    let kind = convert::kind(media.as_deref(), &page.body);
    if !page.is_success() {
        return Err(status_error(page, kind));
    }
    if kind == Kind::Binary {
        return Err(ToolError::Failed(format!(
            "{} is {}, not text; web_fetch returns text only",
            page.final_url,
            media.map_or_else(|| "binary data".to_string(), |m| format!("`{m}`"))
        )));
    }
    let (title, content) = content(page, kind);
    let mut out = format!("URL: {}", page.final_url);
    if page.status != 200 {
        out.push_str(&format!(" (HTTP {})", page.status));
    }
    out.push('\n');
    if let Some(title) = title {
        out.push_str(&format!("Title: {title}\n"));
    }
    out.push('\n');
    let content = content.trim();
    let (shown, total) = convert::cap(content, max_chars);
    if shown.is_empty() {
        out.push_str("(the page has no text)");
    }
    out.push_str(shown);
    if let Some(total) = total {
        let more = if max_chars < MAX_MAX_CHARS {
            format!("ask for more with max_chars (at most {MAX_MAX_CHARS})")
        } else {
            "that is the most web_fetch returns".to_string()
        };
        out.push_str(&format!(
            "\n\n[truncated: {max_chars} of {total} characters shown; {more}]"
        ));
    }
    if page.truncated {
        out.push_str(&format!(
            "\n\n[the response is over {} MiB; only its first {} MiB were read]",
            MAX_BODY_BYTES >> 20,
            MAX_BODY_BYTES >> 20
        ));
    }
    Ok(out)
}

/// The page's title (HTML only) and its content as text.
fn content(page: &Page, kind: Kind) -> (Option<String>, String) {
    let charset = page.charset();
    let text = convert::decode(&page.body, charset.as_deref(), kind == Kind::Html);
    match kind {
        Kind::Html => convert::html_to_text(&text, &page.final_url),
        Kind::Json => (None, convert::pretty_json(&text).unwrap_or(text)),
        Kind::Text | Kind::Binary => (None, text),
    }
}

/// The error for a non-2xx response: the status and the start of the page.
fn status_error(page: &Page, kind: Kind) -> ToolError {
    let mut msg = format!("{} answered HTTP {}", page.final_url, page.status);
    if (300..400).contains(&page.status) {
        match page.header("location") {
            Some(to) => msg.push_str(&format!(", a redirect to {to} that was not followed")),
            None => msg.push_str(", a redirect without a Location header"),
        }
    }
    if kind != Kind::Binary {
        let (_, text) = content(page, kind);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let (start, cut) = convert::cap(&text, ERROR_BODY_CHARS);
        if !start.is_empty() {
            msg.push_str(&format!(
                ": {start}{}",
                if cut.is_some() { " ..." } else { "" }
            ));
        }
    }
    match page.status {
        404 | 410 => ToolError::NotFound(msg),
        _ => ToolError::Failed(msg),
    }
}

oxydra_sdk::export_tool!(WebFetch);

#[cfg(test)]
mod tests;
