//! Prints figures (`cargo bench -p oxydra-memory --bench memory`, after
//! scripts/fetch-embedding-model.sh): retrieval quality on the labelled set for each
//! ranking and fusion; hybrid search latency and ingest rate at 100,000 notes with the
//! deterministic embedder, and the cost of opening that memory; MiniLM's embedding time
//! per note and search latency at 10,000 notes. `OXYDRA_BENCH_NOTES` scales the large set;
//! `OXYDRA_BENCH_ONLY=quality` prints the quality tables alone.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_memory::embed::{Deterministic, Embedder, MiniLm};
use oxydra_memory::{Fusion, Memory, Mode, Search, eval};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A synthetic note: a few words from a fixed vocabulary, deterministic in `i`.
fn note(i: usize) -> String {
    const WORDS: [&str; 48] = [
        "server",
        "backup",
        "garden",
        "invoice",
        "dentist",
        "flight",
        "recipe",
        "python",
        "postgres",
        "birthday",
        "insurance",
        "kernel",
        "bicycle",
        "coffee",
        "meeting",
        "passport",
        "router",
        "piano",
        "tax",
        "school",
        "doctor",
        "camera",
        "laptop",
        "holiday",
        "rent",
        "battery",
        "vaccine",
        "concert",
        "library",
        "train",
        "budget",
        "printer",
        "keyboard",
        "weather",
        "salary",
        "museum",
        "tomato",
        "charger",
        "ticket",
        "harbor",
        "violin",
        "marathon",
        "sauna",
        "quartz",
        "lantern",
        "orchid",
        "falcon",
        "glacier",
    ];
    let mut x = i as u64 * 2654435761 + 1;
    let mut words = Vec::new();
    for _ in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    format!("note {i}: {}", words.join(" "))
}

fn open(dir: &Path, e: Arc<dyn Embedder>) -> Memory {
    Memory::open(
        &dir.join("store.db"),
        &dir.join("memory"),
        "bench",
        e,
        Fusion::Rrf,
    )
    .unwrap()
    .0
}

fn searches(m: &Memory, n: usize) -> (Duration, Duration) {
    searches_in(m, n, Mode::Hybrid)
}

/// `n` searches of three words from a note, in `mode`: p50 and p99.
fn searches_in(m: &Memory, n: usize, mode: Mode) -> (Duration, Duration) {
    let mut t = Vec::new();
    for i in 0..n {
        let q = note(i * 7919 + 3);
        let q: String = q.split(' ').skip(2).take(3).collect::<Vec<_>>().join(" ");
        let search = Search {
            mode,
            ..Search::new(&q, 5)
        };
        let s = Instant::now();
        let hits = m.search(&search).unwrap();
        t.push(s.elapsed());
        assert!(!hits.is_empty());
    }
    (pct(t.clone(), 0.5), pct(t, 0.99))
}

fn main() {
    let minilm_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/models/all-MiniLM-L6-v2");
    let minilm: Arc<dyn Embedder> = Arc::new(MiniLm::load(&minilm_dir).unwrap());
    let det: Arc<dyn Embedder> = Arc::new(Deterministic::new());

    // Retrieval quality.
    let set = eval::bundled().unwrap();
    for (name, e) in [("MiniLM", minilm.clone()), ("deterministic", det.clone())] {
        let dir = tempfile::tempdir().unwrap();
        let (m, ids) = eval::load(&set, dir.path(), e).unwrap();
        let rows = eval::run(&set, &m, &ids, &eval::configs()).unwrap();
        println!(
            "retrieval quality, {name} embeddings ({} notes, {} queries):\n{}",
            set.notes.len(),
            set.queries.len(),
            eval::table(&rows)
        );
    }

    if std::env::var("OXYDRA_BENCH_ONLY").as_deref() == Ok("quality") {
        return;
    }

    // 100,000 notes, deterministic embedder.
    let n: usize = std::env::var("OXYDRA_BENCH_NOTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    {
        let m = open(dir.path(), det.clone());
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
            let notes: Vec<(String, Vec<String>)> =
                chunk.iter().map(|i| (note(*i), vec![])).collect();
            m.save_many(&notes).unwrap();
        }
        m.flush().unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "ingest, deterministic: {n} notes in {secs:.1} s ({:.0} notes/s, store + both indexes)",
            n as f64 / secs
        );
        let (p50, p99) = searches(&m, 500);
        println!(
            "hybrid search at {n} notes (deterministic, top 5, 500 queries): p50 {} p99 {}",
            ms(p50),
            ms(p99)
        );
        for (name, mode) in [
            ("BM25 only", Mode::FtsOnly),
            ("vectors only", Mode::VectorOnly),
        ] {
            let (p50, p99) = searches_in(&m, 500, mode);
            println!(
                "  of which, {name} (same queries, documents read from the store): p50 {} p99 {}",
                ms(p50),
                ms(p99)
            );
        }
        let s = Instant::now();
        m.save("one more note about the harbor lantern", &[])
            .unwrap();
        println!("one memory_save at {n} notes: {}", ms(s.elapsed()));
    }
    let mut opens = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        let m = open(dir.path(), det.clone());
        opens.push(s.elapsed());
        drop(m);
    }
    println!(
        "open the memory of a user with {n} notes (indexes loaded, checked against the store): p50 {}",
        ms(pct(opens, 0.5))
    );

    // MiniLM.
    let texts: Vec<String> = (0..64).map(note).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let s = Instant::now();
    for t in &refs[..16] {
        minilm.embed(&[t]).unwrap();
    }
    println!("MiniLM: one note embedded alone: {}", ms(s.elapsed() / 16));
    let s = Instant::now();
    minilm.embed(&refs).unwrap();
    println!(
        "MiniLM: per note in batches of 16: {}",
        ms(s.elapsed() / refs.len() as u32)
    );
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), minilm.clone());
    let k = 10_000;
    let s = Instant::now();
    for chunk in (0..k).collect::<Vec<_>>().chunks(1_000) {
        let notes: Vec<(String, Vec<String>)> = chunk.iter().map(|i| (note(*i), vec![])).collect();
        m.save_many(&notes).unwrap();
    }
    println!(
        "MiniLM: ingest {k} notes in {:.1} s",
        s.elapsed().as_secs_f64()
    );
    let (p50, p99) = searches(&m, 200);
    println!(
        "hybrid search at {k} notes (MiniLM, query embedded each time, 200 queries): p50 {} p99 {}",
        ms(p50),
        ms(p99)
    );
}
