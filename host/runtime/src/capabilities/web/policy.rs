//! The web egress policy as data and pure functions: which URLs and which addresses a
//! `web` tool may reach. No I/O here; resolving and connecting are in `send.rs`, which
//! checks every address this module is asked about and connects only to those.
//!
//! Denied by default (each with its range, named in the denial): the unspecified and
//! "this network" block, loopback, RFC 1918 private ranges, CGNAT shared space,
//! link-local (cloud metadata at 169.254.169.254 included), IETF protocol assignments,
//! documentation and benchmarking ranges, multicast, reserved space and broadcast; in
//! IPv6 the unspecified and loopback addresses, unique-local, site-local and link-local
//! ranges, multicast, documentation, discard-only and IETF special-purpose blocks, and
//! every IPv6 form that embeds an IPv4 address (mapped, compatible, NAT64, 6to4) when
//! the embedded address is denied. Names under `localhost` are loopback without asking
//! DNS. Operators allow hosts or networks (`[tools.web] allow`) and deny others
//! (`deny`, checked first).

use http::uri::Uri;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Net {
        let [a, b, c, d, e, f, g, h] = segments;
        Net {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`, `::1`, `[::1]`).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network (e.g. 10.1.0.0/16)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A denied range of the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub net: Net,
    pub name: &'static str,
}

const fn r4(a: u8, b: u8, c: u8, d: u8, prefix: u8, name: &'static str) -> Range {
    Range {
        net: Net::v4(a, b, c, d, prefix),
        name,
    }
}

const fn r6(segments: [u16; 8], prefix: u8, name: &'static str) -> Range {
    Range {
        net: Net::v6(segments, prefix),
        name,
    }
}

/// IPv4 ranges no web tool reaches by default (IANA special-purpose registry, and
/// everything that is not public unicast).
pub const DENIED_V4: [Range; 16] = [
    r4(0, 0, 0, 0, 8, "the unspecified/\"this network\" block"),
    r4(10, 0, 0, 0, 8, "private (RFC 1918)"),
    r4(100, 64, 0, 0, 10, "shared CGNAT space (RFC 6598)"),
    r4(127, 0, 0, 0, 8, "loopback"),
    r4(
        169,
        254,
        0,
        0,
        16,
        "link-local (cloud metadata lives at 169.254.169.254)",
    ),
    r4(172, 16, 0, 0, 12, "private (RFC 1918)"),
    r4(192, 0, 0, 0, 24, "IETF protocol assignments"),
    r4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)"),
    r4(
        192,
        88,
        99,
        0,
        24,
        "the deprecated 6to4 relay anycast block",
    ),
    r4(192, 168, 0, 0, 16, "private (RFC 1918)"),
    r4(198, 18, 0, 0, 15, "benchmarking (RFC 2544)"),
    r4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)"),
    r4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)"),
    r4(224, 0, 0, 0, 4, "multicast"),
    r4(255, 255, 255, 255, 32, "broadcast"),
    r4(240, 0, 0, 0, 4, "reserved"),
];

/// IPv6 ranges no web tool reaches by default. The forms that embed an IPv4 address
/// are not here: their embedded address is checked against [`DENIED_V4`].
pub const DENIED_V6: [Range; 12] = [
    r6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    r6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    r6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
    r6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    r6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF special-purpose (Teredo, benchmarking, ORCHID)",
    ),
    r6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    r6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    r6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment-routing SIDs"),
    r6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    r6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    r6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (deprecated)"),
    r6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

/// The IPv4 address an IPv6 address carries, and which form carries it: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::/48`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some((low, "IPv4-mapped"));
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some((low, "IPv4-translated"));
    }
    if s[..6] == [0; 6] && u32::from(low) > 1 {
        return Some((low, "IPv4-compatible"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((low, "NAT64"));
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return Some((v4, "6to4"));
    }
    None
}

/// Why the default policy denies `ip`, if it does: the range's name and network, with
/// the IPv6 form named for an embedded IPv4 address.
pub fn classify(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => DENIED_V4
            .iter()
            .find(|r| r.net.contains(IpAddr::V4(v4)))
            .map(|r| format!("{} ({})", r.name, r.net)),
        IpAddr::V6(v6) => {
            if let Some((v4, form)) = embedded_v4(v6) {
                return classify(IpAddr::V4(v4))
                    .map(|why| format!("the {form} IPv6 form of {v4}, {why}"));
            }
            DENIED_V6
                .iter()
                .find(|r| r.net.contains(IpAddr::V6(v6)))
                .map(|r| format!("{} ({})", r.name, r.net))
        }
    }
}

/// Ports no web tool connects to unless an operator rule names the port: the URL
/// standard's "bad ports" (mail, remote shells, file sharing, IRC, databases' and
/// caches' well-known ports a GET line could talk to), so a request cannot be aimed at
/// a text protocol.
pub const BAD_PORTS: [u16; 84] = [
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
    103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
    512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
    995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
    6669, 6679, 6697, 10080, 6379, 11211,
];

/// A URL's host after normalisation: an address (every IPv4 notation a resolver would
/// accept, read as the address it means), or a lower-case name without a final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// One dotted part of a loose IPv4 literal (`0x7f`, `0177`, `127`), as inet_aton reads it.
/// `None`: not a number in any base (the host is a name).
fn ipv4_part(p: &str) -> Option<Result<u64, ()>> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if p.is_empty() {
        return None;
    }
    if digits.is_empty() {
        return Some(Ok(0)); // "0x" is 0, as inet_aton reads it
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if radix != 16 && !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Parses only when every digit is valid in the base (octal 08 is not a number).
    Some(u64::from_str_radix(digits, radix).map_err(|_| ()))
}

/// IPv4 in any notation inet_aton and the WHATWG URL parser accept: 1 to 4 parts, each
/// decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes
/// (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`). `None`: not IPv4 (a name);
/// `Some(Err)`: numeric but out of range.
pub fn parse_ipv4_loose(host: &str) -> Option<Result<Ipv4Addr, ()>> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        match ipv4_part(p)? {
            Ok(v) => values.push(v),
            Err(()) => return Some(Err(())),
        }
    }
    let (last, head) = values.split_last()?;
    if head.iter().any(|v| *v > 255) {
        return Some(Err(()));
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << last_bits {
        return Some(Err(()));
    }
    let mut n: u64 = 0;
    for (i, v) in head.iter().enumerate() {
        n |= v << (24 - 8 * i as u32);
    }
    n |= last;
    Some(Ok(Ipv4Addr::from(n as u32)))
}

