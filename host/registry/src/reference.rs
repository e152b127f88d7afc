//! `oci://HOST[:PORT]/NAMESPACE/NAME:VERSION[@sha256:…]`: where a component lives.
//!
//! The path follows `wkg`'s naming: package `ns:name` is published at
//! `HOST/ns/name:<semver>`, so what one tool pushes the other finds. The grammar is the
//! OCI distribution spec's (lowercase path components, tags of at most 128 characters).

use crate::RegistryError;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]`, as written.
    pub registry: String,
    pub host: String,
    pub port: Option<u16>,
    /// `NAMESPACE/NAME` (or deeper).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

fn bad(reference: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::BadReference {
        reference: reference.to_string(),
        message: message.into(),
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `sha256:` and 64 lowercase hex digits.
pub fn digest_ok(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
    })
}

impl Reference {
    /// Parse `oci://…`. A `warg://` reference is refused with the reason (ADR 0009).
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        if s.starts_with("warg://") {
            return Err(RegistryError::Warg {
                reference: s.to_string(),
            });
        }
        let Some(rest) = s.strip_prefix("oci://") else {
            return Err(bad(
                s,
                "it must start with oci:// (e.g. oci://ghcr.io/acme/word-count:0.1.0)",
            ));
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(bad(s, "expected oci://HOST[:PORT]/NAMESPACE/NAME:VERSION"));
        };
        let (host, port) = split_host_port(registry)
            .ok_or_else(|| bad(s, format!("`{registry}` is not a registry host[:port]")))?;
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                if !digest_ok(d) {
                    return Err(bad(
                        s,
                        format!("`{d}` is not a sha256:<64 hex digits> digest"),
                    ));
                }
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        // A tag follows the last `:` after the last `/`.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].find(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };
        for c in repository.split('/') {
            if !path_component_ok(c) {
                return Err(bad(
                    s,
                    format!(
                        "`{c}` is not a repository name component (lowercase letters, digits, and . _ - between them)"
                    ),
                ));
            }
        }
        if let Some(t) = tag
            && !tag_ok(t)
        {
            return Err(bad(
                s,
                format!(
                    "`{t}` is not a tag (letters, digits, _ . -, at most 128, not starting with . or -)"
                ),
            ));
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad(
                s,
                "it names no version: add the tag to install, e.g. :0.1.0",
            ));
        }
        Ok(Reference {
            registry: registry.to_string(),
            host,
            port,
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The same repository at another tag (no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The wkg package name (`ns:name`) of `…/ns/name`, when the path has two components or more.
    pub fn package(&self) -> Option<String> {
        let mut it = self.repository.rsplit('/');
        let name = it.next()?;
        let ns = it.next()?;
        Some(format!("{ns}:{name}"))
    }

    /// The repository's last component as a tool name: `word-count` → `word_count`.
    pub fn default_name(&self) -> String {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
            .replace(['-', '.'], "_")
    }

    /// A loopback host (`localhost`, 127.0.0.0/8, ::1): plain http is allowed there.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// `HOST[:PORT]/REPO` as cosign's simple-signing `docker-reference` names it.
    pub fn docker_reference(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn split_host_port(registry: &str) -> Option<(String, Option<u16>)> {
    if registry.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (format!("[{h}]"), Some(p.parse().ok()?)),
            None if after.is_empty() => (format!("[{h}]"), None),
            None => return None,
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (registry.to_string(), None),
        }
    };
    let ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')));
    ok.then_some((host, port))
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_host_port_namespace_name_and_version() {
        let r = Reference::parse("oci://127.0.0.1:5000/acme/word-count:0.1.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.port, Some(5000));
        assert_eq!(r.repository, "acme/word-count");
        assert_eq!(r.tag.as_deref(), Some("0.1.0"));
        assert_eq!(r.package().as_deref(), Some("acme:word-count"));
        assert_eq!(r.default_name(), "word_count");
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/acme/word-count:0.1.0");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("oci://ghcr.io/a/b/c:1.0.0@{d}")).unwrap();
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.manifest_ref(), d);
        assert!(!r.is_loopback());
    }

    #[test]
    fn refuses_bad_references_with_the_reason() {
        for (s, why) in [
            ("oci://h/Acme/x:1", "is not a repository name component"),
            ("oci://h/acme/x", "names no version"),
            ("oci://h/acme/x:.1", "is not a tag"),
            ("oci://h:port/acme/x:1", "is not a registry"),
            ("ghcr.io/acme/x:1", "must start with oci://"),
            ("oci://h/acme/x@sha256:12", "is not a sha256"),
        ] {
            let e = Reference::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
        let e = Reference::parse("warg://r/acme:x@1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no longer developed"), "{e}");
    }
}
