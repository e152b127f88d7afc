//! `[tools.web]`, `[tools.web_fetch]`, `[tools.web_search]`: what the `web` tools may
//! reach, how long they may take, and the search backends. Checked at load (every rule
//! parsed, every URL an http(s) URL, every bound in range); turned into the host's
//! [`WebAccess`] and each tool's settings JSON (`oxydra:tool/settings`) when the tools
//! are assembled.

use oxydra_runtime::capabilities::http::Origin;
use oxydra_runtime::capabilities::web::{Policy, Rule};
use oxydra_runtime::{Resolver, WebAccess};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

type KeyError = (String, String);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub web: WebConfig,
    pub web_fetch: WebFetchConfig,
    pub web_search: WebSearchConfig,
}

/// The egress policy every `web`-profile tool shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Hosts (`wiki.corp`, `wiki.corp:8080`), domains (`*.corp`), networks
    /// (`10.1.0.0/16`) or addresses (`127.0.0.1`, `127.0.0.1:8080`) reachable besides
    /// public addresses.
    pub allow: Vec<String>,
    /// The same forms, never reachable (checked before `allow`).
    pub deny: Vec<String>,
    /// One request, redirects and body included.
    pub timeout_secs: u64,
    /// One TCP (and TLS) connection.
    pub connect_timeout_secs: u64,
    pub max_response_bytes: u64,
    /// Redirects followed per request, at most 5.
    pub max_redirects: u8,
    /// For tests only: a DNS server on a loopback address to resolve names with
    /// instead of the system resolver.
    pub resolver: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            allow: Vec::new(),
            deny: Vec::new(),
            timeout_secs: 30,
            connect_timeout_secs: 10,
            max_response_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            resolver: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebFetchConfig {
    /// Most characters of text `web_fetch` returns (the model may ask for fewer).
    pub max_chars: u32,
}

