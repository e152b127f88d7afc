//! Scrubbing tool output before the model or the store sees it:
//! 1. the literal value of every configured secret (API keys the host holds);
//! 2. host paths of the workspace → virtual paths (`/shared`, `/tmp`, `/vault`);
//! 3. values after secret-looking keywords (`api_key=…`, `"password": "…"`, `Bearer …`);
//! 4. tokens with Shannon entropy ≥ 3.8 bits/char (24+ chars, letters and digits mixed),
//!    except what keeps output readable: hex digests, UUIDs and paths.

use std::path::Path;

pub const REDACTED: &str = "[REDACTED]";

const KEYWORDS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "refresh_token",
    "auth_token",
    "token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "private_key",
    "authorization",
];

#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// (host prefix, virtual root), longest prefix first.
    paths: Vec<(String, &'static str)>,
    secrets: Vec<String>,
}

fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// `=` separates tokens: it joins a key to its value far more often than it pads base64.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '_' | '-' | '.')
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether a token looks like a credential rather than a word, digest, id or path.
fn looks_secret(t: &str) -> bool {
    let core = t.trim_end_matches('=').trim_matches('.');
    if core.len() < 24 || core.len() > 512 {
        return false;
    }
    if core.chars().all(|c| c.is_ascii_hexdigit()) || is_uuid(core) {
        return false; // sha256 digests, git hashes, UUIDs
    }
    if core.matches('/').count() >= 3 || core.starts_with('/') {
        return false; // paths
    }
    let letters = core.chars().any(|c| c.is_ascii_alphabetic());
    let digits_or_symbols = core
        .chars()
        .any(|c| c.is_ascii_digit() || matches!(c, '+' | '/' | '_' | '-'));
    let unique = {
        let mut seen: Vec<char> = core.chars().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    letters && digits_or_symbols && unique >= 8 && entropy(core) >= 3.8
}

impl Scrubber {
    pub fn new(workspace_host_root: Option<&Path>, secrets: Vec<String>) -> Scrubber {
        let mut paths = Vec::new();
        if let Some(root) = workspace_host_root {
            for (sub, virt) in [("shared", "/shared"), ("tmp", "/tmp"), ("vault", "/vault")] {
                paths.push((root.join(sub).display().to_string(), virt));
            }
            paths.push((root.display().to_string(), "/workspace"));
        }
        paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let secrets = secrets.into_iter().filter(|s| s.len() >= 8).collect();
        Scrubber { paths, secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut s = text.to_string();
        for secret in &self.secrets {
            s = s.replace(secret.as_str(), REDACTED);
        }
        for (host, virt) in &self.paths {
            s = s.replace(host.as_str(), virt);
        }
        let s = redact_keyword_values(&s);
        redact_high_entropy(&s)
    }
}

/// `keyword<sep>value` where sep is `=`, `:` or ` is ` (quotes and spaces allowed), and
/// `Bearer <token>`: the value becomes `[REDACTED]`.
fn redact_keyword_values(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let bytes = s.as_bytes();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for kw in KEYWORDS.iter().chain(std::iter::once(&"bearer")) {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(kw) {
            let start = from + pos;
            from = start + kw.len();
            // A keyword may end an identifier (`OPENAI_API_KEY`, `db_password`), but not
            // sit inside a word (`Bearer` in `Bearers`, checked by the separator below).
            let mut i = start + kw.len();
            // rest of an identifier (`token_value`, `secretKey`) still counts as the key
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
            {
                i += 1;
            }
            let skip = |i: &mut usize, set: &[u8]| {
                while *i < bytes.len() && set.contains(&bytes[*i]) {
                    *i += 1;
                }
            };
            skip(&mut i, b"\"' \t");
            if *kw == "bearer" {
                // `Bearer <token>`: the separator is the space already skipped
            } else if i < bytes.len() && (bytes[i] == b'=' || bytes[i] == b':') {
                i += 1;
            } else if lower[i..].starts_with("is ") {
                i += 3;
            } else {
                continue;
            }
            skip(&mut i, b"\"' \t");
            if lower[i..].starts_with("bearer ") {
                i += 7;
            }
            let value_start = i;
            while i < bytes.len() && !b" \t\r\n\"',;&}]".contains(&bytes[i]) {
                i += 1;
            }
            if i - value_start >= 4 && &s[value_start..i] != REDACTED {
                cuts.push((value_start, i));
            }
        }
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (a, b) in cuts {
        if a < last {
            continue;
        }
        out.push_str(&s[last..a]);
        out.push_str(REDACTED);
        last = b;
    }
    out.push_str(&s[last..]);
    out
}

fn redact_high_entropy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if looks_secret(token) {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in s.chars() {
        if token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(s: &str) -> String {
        Scrubber::new(
            Some(Path::new("/home/alice/ws")),
            vec!["my-configured-secret-value".into()],
        )
        .scrub(s)
    }

    #[test]
    fn realistic_keys_are_redacted() {
        for (input, want) in [
            (
                "OPENAI_API_KEY=sk-proj-Ab3dEf9hIjK2mNoPq5rStUvWx7yZ0aBcD",
                "OPENAI_API_KEY=[REDACTED]",
            ),
            (
                "export ANTHROPIC_API_KEY=\"sk-ant-api03-xY7pQ2rT9vK4mN8bL1cF6gH3jS5dA0wE\"",
                "export ANTHROPIC_API_KEY=\"[REDACTED]\"",
            ),
            (
                "{\"password\": \"hunter2hunter2\"}",
                "{\"password\": \"[REDACTED]\"}",
            ),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "Authorization: Bearer [REDACTED]",
            ),
            (
                "https://api.example.com/v1?token=ghp_16C7e42F292c6912E7710c838347Ae178B4a&x=1",
                "https://api.example.com/v1?token=[REDACTED]&x=1",
            ),
            ("the secret is swordfish-42", "the secret is [REDACTED]"),
            (
                "aws: AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws: AKIAIOSFODNN7EXAMPLE [REDACTED]",
            ),
            (
                "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
                "[REDACTED]",
            ),
            (
                "config value my-configured-secret-value here",
                "config value [REDACTED] here",
            ),
        ] {
            assert_eq!(scrub(input), want, "{input}");
        }
    }

    #[test]
    fn readable_things_are_kept() {
        for keep in [
            "sha256 430079a3f1fcd1714d51d138c1662537c4f44a982abe8e3cedd3bf43fb998807",
            "commit 13f7290a9c1e2b3d4f5a6b7c8d9e0f1a2b3c4d5e",
            "session 0b9e2c6e-8f1d-4c3a-9b7e-2d4f6a8c0e1b",
            "/shared/projects/oxydra/src/very_long_file_name_here.rs",
            "The quick brown fox jumps over the lazy dog repeatedly today.",
            "internationalization_and_localization_helpers",
            "token count: 42",
            "passwords must be long",
        ] {
            assert_eq!(scrub(keep), keep);
        }
    }

    #[test]
    fn host_paths_become_virtual() {
        assert_eq!(
            scrub("wrote /home/alice/ws/shared/a.txt and /home/alice/ws/tmp/b"),
            "wrote /shared/a.txt and /tmp/b"
        );
        assert_eq!(
            scrub("/home/alice/ws/.oxydra/store.db"),
            "/workspace/.oxydra/store.db"
        );
    }
}
