//! Turning a response body into text for the model: what kind of content it is, its
//! character encoding, HTML to Markdown-like text, JSON pretty-printed, and the cap on
//! characters. No host calls: everything here runs natively in the unit tests.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use html2text::render::{TaggedLine, TextDecorator};
use html2text::{Element, Handle, RcDom};
use oxydra_sdk::url;

/// How a body is turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Html,
    Json,
    Text,
    /// Not text (image, PDF, archive, audio, video, octet-stream, ...).
    Binary,
}

/// The kind of a body with media type `media` (lowercased, no parameters); without one,
/// the body's first bytes decide.
pub fn kind(media: Option<&str>, body: &[u8]) -> Kind {
    let Some(media) = media else {
        return sniff(body);
    };
    match media {
        "text/html" | "application/xhtml+xml" => Kind::Html,
        m if m.ends_with("/json") || m.ends_with("+json") => Kind::Json,
        m if m.starts_with("text/") => Kind::Text,
        // XML of any kind (RSS, Atom, SVG source) is text.
        m if m.ends_with("/xml") || m.ends_with("+xml") => Kind::Text,
        "application/javascript"
        | "application/ecmascript"
        | "application/x-javascript"
        | "application/x-ndjson"
        | "application/jsonl"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml"
        | "application/x-sh"
        | "application/sql"
        | "application/graphql"
        | "application/x-www-form-urlencoded"
        | "application/x-tex"
        | "application/x-latex"
        | "application/x-subrip"
        | "application/mbox" => Kind::Text,
        _ => Kind::Binary,
    }
}

/// The kind of a body that came without a content type.
fn sniff(body: &[u8]) -> Kind {
    let head = &body[..body.len().min(1024)];
    let start: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(15)
        .map(u8::to_ascii_lowercase)
        .collect();
    if start.starts_with(b"<!doctype html") || start.starts_with(b"<html") {
        return Kind::Html;
    }
    let text_like = head
        .iter()
        .all(|&b| b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b));
    if !text_like {
        return Kind::Binary;
    }
    if (start.starts_with(b"{") || start.starts_with(b"["))
        && serde_json::from_slice::<serde_json::Value>(body).is_ok()
    {
        return Kind::Json;
    }
    Kind::Text
}

/// `body` decoded to text. The encoding is, in order: a byte-order mark, the
/// `charset` of the Content-Type, (HTML only) a `<meta charset>` near the top, UTF-8
/// when the body is valid UTF-8, and windows-1252 (what browsers assume) otherwise.
/// Bytes invalid in the chosen encoding become U+FFFD.
pub fn decode(body: &[u8], charset: Option<&str>, html: bool) -> String {
    let encoding = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| charset.and_then(|c| Encoding::for_label(c.as_bytes())))
        .or_else(|| {
            html.then(|| meta_charset(body))
                .flatten()
                .and_then(|c| Encoding::for_label(c.as_bytes()))
                // A `<meta>` read as ASCII cannot have meant UTF-16 (HTML's rule).
                .map(|e| {
                    if e.output_encoding() == UTF_8 || e.name().starts_with("UTF-16") {
                        UTF_8
                    } else {
                        e
                    }
                })
        })
        .unwrap_or_else(|| {
            if std::str::from_utf8(body).is_ok() {
                UTF_8
            } else {
                WINDOWS_1252
            }
        });
    let (text, _, _) = encoding.decode(body);
    text.into_owned()
}

/// The charset a `<meta charset=...>` or `<meta http-equiv="Content-Type"
/// content="...; charset=...">` in the first 4 KiB names.
fn meta_charset(body: &[u8]) -> Option<String> {
    let head: Vec<u8> = body[..body.len().min(4096)]
        .iter()
        .map(u8::to_ascii_lowercase)
        .collect();
    let mut rest = &head[..];
    while let Some(i) = find(rest, b"<meta") {
        let tag = &rest[i..];
        let end = tag.iter().position(|&b| b == b'>').unwrap_or(tag.len());
        let tag = &tag[..end];
        if let Some(j) = find(tag, b"charset") {
            let value = tag[j + 7..]
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .collect::<Vec<_>>();
            if value.first() == Some(&&b'=') {
                let label: String = value[1..]
                    .iter()
                    .map(|&&b| b)
                    .skip_while(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\''))
                    .take_while(|b| {
                        !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b';' | b'/')
                    })
                    .map(char::from)
                    .collect();
                if !label.is_empty() {
                    return Some(label);
                }
            }
        }
        rest = &rest[i + 5..];
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Rendering width: wide enough that paragraphs are not wrapped.
const WIDTH: usize = 10_000;
/// Main content shorter than this reads as a page that does not really mark one.
const MIN_MAIN_CHARS: usize = 200;

