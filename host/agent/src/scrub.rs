//! Scrubbing tool output (and the model's streamed answer) before the model or the store
//! sees it. Every rule marks byte ranges of the *original* text; overlapping ranges merge
//! and each merged range becomes `[REDACTED]` (host paths become virtual paths instead):
//! 1. the literal value of every configured secret (API keys the host holds);
//! 2. host paths of the workspace → virtual paths (`/shared`, `/tmp`, `/vault`, `/workspace`);
//! 3. credential formats, wherever they appear (prose, JSON, env-file lines, escaped `\n`):
//!    - AWS access key ids: `AKIA` `ASIA` `AGPA` `AIDA` `AROA` `ANPA` `ANVA` `AIPA` + 16
//!      uppercase letters/digits (exactly 20 chars, a whole word);
//!    - PEM private key blocks, `-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP ]PRIVATE
//!      KEY[ BLOCK]-----` through the matching `-----END …-----`, multi-line or with escaped
//!      `\n` inside a JSON string (GCP service-account `"private_key"`); an unterminated
//!      BEGIN redacts to the end. PUBLIC KEY and CERTIFICATE blocks are not secrets and stay;
//!    - Slack tokens `xoxb-` `xoxp-` `xoxa-` `xoxr-` `xoxs-` `xapp-`, and the secret path of
//!      Slack webhook URLs `https://hooks.slack.com/services/[REDACTED]`;
//!    - Stripe secret and restricted keys and webhook secrets `sk_live_` `sk_test_`
//!      `rk_live_` `rk_test_` `whsec_` (not `pk_` publishable keys: they are public by
//!      design, see `looks_secret`);
//!    - JWTs: three (up to five, JWE) base64url segments, the first starting `eyJ`;
//!    - GitHub tokens `ghp_` `gho_` `ghu_` `ghs_` `ghr_` `github_pat_`, OpenAI-style `sk-…`
//!      (`sk-proj-…`), Anthropic `sk-ant-…`, Google API keys `AIza` + 35 chars;
//! 4. values after secret-looking keywords (`api_key=…`, `"password": "…"`, `Bearer …`,
//!    `aws_secret_access_key = …`, `"private_key_id": "…"`, `the secret is …`);
//! 5. tokens with Shannon entropy ≥ 3.8 bits/char (24+ chars, letters and digits mixed),
//!    except what keeps output readable: hex digests, UUIDs, paths, lowercase dotted names
//!    (`my-project.iam.gserviceaccount.com`), `pk_` publishable keys, and the base64 of
//!    PUBLIC KEY / CERTIFICATE blocks.
//!
//! Every rule is a hand-written scan that is linear in the text (a failed match never
//! rescans the same run), so scrubbing a multi-megabyte tool result stays cheap.
//! [`StreamScrubber`] applies the same rules to text that arrives in pieces.

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
    /// Off: only exact rules (configured secrets, host paths, credential formats) apply,
    /// not the keyword and entropy heuristics. See [`Scrubber::exact`].
    heuristics_off: bool,
}

/// A byte range of the original text and what replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    /// `REDACTED`, or the virtual root a host path becomes.
    with: &'static str,
    redact: bool,
}

impl Edit {
    fn redact(start: usize, end: usize) -> Edit {
        Edit {
            start,
            end,
            with: REDACTED,
            redact: true,
        }
    }
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

/// Lowercase `label.label.tld`: every label `[a-z0-9-]`, the last one letters only,
/// optionally followed by a lowercase `/path` (`www.example.com/index.html`).
fn is_dotted_name(s: &str) -> bool {
    let (s, path) = s.split_once('/').unwrap_or((s, ""));
    let path_ok = path
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"./_-".contains(&c));
    let mut labels = s.split('.');
    let last = labels.next_back().unwrap_or("");
    path_ok
        && s.contains('.')
        && (2..=24).contains(&last.len())
        && last.bytes().all(|c| c.is_ascii_lowercase())
        && labels.all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
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
    if is_dotted_name(core) {
        return false; // host names, e-mail domains: `my-project.iam.gserviceaccount.com`
    }
    // Stripe publishable keys are public by design: they ship in web pages and mobile apps
    // and can only create tokens, never read or move money. Redacting them would only hide
    // which account a config points at.
    if core.starts_with("pk_live_") || core.starts_with("pk_test_") {
        return false;
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
        Scrubber {
            paths,
            secrets,
            heuristics_off: false,
        }
    }

