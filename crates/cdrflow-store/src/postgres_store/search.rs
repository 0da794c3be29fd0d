//! PostgreSQL: the search index — `search_documents` with its folded
//! words as a generated `tsvector` under a GIN index (the `simple`
//! configuration: the words are folded already, and no language's
//! stemming suits names and numbers).

use cdrflow_core::reference::ReferenceChange;
use cdrflow_core::search::{IndexChange, SearchDocument, SearchHit, SearchQuery};
use postgres::types::ToSql;

use super::reference::boxed;
use super::*;
use crate::codecs::search_rows::{current_puts, hit, remove_all_sql, select, upsert_sql, Engine};

/// Migration v13: the documents and their index (removed documents are
/// kept, so an older change cannot bring one back). The GIN index takes
/// each document as it comes (`fastupdate = off`): with PostgreSQL's
/// pending list, every search scanned up to thousands of recent entries
/// one by one until a vacuum merged them — 6 ms for a search that takes
/// 0.1 ms after (bench/search_latency.sh). The index is filled
/// from the reference data when the store is next opened (`rebuild_needed`).
pub(super) const SEARCH_V13: &str = "
    CREATE TABLE search_documents (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        removed BOOLEAN NOT NULL,
        title TEXT NOT NULL,
        words TEXT NOT NULL,
        msisdn TEXT COLLATE \"C\",
        fee_micros BIGINT,
        words_vector tsvector GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX search_documents_words ON search_documents USING GIN (words_vector)
        WITH (fastupdate = off);
    CREATE INDEX search_documents_by_msisdn ON search_documents (msisdn);
    CREATE INDEX search_documents_by_fee ON search_documents (kind, fee_micros);
    CREATE TABLE search_index_state (rebuild_needed BOOLEAN NOT NULL);
    INSERT INTO search_index_state VALUES (true);";

/// The index changes `changes` make, in `tx`: each run of documents as one
/// statement over arrays, a truncate where it comes.
pub(super) fn write_index(tx: &mut Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    let mut run: Vec<SearchDocument> = Vec::new();
    for change in changes {
        match IndexChange::of(change) {
            None => {}
            Some(IndexChange::Put(doc)) => run.push(doc),
            Some(IndexChange::RemoveAll { kind, at }) => {
                write_documents(tx, std::mem::take(&mut run))?;
                tx.execute(&remove_all_sql("true"), &[&kind.as_str(), &at])?;
            }
        }
    }
    write_documents(tx, run)
}

/// One upsert for `docs`; of one id's, the latest (one statement may not
/// touch a row twice).
fn write_documents(tx: &mut Transaction<'_>, mut docs: Vec<SearchDocument>) -> Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    // Stable: of one id's documents at one instant, the last written wins.
    docs.sort_by(|a, b| (a.kind, &a.id, a.effective_from).cmp(&(b.kind, &b.id, b.effective_from)));
    let mut latest: Vec<SearchDocument> = Vec::with_capacity(docs.len());
    for doc in docs {
        match latest.last_mut() {
            Some(last) if last.kind == doc.kind && last.id == doc.id => *last = doc,
            _ => latest.push(doc),
        }
    }
    let column = |f: fn(&SearchDocument) -> Option<String>| -> Vec<Option<String>> {
        latest.iter().map(f).collect()
    };
    let kinds = column(|d| Some(d.kind.as_str().into()));
    let ids = column(|d| Some(d.id.clone()));
    let titles = column(|d| Some(d.title.clone()));
    let words = column(|d| Some(d.words.clone()));
    let msisdns = column(|d| d.msisdn.clone());
    let effective: Vec<i64> = latest.iter().map(|d| d.effective_from).collect();
    let removed: Vec<bool> = latest.iter().map(|d| d.removed).collect();
    let fees: Vec<Option<i64>> = latest.iter().map(|d| d.fee_micros).collect();
    tx.execute(
        &upsert_sql(
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[],
                 $5::text[], $6::text[], $7::text[], $8::bigint[])",
        ),
        &[
            &kinds, &ids, &effective, &removed, &titles, &words, &msisdns, &fees,
        ],
    )?;
    Ok(())
}

/// Fills the index from the reference data the store holds, when a
/// migration asked for it (v13, over a store with rows already).
pub(super) fn rebuild_if_needed(store: &mut PgStore) -> Result<()> {
    let needed: bool = store
        .live_client()?
        .query_one("SELECT rebuild_needed FROM search_index_state", &[])?
        .get(0);
    if !needed {
        return Ok(());
    }
    let data = store.reference()?;
    let mut tx = store.live_client()?.transaction()?;
    tx.execute("DELETE FROM search_documents", &[])?;
    write_index(&mut tx, &current_puts(&data))?;
    tx.execute("UPDATE search_index_state SET rebuild_needed = false", &[])?;
    tx.commit()?;
    Ok(())
}

const TEXT_SEARCH: Engine = Engine {
    words_from: "search_documents d",
    words_match: "d.words_vector @@ to_tsquery('simple', $1)",
    words_order: "",
    query_text: SearchQuery::tsquery,
    not_removed: "false",
    bytewise: " COLLATE \"C\"",
};

pub(super) fn query(client: &mut Client, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    let (sql, values) = select(query, &TEXT_SEARCH);
    let values: Vec<Box<dyn ToSql + Sync>> = values.into_iter().map(boxed).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
    client
        .query(&sql, &refs)?
        .iter()
        .map(|r| hit(r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}
