//! A DNS server on 127.0.0.1 (UDP) for the web tools' test resolver: it answers A
//! queries from a script (the n-th A query gets `answers(n)`), AAAA with nothing, and
//! counts the queries, so a test can prove a name was resolved once.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Dns {
    pub addr: String,
    a_queries: Arc<AtomicUsize>,
}

impl Dns {
    pub fn start(answers: impl Fn(usize, &str) -> Vec<IpAddr> + Send + 'static) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let a_queries = Arc::new(AtomicUsize::new(0));
        let count = a_queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    return;
                };
                let q = &buf[..n];
                // The question: the name's labels from offset 12, then type and class.
                let mut at = 12;
                let mut labels = Vec::new();
                while at < q.len() && q[at] != 0 {
                    let len = q[at] as usize;
                    labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).into_owned());
                    at += 1 + len;
                }
                let qend = at + 5;
                let qtype = u16::from_be_bytes([q[at + 1], q[at + 2]]);
                let name = labels.join(".");
                let ips: Vec<IpAddr> = if qtype == 1 {
                    let i = count.fetch_add(1, Ordering::SeqCst);
                    answers(i, &name)
                        .into_iter()
                        .filter(IpAddr::is_ipv4)
                        .collect()
                } else {
                    Vec::new()
                };
                let mut r = Vec::new();
                r.extend_from_slice(&q[..2]);
                r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, ips.len() as u8, 0, 0, 0, 0]);
                r.extend_from_slice(&q[12..qend]);
                for ip in ips {
                    if let IpAddr::V4(v4) = ip {
                        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
                        r.extend_from_slice(&v4.octets());
                    }
                }
                let _ = socket.send_to(&r, from);
            }
        });
        Dns { addr, a_queries }
    }

    /// A queries answered so far.
    pub fn a_queries(&self) -> usize {
        self.a_queries.load(Ordering::SeqCst)
    }
}
