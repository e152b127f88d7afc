//! A minimal DNS client (A and AAAA over UDP) for the test resolver of
//! `[tools.web] resolver`: tests point it at a server on loopback that answers what
//! they need (a public address first and loopback second, to prove the connection is
//! pinned to the address that was checked). Production uses the system resolver.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("DNS: {what}"))
}

/// The query packet for `name`, record type `qtype`, with id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut p = Vec::with_capacity(18 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // recursion desired
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("a label of the name is empty or longer than 63 bytes"));
        }
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]); // class IN
    Ok(p)
}

/// Skip a (possibly compressed) name starting at `at`; the offset after it.
fn skip_name(p: &[u8], mut at: usize) -> io::Result<usize> {
    for _ in 0..128 {
        let len = *p.get(at).ok_or_else(|| bad("truncated name"))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + l as usize,
        }
    }
    Err(bad("name too long"))
}

fn u16_at(p: &[u8], at: usize) -> io::Result<u16> {
    match p.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(bad("truncated packet")),
    }
}

/// The addresses of the answer section of response `p` to query `id`, in order.
pub fn parse_answers(p: &[u8], id: u16) -> io::Result<Vec<IpAddr>> {
    if u16_at(p, 0)? != id {
        return Err(bad("response to another query"));
    }
    let flags = u16_at(p, 2)?;
    if flags & 0x8000 == 0 {
        return Err(bad("not a response"));
    }
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Vec::new()), // NXDOMAIN: no address
        rcode => return Err(bad(&format!("the server answered with error code {rcode}"))),
    }
    let questions = u16_at(p, 4)?;
    let answers = u16_at(p, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(p, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(p, at)?;
        let rtype = u16_at(p, at)?;
        let len = u16_at(p, at + 8)? as usize;
        let data = p
            .get(at + 10..at + 10 + len)
            .ok_or_else(|| bad("truncated record"))?;
        match (rtype, data.len()) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {} // CNAME and others: the addresses follow
        }
        at += 10 + len;
    }
    Ok(out)
}

/// Ask `server` for the A, then the AAAA records of `name`: the A answers first.
pub async fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Vec<IpAddr>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let mut out = Vec::new();
    let base: u16 = rand_id();
    for (i, qtype) in [TYPE_A, TYPE_AAAA].into_iter().enumerate() {
        let id = base.wrapping_add(i as u16);
        socket.send(&query(id, name, qtype)?).await?;
        let mut buf = [0u8; 1500];
        let n = tokio::time::timeout(timeout, socket.recv(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS: no answer"))??;
        out.extend(parse_answers(&buf[..n], id)?);
    }
    Ok(out)
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_compressed_names_parses() {
        let q = query(7, "rebind.test", TYPE_A).unwrap_or_default();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2; // two answers
        for ip in [[93, 184, 215, 14], [127, 0, 0, 1]] {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ip);
        }
        let got = parse_answers(&r, 7).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                "93.184.215.14"
                    .parse::<IpAddr>()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            ]
        );
        assert!(parse_answers(&r, 8).is_err());
    }
}
