//! The BM25 index (tantivy) of one user's documents: English-stemmed content, exact
//! tags and source. It stores only the key; text comes from the store of record. The
//! generation it has applied is its commit payload.

use crate::MemoryError;
use std::path::{Path, PathBuf};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub(crate) struct Fts {
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    dir: PathBuf,
    key: Field,
    content: Field,
    tags: Field,
    source: Field,
}

/// What a document contributes to the index.
pub(crate) struct FtsDoc<'a> {
    pub key: u64,
    pub content: &'a str,
    pub tags: &'a [String],
    pub source: &'a str,
}

/// Words, lower-cased, English stop words removed, stemmed.
const ANALYZER: &str = "memory_en";

fn analyzer() -> tantivy::tokenizer::TextAnalyzer {
    use tantivy::tokenizer::{
        Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
        TextAnalyzer,
    };
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder
            .filter(stop)
            .filter(Stemmer::new(Language::English))
            .build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_u64_field("key", INDEXED | FAST);
    b.add_text_field(
        "content",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    b.add_text_field("tags", STRING);
    b.add_text_field("source", STRING);
    b.build()
}

fn err(what: &str) -> impl Fn(tantivy::TantivyError) -> MemoryError + '_ {
    move |e| MemoryError::Index(format!("full-text index: {what}: {e}"))
}

impl Fts {
    /// Open the index in `dir`; `Ok(None)` when there is none or it cannot be read (it
    /// is then rebuilt from the store).
    pub fn open(dir: &Path) -> Result<Option<(Fts, i64)>, MemoryError> {
        if !dir.join("meta.json").is_file() {
            return Ok(None);
        }
        let Ok(index) = Index::open_in_dir(dir) else {
            return Ok(None);
        };
        if index.schema() != schema() {
            return Ok(None);
        }
        let Ok(metas) = index.load_metas() else {
            return Ok(None);
        };
        let Some(applied) = metas.payload.as_deref().and_then(|p| p.parse::<i64>().ok()) else {
            return Ok(None);
        };
        let Ok(fts) = Fts::with(index, dir) else {
            return Ok(None);
        };
        Ok(Some((fts, applied)))
    }