    /// The same scrubber with only its exact rules: configured secrets, host paths and
    /// the credential formats (AWS, PEM, Slack, Stripe, JWT, …), without the keyword and
    /// entropy heuristics. For what the model writes — its answer and its tool arguments —
    /// where a heuristic would corrupt legitimate content (code, base64 the user asked for)
    /// but a real credential must still never pass.
    pub fn exact(&self) -> Scrubber {
        Scrubber {
            heuristics_off: true,
            ..self.clone()
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        render(text, &self.edits(text), 0, text.len())
    }

    /// A scrubber for text that arrives in pieces (a streamed model answer).
    pub fn stream(&self) -> StreamScrubber<'_> {
        StreamScrubber::new(self)
    }

    /// Every rule's ranges over `s`, sorted and merged (see [`merge`]).
    fn edits(&self, s: &str) -> Vec<Edit> {
        let mut edits = Vec::new();
        for secret in &self.secrets {
            for (at, m) in s.match_indices(secret.as_str()) {
                edits.push(Edit::redact(at, at + m.len()));
            }
        }
        for (host, virt) in &self.paths {
            for (at, m) in s.match_indices(host.as_str()) {
                edits.push(Edit {
                    start: at,
                    end: at + m.len(),
                    with: virt,
                    redact: false,
                });
            }
        }
        let public_blocks = pem_blocks(s, &mut edits);
        slack_webhooks(s, &mut edits);
        prefixed_tokens(s.as_bytes(), &mut edits);
        if !self.heuristics_off {
            keyword_values(s, &mut edits);
            high_entropy(s.as_bytes(), &public_blocks, &mut edits);
        }
        merge(edits)
    }

    /// How far a stream may emit `b` without letting a literal (secret or host path)
    /// split across deltas slip out: up to the start of the longest tail of `b` that is
    /// the beginning of some literal. Ordinary text is held back by nothing; a tail that
    /// could still become a secret, by at most `hold` (longest literal − 1) bytes.
    fn literal_limit(&self, b: &[u8], hold: usize) -> usize {
        let mut limit = b.len();
        // A PEM header is words with spaces: hold an unclosed `-----BEGIN …` (or a tail
        // that may become one) until its label is known.
        let window = b.len().saturating_sub(96);
        if let Some(at) = b[window..].windows(5).rposition(|w| w == b"-----") {
            let dashes = window + at;
            let mut start = dashes;
            while start > window && b[start - 1] == b'-' {
                start -= 1;
            }
            let header = &b[start..];
            let closed = header.len() > 10
                && header[10..].windows(5).any(|w| w == b"-----")
                && header.starts_with(b"-----BEGIN");
            if !closed && (header.starts_with(b"-----BEGIN") || b"-----BEGIN".starts_with(header)) {
                limit = start;
            }
        }
        let from = b.len().saturating_sub(hold);
        for lit in self
            .secrets
            .iter()
            .map(String::as_bytes)
            .chain(self.paths.iter().map(|(p, _)| p.as_bytes()))
        {
            for start in from..limit {
                let tail = &b[start..];
                if tail.len() < lit.len() && lit.starts_with(tail) {
                    limit = start;
                    break;
                }
            }
        }
        limit
    }

    /// The longest configured literal (secret or host path): a stream must hold back one
    /// byte less than this, or a literal split across deltas could slip out.
    fn longest_literal(&self) -> usize {
        self.secrets
            .iter()
            .map(String::len)
            .chain(self.paths.iter().map(|(p, _)| p.len()))
            .max()
            .unwrap_or(0)
    }
}

