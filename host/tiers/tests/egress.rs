//! The egress proxy against real sockets: the runtime's tunnel client on one side, a TCP
//! server on loopback on the other.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::capabilities::egress::tunnel;
use oxydra_tiers::egress::{Grants, start};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that answers one line with "echo: <line>".
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(format!("echo: {}", String::from_utf8_lossy(&buf[..n])).as_bytes())
                .unwrap();
        }
    });
    port
}

#[test]
fn granted_origins_tunnel_and_everything_else_is_refused_with_the_reason() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    let port = echo_server();
    let proxy = start(
        &sock,
        Grants {
            origins: vec![("127.0.0.1".into(), port)],
            ..Grants::default()
        },
        rt.handle(),
    )
    .unwrap();
    rt.block_on(async {
        let mut s = tunnel(&sock, &format!("127.0.0.1:{port}")).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "echo: hi");

        let other = port.wrapping_add(1).max(1);
        let e = tunnel(&sock, &format!("127.0.0.1:{other}"))
            .await
            .unwrap_err();
        assert!(
            e.contains("403") && e.contains("not a configured origin"),
            "{e}"
        );
        let e = tunnel(&sock, "169.254.169.254:80").await.unwrap_err();
        assert!(e.contains("403"), "{e}");
    });
    assert_eq!(proxy.counters.tunnels.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.counters.refused.load(Ordering::Relaxed), 2);
    drop(proxy);
    assert!(!sock.exists(), "the socket goes with the proxy");
}

#[test]
fn names_are_resolved_for_web_tools_only() {
    use oxydra_runtime::capabilities::egress::resolve;
    use oxydra_runtime::capabilities::web::policy::Policy;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (no_web, web) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let _a = start(&no_web, Grants::default(), rt.handle()).unwrap();
    let allow_localhost = Policy {
        allow: vec![oxydra_runtime::capabilities::web::policy::Rule::parse("localhost").unwrap()],
        deny: vec![],
    };
    let _b = start(
        &web,
        Grants {
            web: Some(allow_localhost),
            ..Grants::default()
        },
        rt.handle(),
    )
    .unwrap();
    let strict = dir.path().join("c.sock");
    let _c = start(
        &strict,
        Grants {
            web: Some(Policy::default()),
            ..Grants::default()
        },
        rt.handle(),
    )
    .unwrap();
    rt.block_on(async {
        let e = resolve(&no_web, "localhost").await.unwrap_err();
        assert!(e.contains("403") && e.contains("web tools only"), "{e}");
        let ips = resolve(&web, "localhost").await.unwrap();
        assert!(
            ips.iter().all(|ip| ip.is_loopback()) && !ips.is_empty(),
            "{ips:?}"
        );
        // The web policy is applied to the name before it is looked up.
        let e = resolve(&strict, "localhost").await.unwrap_err();
        assert!(e.contains("403") && e.contains("loopback"), "{e}");
        let e = resolve(&web, "bad..name").await.unwrap_err();
        assert!(e.contains("400") && e.contains("not a DNS name"), "{e}");
    });
}