/// A page as text: its title, and its content as Markdown-like text with links kept
/// (relative links made absolute against `base_url`). When the page marks its main
/// content (`<main>`, `role="main"`, or a single `<article>`), only that is returned.
pub fn html_to_text(html: &str, base_url: &str) -> (Option<String>, String) {
    let title = title(html);
    let config = || {
        html2text::config::with_decorator(Markdown::new(base_url))
            .allow_width_overflow()
            .no_link_wrapping()
            .no_table_borders()
    };
    let dom = match config().parse_html(html.as_bytes()) {
        Ok(dom) => dom,
        Err(_) => return (title, String::new()),
    };
    let render = |dom: &RcDom| -> String {
        let c = config();
        c.dom_to_render_tree(dom)
            .and_then(|tree| c.render_to_string(tree, WIDTH))
            .map(|s| tidy(&s))
            .unwrap_or_default()
    };
    if let Some(body) = find_element(&dom.document, &|h| is_named(h, "body"))
        && let Some(main) = main_content(&body)
    {
        let saved = body.children.replace(vec![main]);
        let text = render(&dom);
        if text.chars().count() >= MIN_MAIN_CHARS {
            return (title, text);
        }
        body.children.replace(saved);
    }
    (title, render(&dom))
}

/// The text of the first `<title>`, entities decoded and spaces collapsed.
fn title(html: &str) -> Option<String> {
    let lower = html.get(..html.len().min(256 * 1024)).map_or_else(
        || html.to_ascii_lowercase(),
        |head| head.to_ascii_lowercase(),
    );
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    // Title text is RCDATA: entities count, tags do not.
    let raw = html.get(start..end)?.replace('<', "&lt;");
    let text = html2text::config::plain_no_decorate()
        .allow_width_overflow()
        .string_from_read(format!("<p>{raw}</p>").as_bytes(), WIDTH)
        .ok()?;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

fn is_named(h: &Handle, name: &str) -> bool {
    matches!(&h.data, Element { name: n, .. } if &*n.local == name)
}

fn attr_is(h: &Handle, attr: &str, value: &str) -> bool {
    match &h.data {
        Element { attrs, .. } => attrs
            .borrow()
            .iter()
            .any(|a| &*a.name.local == attr && a.value.trim().eq_ignore_ascii_case(value)),
        _ => false,
    }
}

/// The first element, in document order, for which `pred` holds.
fn find_element(root: &Handle, pred: &dyn Fn(&Handle) -> bool) -> Option<Handle> {
    let mut todo = vec![root.clone()];
    while let Some(h) = todo.pop() {
        if pred(&h) {
            return Some(h);
        }
        todo.extend(h.children.borrow().iter().rev().cloned());
    }
    None
}

fn count_elements(root: &Handle, pred: &dyn Fn(&Handle) -> bool, stop_at: usize) -> usize {
    let mut n = 0;
    let mut todo = vec![root.clone()];
    while let Some(h) = todo.pop() {
        if pred(&h) {
            n += 1;
            if n >= stop_at {
                break;
            }
        }
        todo.extend(h.children.borrow().iter().cloned());
    }
    n
}

/// The element inside `body` that the page marks as its main content, if any.
fn main_content(body: &Handle) -> Option<Handle> {
    let inside = |pred: &dyn Fn(&Handle) -> bool| {
        body.children
            .borrow()
            .iter()
            .find_map(|child| find_element(child, pred))
    };
    let is_main = |h: &Handle| is_named(h, "main") || attr_is(h, "role", "main");
    if let Some(main) = inside(&is_main) {
        return Some(main);
    }
    let is_article = |h: &Handle| is_named(h, "article");
    let articles: usize = body
        .children
        .borrow()
        .iter()
        .map(|child| count_elements(child, &is_article, 2))
        .sum();
    if articles == 1 {
        return inside(&is_article);
    }
    None
}

/// Trailing spaces dropped, runs of blank lines made one, empty links removed.
fn tidy(text: &str) -> String {
    let text = text.replace("[]()", "");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&remove_empty_links(line));
    }
    out
}