/// Sorts edits and merges overlapping ones: redactions absorb whatever they overlap (a
/// path inside a redacted value is redacted too); of two overlapping paths the longer,
/// earlier one wins.
fn merge(mut edits: Vec<Edit>) -> Vec<Edit> {
    edits.sort_unstable_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
    let mut out: Vec<Edit> = Vec::with_capacity(edits.len());
    for e in edits {
        if let Some(last) = out.last_mut() {
            let touching = last.redact && e.redact && e.start == last.end;
            if e.start < last.end || touching {
                if last.redact || e.redact {
                    last.end = last.end.max(e.end);
                    last.with = REDACTED;
                    last.redact = true;
                }
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// `s[from..to]` with `edits` applied. An edit that starts before `from` but reaches past
/// it (its start was emitted earlier by a stream) still redacts the part after `from`.
/// No edit may straddle `to`.
fn render(s: &str, edits: &[Edit], from: usize, to: usize) -> String {
    let mut out = String::with_capacity(to.saturating_sub(from));
    let mut pos = from;
    let first = edits.partition_point(|e| e.end <= from);
    for e in &edits[first..] {
        if e.start >= to {
            break;
        }
        if e.start > pos {
            out.push_str(&s[pos..e.start]);
        }
        out.push_str(e.with);
        pos = e.end.min(to);
    }
    if pos < to {
        out.push_str(&s[pos..to]);
    }
    out
}

/// Where a run of bytes satisfying `f` that starts at `from` ends.
fn run_end(b: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    while i < b.len() && f(b[i]) {
        i += 1;
    }
    i
}

/// Bytes that continue a word or a base64url token.
fn wordish(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Whether a token may start at `i`: not inside a word, except right after a `\n`, `\t`
/// or `\r` escape (a file's lines inside a JSON string).
fn word_start(b: &[u8], i: usize) -> bool {
    i == 0
        || !wordish(b[i - 1])
        || (i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b't' | b'r'))
}

/// `-----BEGIN …PRIVATE KEY…-----` through `-----END …-----` (and the escaped newlines
/// that follow inside a JSON string) is redacted; unterminated blocks, or a text that ends
/// inside a header, redact to the end. Returns the other complete blocks (PUBLIC KEY,
/// CERTIFICATE, …), in order, whose base64 the entropy rule must leave alone.
fn pem_blocks(s: &str, edits: &mut Vec<Edit>) -> Vec<(usize, usize)> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    const DASHES: &str = "-----";
    let b = s.as_bytes();
    let label = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' ';
    let mut public = Vec::new();
    let mut next_end: Option<Option<usize>> = None;
    let mut from = 0;
    while let Some(k) = s[from..].find(BEGIN) {
        let start = from + k;
        let label_start = start + BEGIN.len();
        let label_end = run_end(b, label_start, label);
        if label_end == b.len() && label_end - label_start <= 64 {
            edits.push(Edit::redact(start, b.len())); // the text ends inside the header
            return public;
        }
        if !s[label_end..].starts_with(DASHES) || label_end - label_start > 64 {
            from = label_start;
            continue;
        }
        let body = label_end + DASHES.len();
        // The next END line: remembered, so many BEGINs without one stay linear.
        let end_line = match next_end {
            Some(Some(q)) if q >= body => Some(q),
            Some(None) => None,
            _ => s[body..].find(END).map(|e| body + e),
        };
        next_end = Some(end_line);
        // where the END line closes: `Err(())` when there is none
        let close = match end_line {
            Some(e) => {
                let end_label_end = run_end(b, e + END.len(), label);
                if s[end_label_end..].starts_with(DASHES) {
                    Ok(end_label_end + DASHES.len())
                } else {
                    Err(())
                }
            }
            None => Err(()),
        };
        if !s[label_start..label_end].contains("PRIVATE KEY") {
            // PUBLIC KEY, CERTIFICATE, …: public material
            from = match close {
                Ok(end) => {
                    public.push((start, end));
                    end
                }
                Err(()) => body,
            };
            continue;
        }
        let Ok(mut end) = close else {
            edits.push(Edit::redact(start, b.len()));
            return public;
        };
        loop {
            if s[end..].starts_with("\\n") {
                end += 2;
            } else if s[end..].starts_with("\\r\\n") {
                end += 4;
            } else {
                break;
            }
        }
        edits.push(Edit::redact(start, end));
        from = end;
    }
    public
}

/// `https://hooks.slack.com/services/T…/B…/…`: the path after `services/` is the secret.
fn slack_webhooks(s: &str, edits: &mut Vec<Edit>) {
    const HOOK: &str = "hooks.slack.com/services/";
    let b = s.as_bytes();
    for (at, _) in s.match_indices(HOOK) {
        let start = at + HOOK.len();
        let end = run_end(b, start, |c| wordish(c) || c == b'/');
        if end - start >= 10 {
            edits.push(Edit::redact(start, end));
        }
    }
}

/// A credential recognised by its prefix: `prefix` + a run of `body` bytes whose length
/// is within `min..=max` and that passes `check`, as a whole word.
struct Prefixed {
    prefixes: &'static [&'static str],
    body: fn(u8) -> bool,
    min: usize,
    max: usize,
    check: fn(&[u8]) -> bool,
}

fn upper_or_digit(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
fn alnum_underscore(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}
fn alnum_dash(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}
fn any(_: &[u8]) -> bool {
    true
}
fn has_digit(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_digit)
}
/// Random keys mix letters and digits; words (`sk_test_connection`) do not.
fn letters_and_digits(b: &[u8]) -> bool {
    has_digit(b) && b.iter().any(u8::is_ascii_alphabetic)
}
/// Random base62 mixes both cases and digits; `sk-learn-compatible-estimators` does not.
fn mixed_case_and_digits(b: &[u8]) -> bool {
    has_digit(b) && b.iter().any(u8::is_ascii_uppercase) && b.iter().any(u8::is_ascii_lowercase)
}

const PREFIXED: &[Prefixed] = &[
    // AWS access key ids: AKIA long-term, ASIA temporary, the rest are ids of groups,
    // users, roles, policies…; 16 base32 chars (AWS's own doc examples use 0-9 too).
    Prefixed {
        prefixes: &[
            "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
        ],
        body: upper_or_digit,
        min: 16,
        max: 16,
        check: any,
    },
    Prefixed {
        prefixes: &["AIza"],
        body: wordish,
        min: 35,
        max: 35,
        check: any,
    },
    Prefixed {
        prefixes: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        body: alnum,
        min: 30,
        max: 255,
        check: any,
    },
    Prefixed {
        prefixes: &["github_pat_"],
        body: alnum_underscore,
        min: 22,
        max: 255,
        check: any,
    },
    Prefixed {
        prefixes: &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"],
        body: alnum_dash,
        min: 10,
        max: 512,
        check: has_digit,
    },
    // Stripe secret keys, restricted keys and webhook signing secrets. Not `pk_live_` /
    // `pk_test_`: publishable keys are public by design (see `looks_secret`).
    Prefixed {
        prefixes: &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
        body: alnum,
        min: 16,
        max: 255,
        check: letters_and_digits,
    },
    // OpenAI (`sk-…`, `sk-proj-…`, `sk-svcacct-…`) and Anthropic (`sk-ant-api03-…`).
    Prefixed {
        prefixes: &["sk-"],
        body: wordish,
        min: 20,
        max: 512,
        check: mixed_case_and_digits,
    },
];

/// The prefixed credentials and JWTs. One pass; a candidate starts a word (see
/// [`word_start`]) and every body is a subset of [`wordish`] bytes, so a failed match
/// scans at most its own word once per rule and the pass stays linear.
fn prefixed_tokens(b: &[u8], edits: &mut Vec<Edit>) {
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'A' | b'g' | b'x' | b's' | b'r' | b'w' | b'e') || !word_start(b, i) {
            i += 1;
            continue;
        }
        let mut end = None;
        for rule in PREFIXED {
            for p in rule.prefixes {
                if !b[i..].starts_with(p.as_bytes()) {
                    continue;
                }
                let start = i + p.len();
                let e = run_end(b, start, rule.body);
                let n = e - start;
                let whole_word = e == b.len() || !b[e].is_ascii_alphanumeric();
                if (rule.min..=rule.max).contains(&n) && whole_word && (rule.check)(&b[start..e]) {
                    end = Some(e);
                }
            }
        }
        if end.is_none() && b[i..].starts_with(b"eyJ") && (i == 0 || b[i - 1] != b'.') {
            end = jwt_end(b, i);
        }
        match end {
            Some(e) => {
                edits.push(Edit::redact(i, e));
                i = e;
            }
            None => i += 1,
        }
    }
}

