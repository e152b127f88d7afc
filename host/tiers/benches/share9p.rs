//! Prints figures (`cargo bench -p oxydra-tiers --bench share9p`): the host side of the
//! Firecracker backend's workspace share — `oxydra-host vm-share`'s 9P2000.L server with
//! its request checks, spoken to over a Unix socket as Firecracker's vsock device does
//! for the guest. What the guest kernel and the vsock transport add on top is not in these
//! figures (no Firecracker runs on this machine); they bound what the server costs.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_tiers::share9p::serve_connection;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const MSIZE: u32 = 65_560;
const CHUNK: u32 = MSIZE - 24;

struct Client {
    s: UnixStream,
}

fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

impl Client {
    /// One request, one reply: the reply's type and body (after the tag).
    fn ask(&mut self, kind: u8, body: &[u8]) -> (u8, Vec<u8>) {
        let mut f = ((7 + body.len()) as u32).to_le_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(body);
        self.s.write_all(&f).unwrap();
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).unwrap();
        let mut rest = vec![0u8; u32::from_le_bytes(size) as usize - 4];
        self.s.read_exact(&mut rest).unwrap();
        assert_ne!(rest[0], 7, "Rlerror {:?}", &rest[3..]);
        (rest[0], rest[3..].to_vec())
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&[u8]]) {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend_from_slice(&newfid.to_le_bytes());
        b.extend_from_slice(&(names.len() as u16).to_le_bytes());
        for n in names {
            b.extend(s(n));
        }
        assert_eq!(self.ask(110, &b).0, 111);
    }

    fn lopen(&mut self, fid: u32, flags: u32) {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend_from_slice(&flags.to_le_bytes());
        assert_eq!(self.ask(12, &b).0, 13);
    }

    fn read(&mut self, fid: u32, offset: u64, count: u32) -> usize {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        let (kind, body) = self.ask(116, &b);
        assert_eq!(kind, 117);
        body.len() - 4
    }

    fn write(&mut self, fid: u32, offset: u64, data: &[u8]) {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        assert_eq!(self.ask(118, &b).0, 119);
    }

    fn clunk(&mut self, fid: u32) {
        assert_eq!(self.ask(120, &fid.to_le_bytes()).0, 121);
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), vec![b'x'; 4096]).unwrap();
    let big = 32usize << 20;
    std::fs::write(dir.path().join("big.bin"), vec![7u8; big]).unwrap();
    for (label, read_only) in [("read-write share", false), ("read-only share", true)] {
        let (a, b) = UnixStream::pair().unwrap();
        let root = dir.path().to_path_buf();
        let server = std::thread::spawn(move || serve_connection(b, &root, read_only));
        let mut c = Client { s: a };
        let mut v = MSIZE.to_le_bytes().to_vec();
        v.extend(s(b"9P2000.L"));
        assert_eq!(c.ask(100, &v).0, 101);
        let mut at = 0u32.to_le_bytes().to_vec();
        at.extend_from_slice(&u32::MAX.to_le_bytes());
        at.extend(s(b"oxydra"));
        at.extend(s(b""));
        at.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(c.ask(104, &at).0, 105);

        // A small file, whole: walk, open, read, clunk — four round trips.
        let mut t = Vec::new();
        for _ in 0..3_000 {
            let s0 = Instant::now();
            c.walk(0, 1, &[b"small.txt"]);
            c.lopen(1, 0);
            assert_eq!(c.read(1, 0, 4096), 4096);
            c.clunk(1);
            t.push(s0.elapsed());
        }
        println!(
            "{label}: open + read 4 KiB + close (4 round trips): p50 {} p99 {}",
            us(pct(t.clone(), 0.5)),
            us(pct(t, 0.99))
        );

        // Sequential read in msize chunks.
        c.walk(0, 2, &[b"big.bin"]);
        c.lopen(2, 0);
        let s0 = Instant::now();
        let mut off = 0u64;
        while (off as usize) < big {
            off += c.read(2, off, CHUNK) as u64;
        }
        let secs = s0.elapsed().as_secs_f64();
        c.clunk(2);
        println!(
            "{label}: sequential read, {} KiB requests: {:.0} MiB/s",
            CHUNK / 1024,
            (big as f64 / (1 << 20) as f64) / secs
        );

        if !read_only {
            // Sequential write of a new file in msize chunks.
            c.walk(0, 3, &[]);
            let mut b = 3u32.to_le_bytes().to_vec();
            b.extend(s(b"out.bin"));
            b.extend_from_slice(&((libc::O_WRONLY | libc::O_CREAT) as u32).to_le_bytes());
            b.extend_from_slice(&0o644u32.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            assert_eq!(c.ask(14, &b).0, 15, "created");
            let data = vec![9u8; CHUNK as usize];
            let s0 = Instant::now();
            let mut off = 0u64;
            while (off as usize) < big {
                c.write(3, off, &data);
                off += CHUNK as u64;
            }
            let secs = s0.elapsed().as_secs_f64();
            c.clunk(3);
            println!(
                "{label}: sequential write, {} KiB requests: {:.0} MiB/s",
                CHUNK / 1024,
                (off as f64 / (1 << 20) as f64) / secs
            );
        }
        drop(c);
        server.join().unwrap().unwrap();
    }

    // For scale: the same small-file read straight from the filesystem.
    let mut t = Vec::new();
    for _ in 0..3_000 {
        let s0 = Instant::now();
        let v = std::fs::read(dir.path().join("small.txt")).unwrap();
        assert_eq!(v.len(), 4096);
        t.push(s0.elapsed());
    }
    println!(
        "for scale, std::fs::read of the same 4 KiB file: p50 {}",
        us(pct(t, 0.5))
    );
}
