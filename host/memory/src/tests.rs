#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use embed::Deterministic;

fn det() -> Arc<dyn Embedder> {
    Arc::new(Deterministic::new())
}

fn open(root: &Path, user: &str) -> (Memory, OpenReport) {
    Memory::open(
        &root.join("store.db"),
        &root.join("memory").join(user),
        user,
        det(),
        Fusion::Rrf,
    )
    .unwrap()
}

fn ids(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

#[test]
fn notes_are_saved_found_updated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (m, report) = open(dir.path(), "alice");
    assert_eq!(report.documents, 0);
    let a = m
        .save(
            "The staging Postgres listens on port 5433",
            &["Infra".into(), "db".into()],
        )
        .unwrap();
    assert_eq!(a.tags, vec!["infra", "db"]);
    let b = m.save("Maria is allergic to peanuts", &[]).unwrap();
    m.save("The garden needs watering on Tuesdays", &[])
        .unwrap();

    let hits = m.search(&Search::new("postgres port", 5)).unwrap();
    assert_eq!(hits[0].id, a.id, "{hits:?}");
    assert_eq!(hits[0].source, Source::Note);
    // Vector-only finds it through shared word pieces as well.
    let v = m
        .search(&Search {
            mode: Mode::VectorOnly,
            ..Search::new("allergic peanut", 1)
        })
        .unwrap();
    assert_eq!(ids(&v), vec![b.id.clone()]);
    // Tags filter both rankings.
    let t = m
        .search(&Search {
            tags: vec!["db".into()],
            ..Search::new("peanuts port garden", 5)
        })
        .unwrap();
    assert_eq!(ids(&t), vec![a.id.clone()]);

    let u = m
        .update(&b.id, "Maria is allergic to shellfish", None)
        .unwrap();
    assert_eq!(u.id, b.id);
    assert_eq!(u.created_ms, b.created_ms);
    let hits = m.search(&Search::new("shellfish", 5)).unwrap();
    assert_eq!(hits[0].id, b.id);
    assert!(
        m.search(&Search {
            mode: Mode::FtsOnly,
            ..Search::new("peanuts", 5)
        })
        .unwrap()
        .is_empty()
    );
    m.delete(&b.id).unwrap();
    assert!(!ids(&m.search(&Search::new("shellfish", 5)).unwrap()).contains(&b.id));
    let Err(MemoryError::NotFound(e)) = m.delete(&b.id) else {
        panic!("deleted twice")
    };
    assert!(e.contains(&b.id), "{e}");
    let (list, total) = m.list(10, 0).unwrap();
    assert_eq!(total, 2);
    assert_eq!(list.len(), 2);
}

#[test]
fn bad_input_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = open(dir.path(), "alice");
    let msg = |e: MemoryError| e.to_string();
    assert!(msg(m.save("  ", &[]).unwrap_err()).contains("content: empty"));
    assert!(msg(m.save(&"x".repeat(8001), &[]).unwrap_err()).contains("8000"));
    assert!(msg(m.save("ok", &["a b".into()]).unwrap_err()).contains("contains ` `"));
    let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    assert!(msg(m.save("ok", &many).unwrap_err()).contains("limit of 16"));
    assert!(msg(m.save("ok", &["x".repeat(41)]).unwrap_err()).contains("1–40"));
    assert!(msg(m.search(&Search::new("", 5)).unwrap_err()).contains("query: empty"));
    assert!(msg(m.search(&Search::new(&"q".repeat(1001), 5)).unwrap_err()).contains("1000"));
    assert!(msg(m.search(&Search::new("q", 21)).unwrap_err()).contains("1–20"));
    assert!(msg(m.update("note-nope", "x", None).unwrap_err()).contains("no note `note-nope`"));
    assert!(msg(m.scratchpad_write("s", &[]).unwrap_err()).contains("1–32"));
    assert!(msg(m.scratchpad_write("s", &["y".repeat(241)]).unwrap_err()).contains("240"));
}

#[test]
fn users_never_see_each_others_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = open(dir.path(), "alice");
    let (bob, _) = open(dir.path(), "bob");
    let secret = alice
        .save("alice's bank PIN hint is the cat's birthday", &[])
        .unwrap();
    alice
        .record_exchange("s-a", "1", "where is my passport", "in the blue drawer")
        .unwrap();
    bob.save("bob likes chess openings", &[]).unwrap();
    let q = Search {
        include_conversation: true,
        ..Search::new("bank PIN cat birthday passport blue drawer", 20)
    };
    let found = bob.search(&q).unwrap();
    assert!(found.iter().all(|h| h.content.contains("bob")), "{found:?}");
    assert!(bob.update(&secret.id, "mine now", None).is_err());
    assert!(bob.delete(&secret.id).is_err());
    assert_eq!(alice.search(&q).unwrap().len(), 2);
    // Scratchpads: per user and per session.
    alice.scratchpad_write("s1", &["buy milk".into()]).unwrap();
    assert_eq!(alice.scratchpad_read("s1").unwrap(), vec!["buy milk"]);
    assert!(alice.scratchpad_read("s2").unwrap().is_empty());
    assert!(bob.scratchpad_read("s1").unwrap().is_empty());
    alice.scratchpad_clear("s1").unwrap();
    assert!(alice.scratchpad_read("s1").unwrap().is_empty());
}