/// `eyJ…` (base64url of `{"`) `.` payload `.` signature (may be empty: `alg: none`), and
/// up to two more segments (JWE). `a.b.c` and `config.yaml.bak` never start with `eyJ`.
fn jwt_end(b: &[u8], start: usize) -> Option<usize> {
    let b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let header = run_end(b, start, b64url);
    if header - start < 10 || b.get(header) != Some(&b'.') {
        return None;
    }
    let payload = run_end(b, header + 1, b64url);
    if payload - (header + 1) < 3 || b.get(payload) != Some(&b'.') {
        return None;
    }
    let mut end = run_end(b, payload + 1, b64url);
    for _ in 0..2 {
        // a further segment only if it is non-empty: `…sig.` ends a sentence
        if b.get(end) == Some(&b'.') {
            let next = run_end(b, end + 1, b64url);
            if next > end + 1 {
                end = next;
                continue;
            }
        }
        break;
    }
    Some(end)
}

/// `keyword<sep>value` where sep is `=`, `:` or ` is ` (quotes and spaces allowed), and
/// `Bearer <token>`: the value is redacted.
fn keyword_values(s: &str, edits: &mut Vec<Edit>) {
    let lower = s.to_ascii_lowercase();
    let bytes = s.as_bytes();
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < bytes.len() && set.contains(&bytes[*i]) {
            *i += 1;
        }
    };
    for kw in KEYWORDS.iter().chain(std::iter::once(&"bearer")) {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(kw) {
            let start = from + pos;
            // A keyword may end an identifier (`OPENAI_API_KEY`, `db_password`), but not
            // sit inside a word (`Bearer` in `Bearers`, checked by the separator below).
            let mut i = start + kw.len();
            // rest of an identifier (`token_value`, `secretKey`) still counts as the key
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
            {
                i += 1;
            }
            // The same keyword later in this identifier, its quotes or its value would
            // find the same value: resume after what was scanned (keeps this linear).
            from = i;
            skip(&mut i, b"\"' \t");
            if *kw == "bearer" {
                // `Bearer <token>`: the separator is the space already skipped
            } else if i < bytes.len() && (bytes[i] == b'=' || bytes[i] == b':') {
                i += 1;
            } else if lower[i..].starts_with("is ") {
                i += 3;
            } else {
                from = from.max(i);
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
            if i - value_start >= 4 && !s[value_start..].starts_with(REDACTED) {
                edits.push(Edit::redact(value_start, i));
            }
            from = from.max(i);
        }
    }
}