impl Default for WebFetchConfig {
    fn default() -> Self {
        WebFetchConfig { max_chars: 50_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchProvider {
    Searxng,
    Duckduckgo,
    Brave,
}

impl SearchProvider {
    fn name(self) -> &'static str {
        match self {
            SearchProvider::Searxng => "searxng",
            SearchProvider::Duckduckgo => "duckduckgo",
            SearchProvider::Brave => "brave",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSearchConfig {
    /// Backends in the order they are tried; the next is tried when one fails.
    pub providers: Vec<SearchProvider>,
    pub searxng: Option<SearxngConfig>,
    pub duckduckgo: Option<DuckDuckGoConfig>,
    pub brave: Option<BraveConfig>,
}

impl Default for WebSearchConfig {
    fn default() -> Self {
        WebSearchConfig {
            providers: vec![SearchProvider::Duckduckgo],
            searxng: None,
            duckduckgo: None,
            brave: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearxngConfig {
    /// Instances tried in order (self-hosted; reachable by `web_search` only, whatever
    /// their address).
    pub base_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engines: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// 0 (off), 1 (moderate) or 2 (strict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safesearch: Option<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuckDuckGoConfig {
    pub base_url: String,
}

impl Default for DuckDuckGoConfig {
    fn default() -> Self {
        DuckDuckGoConfig {
            base_url: "https://html.duckduckgo.com".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BraveConfig {
    pub base_url: String,
    /// The variable holding the API key; the host adds it to requests for `base_url`.
    pub api_key_env: String,
}

impl Default for BraveConfig {
    fn default() -> Self {
        BraveConfig {
            base_url: "https://api.search.brave.com".into(),
            api_key_env: "BRAVE_SEARCH_API_KEY".into(),
        }
    }
}

fn origin(key: &str, url: &str) -> Result<Origin, KeyError> {
    Origin::parse(url).map_err(|m| (key.to_string(), m))
}

impl ToolsConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        let w = &self.web;
        for (list, name) in [(&w.allow, "allow"), (&w.deny, "deny")] {
            for (i, r) in list.iter().enumerate() {
                Rule::parse(r)
                    .map_err(|m| (format!("tools.web.{name}"), format!("entry {}: {m}", i + 1)))?;
            }
        }
        if !(1..=600).contains(&w.timeout_secs) {
            return Err(("tools.web.timeout_secs".into(), "must be 1..=600".into()));
        }
        if w.connect_timeout_secs == 0 || w.connect_timeout_secs > w.timeout_secs {
            return Err((
                "tools.web.connect_timeout_secs".into(),
                "must be at least 1 and at most tools.web.timeout_secs".into(),
            ));
        }
        if !(1024..=256 * 1024 * 1024).contains(&w.max_response_bytes) {
            return Err((
                "tools.web.max_response_bytes".into(),
                "must be between 1024 and 268435456".into(),
            ));
        }
        if w.max_redirects > 5 {
            return Err(("tools.web.max_redirects".into(), "must be 0..=5".into()));
        }
        resolver(w)?;
        if !(1000..=100_000).contains(&self.web_fetch.max_chars) {
            return Err((
                "tools.web_fetch.max_chars".into(),
                "must be 1000..=100000".into(),
            ));
        }
        let s = &self.web_search;
        if s.providers.is_empty() {
            return Err((
                "tools.web_search.providers".into(),
                "lists no backend: name at least one of searxng, duckduckgo, brave".into(),
            ));
        }
        for (i, p) in s.providers.iter().enumerate() {
            if s.providers[..i].contains(p) {
                return Err((
                    "tools.web_search.providers".into(),
                    format!("lists `{}` twice", p.name()),
                ));
            }
        }
        for (p, set) in [
            (SearchProvider::Searxng, s.searxng.is_some()),
            (SearchProvider::Duckduckgo, s.duckduckgo.is_some()),
            (SearchProvider::Brave, s.brave.is_some()),
        ] {
            if set && !s.providers.contains(&p) {
                return Err((
                    format!("tools.web_search.{}", p.name()),
                    format!(
                        "is set but `{}` is not in tools.web_search.providers; add it there or remove the table",
                        p.name()
                    ),
                ));
            }
        }
        if s.providers.contains(&SearchProvider::Searxng) {
            let Some(sx) = s.searxng.clone() else {
                return Err((
                    "tools.web_search.providers".into(),
                    "lists searxng, which is self-hosted: add [tools.web_search.searxng] base_urls = [\"http://127.0.0.1:8888\"] (your instances)".into(),
                ));
            };
            if sx.base_urls.is_empty() {
                return Err((
                    "tools.web_search.searxng.base_urls".into(),
                    "SearXNG is self-hosted: list at least one instance (e.g. [\"http://127.0.0.1:8888\"])".into(),
                ));
            }
            for u in &sx.base_urls {
                origin("tools.web_search.searxng.base_urls", u)?;
            }
            if sx.safesearch.is_some_and(|v| v > 2) {
                return Err((
                    "tools.web_search.searxng.safesearch".into(),
                    "must be 0, 1 or 2".into(),
                ));
            }
        }
        if let Some(d) = &s.duckduckgo {
            origin("tools.web_search.duckduckgo.base_url", &d.base_url)?;
        }
        if let Some(b) = &s.brave {
            origin("tools.web_search.brave.base_url", &b.base_url)?;
            if b.api_key_env.trim().is_empty() {
                return Err((
                    "tools.web_search.brave.api_key_env".into(),
                    "names no variable".into(),
                ));
            }
        }
        Ok(())
    }

    /// The tool's settings (`oxydra:tool/settings`), defaults filled in, no secrets.
    pub fn settings(&self, tool: &str) -> Option<String> {
        let value = match tool {
            "web_fetch" => serde_json::to_value(&self.web_fetch).ok()?,
            "web_search" => {
                let s = &self.web_search;
                let mut v = serde_json::json!({ "providers": s.providers });
                for p in &s.providers {
                    let table = match p {
                        SearchProvider::Searxng => {
                            serde_json::to_value(s.searxng.clone().unwrap_or_default())
                        }
                        SearchProvider::Duckduckgo => {
                            serde_json::to_value(s.duckduckgo.clone().unwrap_or_default())
                        }
                        SearchProvider::Brave => {
                            let b = s.brave.clone().unwrap_or_default();
                            Ok(serde_json::json!({ "base_url": b.base_url }))
                        }
                    };
                    v[p.name()] = table.ok()?;
                }
                v
            }
            _ => return None,
        };
        Some(value.to_string())
    }

    /// Requests one call of `tool` may make in sequence (the search backends it may
    /// fall back through): its deadline covers that many request timeouts.
    pub fn attempts(&self, tool: &str) -> u64 {
        if tool != "web_search" {
            return 1;
        }
        let s = &self.web_search;
        s.providers
            .iter()
            .map(|p| match p {
                SearchProvider::Searxng => s
                    .searxng
                    .as_ref()
                    .map_or(1, |x| x.base_urls.len().max(1) as u64),
                _ => 1,
            })
            .sum()
    }

    /// The host's web access for `tool`: the shared policy, and for `web_search` its
    /// configured backends (reachable whatever their address) and Brave's key, read
    /// from its variable now. `env` reads a variable.
    pub fn access(
        &self,
        tool: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<WebAccess, KeyError> {
        let w = &self.web;
        let rules = |list: &[String], key: &str| -> Result<Vec<Rule>, KeyError> {
            list.iter()
                .map(|r| Rule::parse(r).map_err(|m| (key.to_string(), m)))
                .collect()
        };
        let mut access = WebAccess {
            policy: Policy {
                allow: rules(&w.allow, "tools.web.allow")?,
                deny: rules(&w.deny, "tools.web.deny")?,
            },
            resolver: resolver(w)?,
            timeout: Duration::from_secs(w.timeout_secs),
            connect_timeout: Duration::from_secs(w.connect_timeout_secs),
            max_response_bytes: w.max_response_bytes,
            max_redirects: w.max_redirects,
            secrets: Vec::new(),
        };
        if tool != "web_search" {
            return Ok(access);
        }
        let s = &self.web_search;
        let mut backends: Vec<String> = Vec::new();
        for p in &s.providers {
            match p {
                SearchProvider::Searxng => {
                    backends.extend(s.searxng.clone().unwrap_or_default().base_urls)
                }
                SearchProvider::Duckduckgo => {
                    backends.push(s.duckduckgo.clone().unwrap_or_default().base_url)
                }
                SearchProvider::Brave => {
                    let b = s.brave.clone().unwrap_or_default();
                    let key = env(&b.api_key_env).filter(|k| !k.is_empty()).ok_or_else(|| {
                        (
                            "tools.web_search.brave.api_key_env".to_string(),
                            format!(
                                "{} is not set: export the Brave Search API key there, or remove brave from tools.web_search.providers",
                                b.api_key_env
                            ),
                        )
                    })?;
                    let mut value = http::HeaderValue::from_str(&key).map_err(|_| {
                        (
                            "tools.web_search.brave.api_key_env".to_string(),
                            format!("{} holds characters a header cannot carry", b.api_key_env),
                        )
                    })?;
                    value.set_sensitive(true);
                    let o = origin("tools.web_search.brave.base_url", &b.base_url)?;
                    access.secrets.push((
                        o,
                        http::HeaderName::from_static("x-subscription-token"),
                        value,
                    ));
                    backends.push(b.base_url);
                }
            }
        }
        for url in backends {
            let o = origin("tools.web_search", &url)?;
            // Exactly the backend's host and port, whatever it resolves to.
            let rule = match o.host.trim_start_matches('[').trim_end_matches(']').parse() {
                Ok(ip) => Rule::Addr { ip, port: o.port },
                Err(_) => Rule::Host {
                    name: o.host.trim_end_matches('.').to_string(),
                    port: Some(o.port),
                },
            };
            access.policy.allow.push(rule);
        }
        Ok(access)
    }
}

fn resolver(w: &WebConfig) -> Result<Resolver, KeyError> {
    let Some(r) = &w.resolver else {
        return Ok(Resolver::System);
    };
    match r.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Ok(Resolver::Dns(a)),
        _ => Err((
            "tools.web.resolver".into(),
            format!(
                "`{r}`: this is a test hook and takes a DNS server on a loopback address (e.g. 127.0.0.1:5353); remove it to use the system resolver"
            ),
        )),
    }
}