/// Normalise a URL host: brackets off an IPv6 literal (zone ids refused), loose IPv4
/// notations read as their address, names lower-cased with one final dot removed. A
/// host whose last label is a number but which is not a valid IPv4 address is refused,
/// as the URL standard does.
pub fn normalize_host(host: &str) -> Result<Host, String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.contains('%') {
            return Err(format!("`{host}`: IPv6 zone identifiers are not allowed"));
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("`{host}` is not a valid IPv6 address"));
    }
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("the URL has no host".into());
    }
    if let Ok(ip) = name.parse::<Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(ip)));
    }
    match parse_ipv4_loose(name) {
        Some(Ok(ip)) => return Ok(Host::Ip(IpAddr::V4(ip))),
        Some(Err(())) => return Err(format!("`{host}` is not a valid IPv4 address")),
        None => {}
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if ipv4_part(last).is_some() {
        return Err(format!(
            "`{host}` ends in a number but is not a valid IPv4 address"
        ));
    }
    let valid = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid || name.len() > 253 {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(Host::Name(name.to_string()))
}

/// An operator's `allow` or `deny` entry: a network (`10.1.0.0/16`, `127.0.0.1`), a
/// host (`wiki.corp`), every name under a domain (`*.corp`), each optionally with a
/// port (`wiki.corp:8080`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Net(Net),
    /// One address and port (`127.0.0.1:8888`, `[::1]:8080`).
    Addr {
        ip: IpAddr,
        port: u16,
    },
    Host {
        name: String,
        port: Option<u16>,
    },
    Domain {
        suffix: String,
        port: Option<u16>,
    },
}