    /// A new, empty index in `dir` (whatever was there is removed).
    pub fn create(dir: &Path) -> Result<Fts, MemoryError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| MemoryError::Index(format!("remove {}: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| MemoryError::Index(format!("create {}: {e}", dir.display())))?;
        let index = Index::create_in_dir(dir, schema()).map_err(err("create"))?;
        let mut fts = Fts::with(index, dir)?;
        fts.commit(0)?;
        Ok(fts)
    }

    fn with(index: Index, dir: &Path) -> Result<Fts, MemoryError> {
        index.tokenizers().register(ANALYZER, analyzer());
        let s = index.schema();
        let field = |n: &str| {
            s.get_field(n)
                .map_err(|e| MemoryError::Index(format!("full-text index: field {n}: {e}")))
        };
        let (key, content, tags, source) = (
            field("key")?,
            field("content")?,
            field("tags")?,
            field("source")?,
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err("open a reader"))?;
        Ok(Fts {
            index,
            reader,
            writer: None,
            dir: dir.to_path_buf(),
            key,
            content,
            tags,
            source,
        })
    }

    fn writer(&mut self) -> Result<&mut IndexWriter, MemoryError> {
        if self.writer.is_none() {
            let w = self
                .index
                .writer_with_num_threads(1, 32_000_000)
                .map_err(|e| match e {
                    tantivy::TantivyError::LockFailure(..) => MemoryError::Busy(format!(
                        "the full-text index {} is being written by another process (is `oxydra-host serve` running for this workspace?)",
                        self.dir.display()
                    )),
                    e => MemoryError::Index(format!("full-text index: open a writer: {e}")),
                })?;
            self.writer = Some(w);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| MemoryError::Index("full-text index: no writer".into()))
    }

    /// Take the writer (and its lock): fails with [`MemoryError::Busy`] while another
    /// process writes this index.
    pub fn lock(&mut self) -> Result<(), MemoryError> {
        self.writer().map(|_| ())
    }

    /// Add or replace documents, and remove `deleted` keys (uncommitted).
    pub fn apply(&mut self, docs: &[FtsDoc<'_>], deleted: &[u64]) -> Result<(), MemoryError> {
        let (key, content, tags, source) = (self.key, self.content, self.tags, self.source);
        let w = self.writer()?;
        for k in deleted {
            w.delete_term(Term::from_field_u64(key, *k));
        }
        for d in docs {
            w.delete_term(Term::from_field_u64(key, d.key));
            let mut doc = TantivyDocument::new();
            doc.add_u64(key, d.key);
            doc.add_text(content, d.content);
            for t in d.tags {
                doc.add_text(tags, t);
            }
            doc.add_text(source, d.source);
            w.add_document(doc).map_err(err("add"))?;
        }
        Ok(())
    }

    /// Make what was applied searchable and durable, recording `applied`.
    pub fn commit(&mut self, applied: i64) -> Result<(), MemoryError> {
        let w = self.writer()?;
        let mut p = w.prepare_commit().map_err(err("commit"))?;
        p.set_payload(&applied.to_string());
        p.commit().map_err(err("commit"))?;
        self.reader.reload().map_err(err("reload"))?;
        Ok(())
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn filters(&self, sources: &[&str], tags: &[String]) -> Vec<(Occur, Box<dyn Query>)> {
        let term = |f: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(f, v),
                IndexRecordOption::Basic,
            ))
        };
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let any_source: Vec<(Occur, Box<dyn Query>)> = sources
            .iter()
            .map(|s| (Occur::Should, term(self.source, s)))
            .collect();
        out.push((Occur::Must, Box::new(BooleanQuery::new(any_source))));
        for t in tags {
            out.push((Occur::Must, term(self.tags, t)));
        }
        out
    }

    fn keys_of(
        &self,
        searcher: &tantivy::Searcher,
        addr: tantivy::DocAddress,
    ) -> Result<Option<u64>, MemoryError> {
        let col = searcher
            .segment_reader(addr.segment_ord)
            .fast_fields()
            .u64("key")
            .map_err(err("read keys"))?;
        Ok(col.first(addr.doc_id))
    }

    /// The best `limit` documents for `text` by BM25 among `sources` with every tag, as
    /// (key, score), best first.
    pub fn search(
        &self,
        text: &str,
        sources: &[&str],
        tags: &[String],
        limit: usize,
    ) -> Result<Vec<(u64, f32)>, MemoryError> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.content)
            .map_err(err("tokenizer"))?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let t = stream.token().text.clone();
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let words: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                (
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.content, t),
                        IndexRecordOption::WithFreqs,
                    )) as Box<dyn Query>,
                )
            })
            .collect();
        let mut clauses = vec![(
            Occur::Must,
            Box::new(BooleanQuery::new(words)) as Box<dyn Query>,
        )];
        clauses.extend(self.filters(sources, tags));
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(err("search"))?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(k) = self.keys_of(&searcher, addr)? {
                out.push((k, score));
            }
        }
        Ok(out)
    }

    /// Every key among `sources` carrying all of `tags` (to filter vector search).
    pub fn keys_with(
        &self,
        sources: &[&str],
        tags: &[String],
    ) -> Result<std::collections::HashSet<u64>, MemoryError> {
        let query = BooleanQuery::new(self.filters(sources, tags));
        let searcher = self.reader.searcher();
        let found = searcher
            .search(&query, &DocSetCollector)
            .map_err(err("filter"))?;
        let mut out = std::collections::HashSet::with_capacity(found.len());
        for addr in found {
            if let Some(k) = self.keys_of(&searcher, addr)? {
                out.insert(k);
            }
        }
        Ok(out)
    }
}