#[test]
fn conversations_are_searched_only_when_asked_and_not_the_current_session() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = open(dir.path(), "alice");
    m.record_exchange("old", "3", "what is the wifi password", "it is hunter2")
        .unwrap();
    m.record_exchange("now", "1", "the wifi password again?", "hunter2")
        .unwrap();
    m.record_summary("old", "We set up the wifi router and its password")
        .unwrap();
    assert!(
        m.search(&Search::new("wifi password", 5))
            .unwrap()
            .is_empty()
    );
    let hits = m
        .search(&Search {
            include_conversation: true,
            exclude_session: Some("now".into()),
            ..Search::new("wifi password", 5)
        })
        .unwrap();
    let got: Vec<(Source, Option<String>)> =
        hits.iter().map(|h| (h.source, h.session.clone())).collect();
    assert_eq!(got.len(), 2, "{hits:?}");
    assert!(got.contains(&(Source::Conversation, Some("old".into()))));
    assert!(got.contains(&(Source::Summary, Some("old".into()))));
    assert_eq!(
        hits.iter()
            .find(|h| h.source == Source::Conversation)
            .map(|h| h.id.as_str()),
        Some("old:3")
    );
}

#[test]
fn indexes_catch_up_and_are_rebuilt_when_missing_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("memory").join("alice");
    let id = {
        let (m, _) = open(dir.path(), "alice");
        m.save("the boiler service is due in March", &[])
            .unwrap()
            .id
    };
    // Another writer (another process) adds to the store only.
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    let v = Deterministic::new()
        .embed(&["the roof was repaired in May"])
        .unwrap();
    store
        .memory_put(
            "alice",
            &MemoryWrite {
                id: "note-elsewhere".into(),
                source: "note".into(),
                content: "the roof was repaired in May".into(),
                tags: "[]".into(),
                embedding: Some(embed::to_bytes(&v[0])),
                model: Deterministic::new().id().into(),
                session: None,
            },
        )
        .unwrap();
    {
        let (m, report) = open(dir.path(), "alice");
        assert!(report.rebuilt.is_empty(), "{report:?}");
        assert_eq!(report.documents, 2);
        assert_eq!(
            m.search(&Search::new("roof repaired", 1)).unwrap()[0].id,
            "note-elsewhere"
        );
    }
    // Missing full-text index.
    std::fs::remove_dir_all(mdir.join("fts")).unwrap();
    {
        let (m, _) = open(dir.path(), "alice");
        assert_eq!(m.search(&Search::new("boiler", 1)).unwrap()[0].id, id);
    }
    // A vector file overwritten with garbage.
    std::fs::write(mdir.join("vectors-note.usearch"), b"not an index").unwrap();
    {
        let (m, report) = open(dir.path(), "alice");
        assert!(
            report
                .rebuilt
                .iter()
                .any(|r| r.contains("vector index (note)")),
            "{report:?}"
        );
        let v = m
            .search(&Search {
                mode: Mode::VectorOnly,
                ..Search::new("boiler service March", 1)
            })
            .unwrap();
        assert_eq!(ids(&v), vec![id.clone()]);
    }
    // A full-text index that lost a document (copied from an older state).
    let backup = dir.path().join("fts-old");
    {
        let (m, _) = open(dir.path(), "alice");
        copy_dir(&mdir.join("fts"), &backup);
        m.save("a third note about tomatoes", &[]).unwrap();
    }
    std::fs::remove_dir_all(mdir.join("fts")).unwrap();
    copy_dir(&backup, &mdir.join("fts"));
    // Its payload says it applied less: it catches up, and nothing is missing.
    let (m, _) = open(dir.path(), "alice");
    assert_eq!(m.search(&Search::new("tomatoes", 1)).unwrap().len(), 1);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_failed_index_update_keeps_the_note_and_is_applied_later() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = open(dir.path(), "alice");
    first.save("holds the writer", &[]).unwrap();
    // A second handle on the same indexes cannot take the full-text writer while the
    // first holds it: its save is durable anyway.
    let (second, _) = open(dir.path(), "alice");
    let note = second
        .save("the spare key is under the third flowerpot", &[])
        .unwrap();
    drop(first);
    let hits = second
        .search(&Search::new("spare key flowerpot", 1))
        .unwrap();
    assert_eq!(ids(&hits), vec![note.id]);
}