/// `[](url)` (a link with no text, such as an icon) removed.
fn remove_empty_links(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("[](") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        match after.find(')') {
            Some(j) => rest = &after[j + 1..],
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A link or image target for the output: absolute, with no spaces or parentheses that
/// would break the Markdown. `None` for links that lead nowhere a model can fetch
/// (`javascript:`, `data:`, same-page anchors).
fn link_target(base: &str, href: &str) -> Option<String> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    if let Some(scheme) = url::scheme(href)
        && matches!(scheme.as_str(), "javascript" | "data" | "blob" | "about")
    {
        return None;
    }
    let abs = url::resolve(base, href).unwrap_or_else(|| href.to_string());
    Some(
        abs.replace(' ', "%20")
            .replace('(', "%28")
            .replace(')', "%29"),
    )
}

/// Markdown-like decorations: `[text](url)`, `**strong**`, `*em*`, `` `code` ``,
/// `# headings`, `- items`.
#[derive(Clone)]
struct Markdown {
    base: std::rc::Rc<str>,
    /// The target of each open link (`None`: the link is shown as its text only).
    links: Vec<Option<String>>,
}

impl Markdown {
    fn new(base: &str) -> Self {
        Markdown {
            base: base.into(),
            links: Vec::new(),
        }
    }
}

impl TextDecorator for Markdown {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        let target = link_target(&self.base, url);
        let prefix = if target.is_some() { "[" } else { "" };
        self.links.push(target);
        (prefix.to_string(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.links.pop().flatten() {
            Some(target) => format!("]({target})"),
            None => String::new(),
        }
    }

    fn decorate_em_start(&self) -> (String, ()) {
        ("*".to_string(), ())
    }

    fn decorate_em_end(&self) -> String {
        "*".to_string()
    }

    fn decorate_strong_start(&self) -> (String, ()) {
        ("**".to_string(), ())
    }

    fn decorate_strong_end(&self) -> String {
        "**".to_string()
    }

    fn decorate_strikeout_start(&self) -> (String, ()) {
        ("~~".to_string(), ())
    }

    fn decorate_strikeout_end(&self) -> String {
        "~~".to_string()
    }

    fn decorate_code_start(&self) -> (String, ()) {
        ("`".to_string(), ())
    }

    fn decorate_code_end(&self) -> String {
        "`".to_string()
    }

    fn decorate_preformat_first(&self) {}

    fn decorate_preformat_cont(&self) {}

    fn decorate_image(&mut self, src: &str, title: &str) -> (String, ()) {
        let title = title.trim();
        let text = match link_target(&self.base, src) {
            _ if title.is_empty() => String::new(),
            Some(target) => format!("![{title}]({target})"),
            None => format!("[image: {title}]"),
        };
        (text, ())
    }

    fn header_prefix(&self, level: usize) -> String {
        format!("{} ", "#".repeat(level.clamp(1, 6)))
    }

    fn quote_prefix(&self) -> String {
        "> ".to_string()
    }

    fn unordered_item_prefix(&self) -> String {
        "- ".to_string()
    }

    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }

    fn make_subblock_decorator(&self) -> Self {
        Markdown::new(&self.base)
    }

    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

/// Valid JSON re-indented by two spaces, keys and numbers exactly as sent; `None` when
/// `text` is not JSON.
pub fn pretty_json(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text).ok()?;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// `text` cut to at most `max_chars` characters (on a character boundary), and whether
/// it was cut, with its length in characters.
pub fn cap(text: &str, max_chars: usize) -> (&str, Option<usize>) {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (&text[..end], Some(text.chars().count())),
        None => (text, None),
    }
}