/// High-entropy tokens outside `keep` (sorted, disjoint ranges).
fn high_entropy(b: &[u8], keep: &[(usize, usize)], edits: &mut Vec<Edit>) {
    let tok = |c: u8| token_char(char::from(c));
    let mut keep = keep.iter().peekable();
    let mut i = 0;
    while i < b.len() {
        if !tok(b[i]) {
            i += 1;
            continue;
        }
        let end = run_end(b, i, tok);
        while keep.next_if(|(_, e)| *e <= i).is_some() {}
        let kept = keep.peek().is_some_and(|(s, _)| *s <= i);
        // token bytes are ASCII, so this slice is valid UTF-8
        if !kept
            && let Ok(t) = std::str::from_utf8(&b[i..end])
            && looks_secret(t)
        {
            // dots around the token are punctuation (`… is ABC…xyz.`), not the secret
            let start = i + (t.len() - t.trim_start_matches('.').len());
            let stop = end - (t.len() - t.trim_end_matches('.').len());
            edits.push(Edit::redact(start, stop));
        }
        i = end;
    }
}

/// Scrubs text that arrives in pieces, such as a model's streamed answer: [`push`] each
/// delta and forward what it returns, then forward [`finish`]. The concatenation of the
/// outputs is scrubbed like [`Scrubber::scrub`] of the whole text.
///
/// What is held back: the unfinished last word (a token, key or JWT may still be
/// growing), at least `longest configured secret or host path − 1` bytes (a literal may
/// still be completing), and an unterminated private key block until its END line. Text
/// is cut after whitespace; a run without whitespace longer than [`STREAM_MAX_RUN`] is also cut
/// after a byte that ends keyword values (`"',;&}]`). The last [`STREAM_CONTEXT`] bytes already
/// emitted are kept and rescanned, so `password: ` in one delta and its value in the next
/// is still redacted.
///
/// [`push`]: StreamScrubber::push
/// [`finish`]: StreamScrubber::finish
#[derive(Debug)]
pub struct StreamScrubber<'a> {
    scrubber: &'a Scrubber,
    /// Context already emitted, then the text held back.
    buf: String,
    /// `buf[..emitted]` has been emitted.
    emitted: usize,
    /// The longest configured literal − 1: the most a cut ever has to leave after it.
    hold: usize,
}