#[test]
fn another_model_is_not_mixed_in_until_reindex() {
    struct Other;
    impl Embedder for Other {
        fn id(&self) -> &str {
            "test:other-8"
        }
        fn dims(&self) -> usize {
            8
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError> {
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.1f32; 8];
                    v[t.len() % 8] = 1.0;
                    v
                })
                .collect())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let (m, _) = open(dir.path(), "alice");
        m.save("first note", &[]).unwrap();
        m.save("second note", &[]).unwrap();
    }
    let open_other = || {
        Memory::open(
            &dir.path().join("store.db"),
            &dir.path().join("memory").join("alice"),
            "alice",
            Arc::new(Other),
            Fusion::Rrf,
        )
        .unwrap()
    };
    let (m, report) = open_other();
    assert_eq!(report.stale_embeddings, 2);
    // BM25 still finds them; the vector index holds none of the old vectors.
    assert_eq!(m.search(&Search::new("second", 1)).unwrap().len(), 1);
    let vec_only = m
        .search(&Search {
            mode: Mode::VectorOnly,
            ..Search::new("second", 5)
        })
        .unwrap();
    assert!(vec_only.is_empty(), "{vec_only:?}");
    let mut seen = Vec::new();
    let r = m
        .reindex(&mut |done, total| seen.push((done, total)))
        .unwrap();
    assert_eq!((r.documents, r.re_embedded), (2, 2));
    assert_eq!(seen.last(), Some(&(2, 2)));
    drop(m);
    let (m, report) = open_other();
    assert_eq!(report.stale_embeddings, 0);
    let vec_only = m
        .search(&Search {
            mode: Mode::VectorOnly,
            ..Search::new("second", 5)
        })
        .unwrap();
    assert_eq!(vec_only.len(), 2);
}

#[test]
fn fusion_orders_by_both_rankings() {
    let fts = [(1, 9.0), (2, 5.0), (3, 1.0)];
    let vec = [(4, 0.9), (2, 0.8), (5, 0.1)];
    let rrf: Vec<u64> = fuse(&fts, &vec, Fusion::Rrf).iter().map(|x| x.0).collect();
    // 2 is second in both rankings; 1 and 4 are first in one only.
    assert_eq!(rrf[0], 2);
    assert_eq!(rrf.len(), 5);
    let w: Vec<u64> = fuse(
        &fts,
        &vec,
        Fusion::Weighted {
            vector_weight: 0.0,
            fts_weight: 1.0,
        },
    )
    .iter()
    .map(|x| x.0)
    .collect();
    assert_eq!(&w[..3], &[1, 2, 3]);
}

#[test]
fn the_labelled_set_is_whole_and_bm25_finds_keyword_queries() {
    let set = eval::bundled().unwrap();
    assert!(set.notes.len() >= 200, "{} notes", set.notes.len());
    assert!(set.queries.len() >= 50, "{} queries", set.queries.len());
    let known: HashSet<&str> = set.notes.iter().map(|n| n.id.as_str()).collect();
    for q in &set.queries {
        assert!(
            ["paraphrase", "keyword", "identifier"].contains(&q.kind.as_str()),
            "{}",
            q.id
        );
        assert!(!q.relevant.is_empty(), "{}", q.id);
        for r in &q.relevant {
            assert!(known.contains(r.as_str()), "{}: {r}", q.id);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (m, map) = eval::load(&set, dir.path(), det()).unwrap();
    let rows = eval::run(&set, &m, &map, &eval::configs()[..1]).unwrap();
    assert!(rows[0].keyword.recall_at_5 > 0.5, "{}", eval::table(&rows));
    assert!(
        rows[0].identifier.queries >= 15 && rows[0].identifier.recall_at_5 > 0.8,
        "{}",
        eval::table(&rows)
    );
}

/// The model scripts/build.sh fetched (scripts/fetch-embedding-model.sh).
fn minilm() -> Arc<dyn Embedder> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/models/all-MiniLM-L6-v2");
    match embed::MiniLm::load(&dir) {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn minilm_embeds_meaning_and_finds_paraphrases() {
    let e = minilm();
    assert_eq!((e.id(), e.dims()), ("minilm:all-MiniLM-L6-v2", 384));
    let v = e.embed(&["a cat", "a kitten", "the stock market"]).unwrap();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!((cos(&v[0], &v[0]) - 1.0).abs() < 1e-4);
    assert!(cos(&v[0], &v[1]) > 0.5, "{}", cos(&v[0], &v[1]));
    assert!(cos(&v[0], &v[2]) < 0.2, "{}", cos(&v[0], &v[2]));
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = Memory::open(
        &dir.path().join("store.db"),
        &dir.path().join("memory"),
        "alice",
        e,
        Fusion::Rrf,
    )
    .unwrap();
    let sister = m
        .save("My sister Maria is allergic to peanuts", &[])
        .unwrap();
    m.save("The car's next inspection is in October", &[])
        .unwrap();
    m.save("Backups of the laptop run every night at 2am", &[])
        .unwrap();
    let hits = m
        .search(&Search {
            mode: Mode::VectorOnly,
            ..Search::new("which food must my sibling avoid?", 1)
        })
        .unwrap();
    assert_eq!(ids(&hits), vec![sister.id]);
}