impl Rule {
    pub fn parse(entry: &str) -> Result<Rule, String> {
        let s = entry.trim();
        if s.contains('/') {
            return Net::parse(s).map(Rule::Net);
        }
        if (s.parse::<IpAddr>().is_ok() || s.starts_with('['))
            && let Ok(net) = Net::parse(s)
        {
            return Ok(Rule::Net(net));
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Ok(Rule::Addr {
                ip: sa.ip(),
                port: sa.port(),
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{entry}`: `{p}` is not a port"))?;
                (h, Some(port))
            }
            _ => (s, None),
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            return match normalize_host(suffix) {
                Ok(Host::Name(n)) => Ok(Rule::Domain { suffix: n, port }),
                _ => Err(format!("`{entry}` is not a domain pattern (e.g. *.corp)")),
            };
        }
        match normalize_host(host) {
            Ok(Host::Name(name)) => Ok(Rule::Host { name, port }),
            Ok(Host::Ip(ip)) if port.is_none() => Ok(Rule::Net(Net {
                addr: ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
            })),
            Ok(Host::Ip(_)) => Err(format!(
                "`{entry}`: an address rule takes no port (use the address or a network)"
            )),
            Err(e) => Err(format!(
                "`{entry}` is neither a host, a *.domain nor a network: {e}"
            )),
        }
    }

    /// Whether this rule names `port` explicitly.
    fn names_port(&self, port: u16) -> bool {
        match self {
            Rule::Addr { port: p, .. } => *p == port,
            Rule::Host { port: p, .. } | Rule::Domain { port: p, .. } => *p == Some(port),
            Rule::Net(_) => false,
        }
    }

    fn matches_name(&self, host: &str, port: u16) -> bool {
        match self {
            Rule::Host { name, port: p } => name == host && p.is_none_or(|p| p == port),
            Rule::Domain { suffix, port: p } => {
                host.strip_suffix(suffix.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
                    && p.is_none_or(|p| p == port)
            }
            Rule::Net(_) | Rule::Addr { .. } => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(|(v4, _)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        let net = match self {
            Rule::Net(net) => net,
            Rule::Addr { ip: a, port: p } => {
                return *p == port && (*a == ip || Some(*a) == v4);
            }
            _ => return false,
        };
        if net.contains(ip) {
            return true;
        }
        // A rule for an IPv4 network also covers that network's IPv6 forms.
        v4.is_some_and(|v4| net.contains(v4))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            Rule::Net(n) => write!(f, "{n}"),
            Rule::Addr { ip, port } => write!(f, "{}", std::net::SocketAddr::new(*ip, *port)),
            Rule::Host { name, port: p } => write!(f, "{name}{}", port(p)),
            Rule::Domain { suffix, port: p } => write!(f, "*.{suffix}{}", port(p)),
        }
    }
}

/// A refusal: which URL, which address (when one was involved), and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub url: String,
    pub address: Option<IpAddr>,
    pub rule: String,
}

/// The prefix of every denial's message; components map it to a `denied` tool error.
pub const DENIED_PREFIX: &str = "egress denied:";

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(a) => write!(f, "{DENIED_PREFIX} {} → {a}: {}", self.url, self.rule),
            None => write!(f, "{DENIED_PREFIX} {}: {}", self.url, self.rule),
        }
    }
}

/// A URL that passed the checks that need no DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: Host,
    pub port: u16,
    /// An `allow` host rule covers the name: whatever it resolves to is reachable
    /// (except networks the operator denied).
    pub host_allowed: bool,
}

impl Target {
    /// `host:port` with an IPv6 literal in brackets.
    pub fn authority(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            h => format!("{h}:{}", self.port),
        }
    }
}

/// The policy: the operator's rules; everything else is the default (public
/// addresses only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

const HINT: &str = "web tools reach public addresses only; an operator can allow a host or network with [tools.web] allow";

impl Policy {
    /// The checks that need no DNS: scheme, no credentials in the URL, a well-formed
    /// host, the operator's host rules, and a literal address's own check.
    pub fn check_url(&self, uri: &Uri) -> Result<Target, Denial> {
        let url = uri.to_string();
        let deny = |rule: String| Denial {
            url: url.clone(),
            address: None,
            rule,
        };
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(deny(format!(
                    "the scheme `{other}` is not allowed: only http and https"
                )));
            }
            None => return Err(deny("the URL has no scheme: only http and https".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| deny("the URL has no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(deny(
                "URLs with credentials (user@host) are not fetched".into(),
            ));
        }
        let raw_host = authority.host();
        let host = normalize_host(raw_host).map_err(deny)?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if port == 0 {
            return Err(deny("port 0 is not a port".into()));
        }
        let port_named = self.allow.iter().any(|r| r.names_port(port));
        if BAD_PORTS.contains(&port) && !port_named {
            return Err(deny(format!(
                "port {port} belongs to a non-web protocol; web tools do not connect to it unless a [tools.web] allow rule names the port"
            )));
        }
        if let Host::Name(name) = &host {
            if let Some(r) = self.deny.iter().find(|r| r.matches_name(name, port)) {
                return Err(deny(format!("matches the [tools.web] deny rule `{r}`")));
            }
            let host_allowed = self.allow.iter().any(|r| r.matches_name(name, port));
            if !host_allowed && (name == "localhost" || name.ends_with(".localhost")) {
                return Err(deny(format!(
                    "`{name}` is loopback (RFC 6761 reserves localhost); {HINT}"
                )));
            }
            return Ok(Target {
                https,
                host,
                port,
                host_allowed,
            });
        }
        let target = Target {
            https,
            host,
            port,
            host_allowed: false,
        };
        if let Host::Ip(ip) = target.host {
            self.check_ip(&url, &target, ip)?;
        }
        Ok(target)
    }

    /// One address `target`'s host resolved to (or is). Deny rules first, then allow
    /// rules, then the default ranges. `Ok(true)`: an operator rule allowed it (so it
    /// may be this machine's own address); `Ok(false)`: it is public.
    pub fn check_ip(&self, url: &str, target: &Target, ip: IpAddr) -> Result<bool, Denial> {
        let deny = |rule: String| Denial {
            url: url.to_string(),
            address: Some(ip),
            rule,
        };
        let resolved = match &target.host {
            Host::Name(n) => format!("`{n}` resolves to {ip}, which is "),
            Host::Ip(_) => String::new(),
        };
        if let Some(r) = self.deny.iter().find(|r| r.matches_ip(ip, target.port)) {
            return Err(deny(format!(
                "{resolved}in the [tools.web] deny rule `{r}`"
            )));
        }
        if target.host_allowed || self.allow.iter().any(|r| r.matches_ip(ip, target.port)) {
            return Ok(true);
        }
        match classify(ip) {
            Some(why) => Err(deny(format!("{resolved}{why}; {HINT}"))),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The SSRF suite for the default policy and the operator's rules. Every case goes
    //! through the same two checks the connector uses: `check_url` (no DNS) and, for a
    //! name, `check_ip` on each address it resolves to.
    use super::*;

    fn uri(s: &str) -> Uri {
        match s.parse() {
            Ok(u) => u,
            Err(e) => unreachable_uri(s, e),
        }
    }

    #[allow(clippy::panic)]
    fn unreachable_uri(s: &str, e: http::uri::InvalidUri) -> Uri {
        panic!("test URL {s} does not parse: {e}")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// The denial for `url` under `policy`, resolving names to `resolved`.
    fn verdict(policy: &Policy, url: &str, resolved: &[&str]) -> Result<(), String> {
        let u = uri(url);
        let t = policy.check_url(&u).map_err(|d| d.to_string())?;
        if let Host::Name(_) = t.host {
            for a in resolved {
                policy
                    .check_ip(&u.to_string(), &t, ip(a))
                    .map_err(|d| d.to_string())?;
            }
        }
        Ok(())
    }

    fn denied_with(url: &str, needles: &[&str]) {
        denied_by(&Policy::default(), url, &["93.184.215.14"], needles);
    }

    fn denied_by(policy: &Policy, url: &str, resolved: &[&str], needles: &[&str]) {
        match verdict(policy, url, resolved) {
            Ok(()) => unreachable_ok(url),
            Err(msg) => {
                assert!(msg.starts_with(DENIED_PREFIX), "{url}: {msg}");
                for n in needles {
                    assert!(msg.contains(n), "{url}: `{msg}` does not mention `{n}`");
                }
            }
        }
    }

    #[allow(clippy::panic)]
    fn unreachable_ok(url: &str) {
        panic!("{url} was allowed but must be denied")
    }

    fn allowed_by(policy: &Policy, url: &str, resolved: &[&str]) {
        assert_eq!(verdict(policy, url, resolved), Ok(()), "{url}");
    }

    #[test]
    fn loopback_in_every_ipv4_notation_is_denied() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://127.000.000.001/",
            "http://127.0.0.1./",
            "http://127.255.255.254:8080/x",
            "HTTP://127.0.0.1/",
        ] {
            denied_with(url, &["loopback", "127.0.0.0/8", "127."]);
        }
    }

    #[test]
    fn unspecified_and_this_network_are_denied() {
        for url in [
            "http://0/",
            "http://0.0.0.0/",
            "http://0x0/",
            "http://0.1.2.3/",
        ] {
            denied_with(url, &["this network", "0.0.0.0/8"]);
        }
        denied_with("http://[::]/", &["unspecified", "::/128"]);
    }

    #[test]
    fn private_cgnat_and_link_local_ranges_are_denied() {
        for (url, range) in [
            ("http://10.0.0.1/", "10.0.0.0/8"),
            ("http://10.255.255.255/", "10.0.0.0/8"),
            ("http://012.1/", "10.0.0.0/8"),
            ("http://172.16.0.1/", "172.16.0.0/12"),
            ("http://172.31.255.255/", "172.16.0.0/12"),
            ("http://192.168.1.1/", "192.168.0.0/16"),
            ("http://3232235777/", "192.168.0.0/16"),
            ("http://100.64.0.1/", "100.64.0.0/10"),
            ("http://100.127.255.254/", "100.64.0.0/10"),
            ("http://100.100.100.200/", "100.64.0.0/10"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
            ("http://169.254.0.1/", "169.254.0.0/16"),
            ("http://0xa9fea9fe/", "169.254.0.0/16"),
            ("http://192.0.0.170/", "192.0.0.0/24"),
        ] {
            denied_with(url, &[range]);
        }
        denied_with("http://169.254.169.254/", &["metadata", "169.254.169.254"]);
    }

    #[test]
    fn documentation_benchmarking_multicast_reserved_and_broadcast_are_denied() {
        for (url, range) in [
            ("http://192.0.2.1/", "192.0.2.0/24"),
            ("http://198.51.100.7/", "198.51.100.0/24"),
            ("http://203.0.113.9/", "203.0.113.0/24"),
            ("http://198.18.0.1/", "198.18.0.0/15"),
            ("http://198.19.255.255/", "198.18.0.0/15"),
            ("http://224.0.0.1/", "224.0.0.0/4"),
            ("http://239.255.255.250/", "224.0.0.0/4"),
            ("http://240.0.0.1/", "240.0.0.0/4"),
            ("http://255.255.255.255/", "broadcast"),
            ("http://192.88.99.1/", "192.88.99.0/24"),
        ] {
            denied_with(url, &[range]);
        }
    }

    #[test]
    fn ipv6_special_ranges_are_denied() {
        for (url, range) in [
            ("http://[::1]/", "loopback"),
            ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
            ("http://[fc00::1]/", "unique-local"),
            ("http://[fd00:ec2::254]/", "unique-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[febf::1]/", "link-local"),
            ("http://[fec0::1]/", "site-local"),
            ("http://[ff02::1]/", "multicast"),
            ("http://[2001:db8::1]/", "documentation"),
            ("http://[100::1]/", "discard-only"),
            ("http://[64:ff9b:1::1]/", "local-use NAT64"),
            ("http://[2001::1]/", "Teredo"),
        ] {
            denied_with(url, &[range]);
        }
    }

    #[test]
    fn ipv6_forms_embedding_a_denied_ipv4_address_are_denied() {
        for (url, form, range) in [
            ("http://[::ffff:127.0.0.1]/", "IPv4-mapped", "127.0.0.0/8"),
            ("http://[::ffff:7f00:1]/", "IPv4-mapped", "127.0.0.0/8"),
            (
                "http://[::ffff:169.254.169.254]/",
                "IPv4-mapped",
                "169.254.0.0/16",
            ),
            (
                "http://[::ffff:a9fe:a9fe]/",
                "IPv4-mapped",
                "169.254.0.0/16",
            ),
            ("http://[::ffff:10.0.0.1]/", "IPv4-mapped", "10.0.0.0/8"),
            ("http://[::127.0.0.1]/", "IPv4-compatible", "127.0.0.0/8"),
            (
                "http://[::192.168.0.1]/",
                "IPv4-compatible",
                "192.168.0.0/16",
            ),
            ("http://[64:ff9b::a9fe:a9fe]/", "NAT64", "169.254.0.0/16"),
            ("http://[64:ff9b::10.0.0.1]/", "NAT64", "10.0.0.0/8"),
            ("http://[2002:7f00:1::]/", "6to4", "127.0.0.0/8"),
            ("http://[2002:c0a8:101::1]/", "6to4", "192.168.0.0/16"),
            (
                "http://[::ffff:0:a9fe:a9fe]/",
                "IPv4-translated",
                "169.254.0.0/16",
            ),
            (
                "http://[::ffff:0:127.0.0.1]/",
                "IPv4-translated",
                "127.0.0.0/8",
            ),
        ] {
            denied_with(url, &[form, range]);
        }
    }

    #[test]
    fn names_that_resolve_to_a_denied_address_are_denied() {
        for (name, addrs, range) in [
            ("http://rebind.example/", &["127.0.0.1"][..], "127.0.0.0/8"),
            ("http://127.0.0.1.nip.io/", &["127.0.0.1"][..], "loopback"),
            (
                "http://metadata.example/",
                &["169.254.169.254"][..],
                "169.254.0.0/16",
            ),
            // Any denied address denies the name, wherever it is in the answer.
            (
                "http://mixed.example/",
                &["93.184.215.14", "10.0.0.1"][..],
                "10.0.0.0/8",
            ),
            (
                "http://v6.example/",
                &["2606:4700::1", "::ffff:127.0.0.1"][..],
                "IPv4-mapped",
            ),
        ] {
            denied_by(&Policy::default(), name, addrs, &["resolves to", range]);
        }
        for url in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost:9000/",
        ] {
            denied_with(url, &["loopback", "localhost"]);
        }
    }

    #[test]
    fn malformed_hosts_credentials_and_other_schemes_are_refused() {
        for (url, why) in [
            ("http://public@127.0.0.1/", "credentials"),
            ("http://user:pass@example.com/", "credentials"),
            ("http://example.com@169.254.169.254/", "credentials"),
            ("ftp://example.com/", "only http and https"),
            ("gopher://example.com:70/", "only http and https"),
            ("http://256.0.0.1/", "not a valid IPv4"),
            ("http://1.2.3.4.5/", "ends in a number"),
            ("http://0xffffffffff/", "not a valid IPv4"),
            ("http://08.0.0.1/", "not a valid IPv4"),
            ("http://example.com:0/", "port 0"),
            ("http://example.com:25/", "port 25"),
            ("http://93.184.215.14:6379/", "port 6379"),
            ("https://example.com:22/", "port 22"),
        ] {
            denied_with(url, &[why]);
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let p = Policy::default();
        for url in [
            "http://93.184.215.14/",
            "https://1.1.1.1/",
            "http://8.8.8.8:8080/q?x=1",
            "http://[2606:4700:4700::1111]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://192.169.0.1/",
            "http://11.0.0.1/",
            "http://[::ffff:8.8.8.8]/",
        ] {
            allowed_by(&p, url, &[]);
        }
        allowed_by(
            &p,
            "https://example.com/",
            &["93.184.215.14", "2606:2800:21f::1"],
        );
    }

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        let rules = |v: &[&str]| v.iter().filter_map(|r| Rule::parse(r).ok()).collect();
        Policy {
            allow: rules(allow),
            deny: rules(deny),
        }
    }

    #[test]
    fn operator_rules_allow_and_deny() {
        let p = policy(
            &[
                "127.0.0.1",
                "[::1]:8080",
                "wiki.corp",
                "*.lab:8443",
                "10.0.0.0/8",
            ],
            &[],
        );
        allowed_by(&p, "http://127.0.0.1:9999/", &[]);
        denied_by(&p, "http://127.0.0.2/", &[], &["127.0.0.0/8"]);
        allowed_by(&p, "http://[::1]:8080/", &[]);
        denied_by(&p, "http://[::1]:8081/", &[], &["loopback"]);
        allowed_by(&p, "http://wiki.corp/", &["192.168.3.4"]);
        allowed_by(&p, "https://a.b.lab:8443/", &["172.20.0.1"]);
        denied_by(&p, "https://a.b.lab/", &["172.20.0.1"], &["172.16.0.0/12"]);
        denied_by(&p, "https://lab:8443/", &["172.20.0.1"], &["172.16.0.0/12"]);
        // An IPv4 rule covers that network's IPv6 forms.
        allowed_by(&p, "http://[::ffff:10.1.2.3]/", &[]);

        let p = policy(
            &["8.8.0.0/16", "wiki.corp"],
            &["example.com", "8.8.8.0/24", "10.9.0.0/16"],
        );
        denied_by(
            &p,
            "https://example.com/",
            &["93.184.215.14"],
            &["deny rule `example.com`"],
        );
        denied_by(&p, "http://8.8.8.8/", &[], &["deny rule `8.8.8.0/24`"]);
        allowed_by(&p, "http://8.8.9.9/", &[]);
        // An allowed name still cannot reach a denied network.
        denied_by(
            &p,
            "http://wiki.corp/",
            &["10.9.1.1"],
            &["deny rule `10.9.0.0/16`"],
        );
    }

    #[test]
    fn rules_parse_or_say_why_not() {
        for ok in [
            "10.0.0.0/8",
            "127.0.0.1",
            "::1",
            "[::1]",
            "fd00::/8",
            "[::1]:80",
            "127.0.0.1:8888",
            "wiki.corp",
            "wiki.corp:8080",
            "*.corp",
        ] {
            assert!(Rule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "*.",
            "host:port",
            "exa mple.com",
            "1.2.3.4.5",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_notation_normalises_to_one_address() {
        for form in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7F.0.0.1",
            "0177.0.0.1",
            "127.1",
            "0x7f.0x0.0x0.0x1",
            "127.0.0.1.",
        ] {
            assert_eq!(
                normalize_host(form),
                Ok(Host::Ip(ip("127.0.0.1"))),
                "{form}"
            );
        }
        assert_eq!(
            normalize_host("Example.COM."),
            Ok(Host::Name("example.com".into()))
        );
        assert!(normalize_host("[fe80::1%25eth0]").is_err());
    }
}