/// Bytes of already-emitted text kept to give the next delta its context.
pub const STREAM_CONTEXT: usize = 1024;
/// A run without whitespace longer than this may be cut at a value-ending byte.
pub const STREAM_MAX_RUN: usize = 4096;

impl<'a> StreamScrubber<'a> {
    pub fn new(scrubber: &'a Scrubber) -> StreamScrubber<'a> {
        StreamScrubber {
            scrubber,
            buf: String::new(),
            emitted: 0,
            hold: scrubber.longest_literal().saturating_sub(1),
        }
    }

    /// Adds a delta; returns the scrubbed text that is now safe to emit (often empty).
    pub fn push(&mut self, delta: &str) -> String {
        self.buf.push_str(delta);
        let edits = self.scrubber.edits(&self.buf);
        let Some(cut) = self.cut(&edits) else {
            return String::new();
        };
        let out = render(&self.buf, &edits, self.emitted, cut);
        self.emitted = cut;
        if self.emitted > STREAM_CONTEXT {
            let mut drop = self.emitted - STREAM_CONTEXT;
            while !self.buf.is_char_boundary(drop) {
                drop += 1;
            }
            self.buf.drain(..drop);
            self.emitted -= drop;
        }
        out
    }

    /// Emits everything still held back.
    pub fn finish(self) -> String {
        let edits = self.scrubber.edits(&self.buf);
        render(&self.buf, &edits, self.emitted, self.buf.len())
    }

    /// Bytes received but not yet emitted.
    pub fn held(&self) -> usize {
        self.buf.len() - self.emitted
    }

    /// The furthest point after `emitted` that is safe to emit up to: after whitespace
    /// (or, in a long run, after a value-ending byte), at least `hold` bytes before the
    /// end, and not inside an edit.
    fn cut(&self, edits: &[Edit]) -> Option<usize> {
        let b = self.buf.as_bytes();
        let limit = self.scrubber.literal_limit(b, self.hold);
        // inside an edit, or at the end of one that reaches the end of the text and may
        // still grow (an unterminated private key)
        let inside = |p: usize| {
            let k = edits.partition_point(|e| e.end < p || (e.end == p && p < b.len()));
            edits.get(k).is_some_and(|e| e.start < p)
        };
        let mut p = limit;
        while p > self.emitted {
            if b[p - 1].is_ascii_whitespace() && !inside(p) {
                return Some(p);
            }
            p -= 1;
        }
        if limit - self.emitted > STREAM_MAX_RUN {
            let mut p = limit;
            while p > self.emitted {
                if b"\"',;&}]".contains(&b[p - 1]) && !inside(p) {
                    return Some(p);
                }
                p -= 1;
            }
        }
        None
    }
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
                "aws: [REDACTED] [REDACTED]",
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
