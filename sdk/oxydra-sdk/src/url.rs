//! Small URL helpers for tools that build or read URLs: form-urlencoded query values
//! ([`encode`], [`query`], [`decode`], [`query_value`]) and relative references
//! ([`resolve`]). Plain functions, no host calls.

/// `s` as one form-urlencoded query value (`application/x-www-form-urlencoded`):
/// ASCII letters, digits and `*-._` stay, a space becomes `+`, every other byte of the
/// UTF-8 becomes `%XX`.
pub fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

/// `name=value&...` with every name and value [`encode`]d.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `base` with `pairs` appended as its query (after `?`, or `&` when `base` has one).
pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return base.to_string();
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query(pairs))
}

/// Undo [`encode`]: `+` is a space, `%XX` a byte (a `%` not followed by two hex digits
/// stays as it is); bytes that are not UTF-8 become U+FFFD.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&h| hex(h)),
                bytes.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The [`decode`]d value of the first query parameter `name` in `url` (or in a bare
/// query string), if present.
pub fn query_value(url: &str, name: &str) -> Option<String> {
    let no_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let query = no_fragment.split_once('?').map_or(no_fragment, |(_, q)| q);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// The scheme of an absolute URL (`https` of `https://...`), lowercased.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then(|| scheme.to_ascii_lowercase())
}

/// `href` (as found in a page) made absolute against the page's URL `base`, as a
/// browser would (RFC 3986 section 5.2, without normalizing case or percent-escapes).
/// `None` when `base` is not an absolute hierarchical URL (`scheme://authority...`) and
/// `href` is not absolute either.
pub fn resolve(base: &str, href: &str) -> Option<String> {
    let href = href.trim();
    if scheme(href).is_some() {
        return Some(href.to_string());
    }
    let (scheme, rest) = base.split_once("://")?;
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(split);
    let (base_path, base_query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let base_path = if base_path.is_empty() { "/" } else { base_path };
    if let Some(net) = href.strip_prefix("//") {
        return Some(format!("{scheme}://{net}"));
    }
    let origin = format!("{scheme}://{authority}");
    if href.is_empty() {
        let q = base_query.map(|q| format!("?{q}")).unwrap_or_default();
        return Some(format!("{origin}{base_path}{q}"));
    }
    if href.starts_with('#') {
        let q = base_query.map(|q| format!("?{q}")).unwrap_or_default();
        return Some(format!("{origin}{base_path}{q}{href}"));
    }
    if href.starts_with('?') {
        return Some(format!("{origin}{base_path}{href}"));
    }
    let cut = href.find(['?', '#']).unwrap_or(href.len());
    let (href_path, suffix) = href.split_at(cut);
    let merged = if href_path.starts_with('/') {
        href_path.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{href_path}")
    };
    Some(format!("{origin}{}{suffix}", remove_dot_segments(&merged)))
}

/// `.` and `..` segments of an absolute path applied.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        // A path ending in `.` or `..` names a directory.
        if i == last && matches!(*seg, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("rust wasm & c++"), "rust+wasm+%26+c%2B%2B");
        assert_eq!(encode("é/?#="), "%C3%A9%2F%3F%23%3D");
        assert_eq!(encode("a-b_c.d*"), "a-b_c.d*");
        assert_eq!(query(&[("q", "a b"), ("n", "1")]), "q=a+b&n=1");
        assert_eq!(with_query("http://h/s", &[("q", "x")]), "http://h/s?q=x");
        assert_eq!(
            with_query("http://h/s?a=1", &[("q", "x")]),
            "http://h/s?a=1&q=x"
        );
    }

    #[test]
    fn decodes_what_it_encodes() {
        for s in ["rust wasm & c++", "é/?#=", "100%", "日本語"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(decode("50%"), "50%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(
            query_value(
                "//duckduckgo.com/l/?uddg=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1&rut=abc",
                "uddg"
            )
            .as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(query_value("http://h/?a=1", "b"), None);
    }

    #[test]
    fn resolves_references() {
        let base = "https://example.com/docs/guide/intro.html?x=1#top";
        let cases = [
            ("https://other.org/", "https://other.org/"),
            ("mailto:a@b.c", "mailto:a@b.c"),
            ("//cdn.example.com/a.js", "https://cdn.example.com/a.js"),
            ("/about", "https://example.com/about"),
            ("next.html", "https://example.com/docs/guide/next.html"),
            ("../api/", "https://example.com/docs/api/"),
            ("./a/../b?q=2#f", "https://example.com/docs/guide/b?q=2#f"),
            ("../../../../x", "https://example.com/x"),
            ("?y=2", "https://example.com/docs/guide/intro.html?y=2"),
            (
                "#part",
                "https://example.com/docs/guide/intro.html?x=1#part",
            ),
            ("..", "https://example.com/docs/"),
        ];
        for (href, want) in cases {
            assert_eq!(resolve(base, href).as_deref(), Some(want), "{href}");
        }
        assert_eq!(
            resolve("http://h", "a").as_deref(),
            Some("http://h/a"),
            "a base without a path"
        );
        assert_eq!(resolve("not a url", "a"), None);
    }
}
