//! SQLite: the search index — `search_documents` and its FTS5 index
//! `search_words` (external content, kept in step by triggers; folded text
//! tokenised by `unicode61`).

use super::reference::value;
use super::*;
use crate::codecs::search_rows::{current_puts, hit, remove_all_sql, select, upsert_sql, Engine};
use cdrflow_core::reference::{ReferenceChange, ReferenceData};
use cdrflow_core::search::{IndexChange, SearchHit, SearchQuery};

/// Migration v13: the documents, their full-text index and the triggers
/// that keep it in step (removed documents are kept, unindexed, so an
/// older change cannot bring one back; documents without words — the
/// subscribers — are not in it). The index is filled from the
/// reference data when the store is next opened (`rebuild_needed`).
pub(super) const SEARCH_V13: &str = "
    CREATE TABLE search_documents (
        doc INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        removed INTEGER NOT NULL,
        title TEXT NOT NULL,
        words TEXT NOT NULL,
        msisdn TEXT,
        fee_micros BIGINT,
        UNIQUE (kind, id)
    );
    CREATE INDEX search_documents_by_msisdn ON search_documents (msisdn);
    CREATE INDEX search_documents_by_fee ON search_documents (kind, fee_micros);
    CREATE VIRTUAL TABLE search_words USING fts5(
        words, content = 'search_documents', content_rowid = 'doc',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER search_documents_added AFTER INSERT ON search_documents
        WHEN new.removed = 0 AND new.words != ''
    BEGIN
        INSERT INTO search_words (rowid, words) VALUES (new.doc, new.words);
    END;
    CREATE TRIGGER search_documents_changed AFTER UPDATE ON search_documents
    BEGIN
        INSERT INTO search_words (search_words, rowid, words)
            SELECT 'delete', old.doc, old.words WHERE old.removed = 0 AND old.words != '';
        INSERT INTO search_words (rowid, words)
            SELECT new.doc, new.words WHERE new.removed = 0 AND new.words != '';
    END;
    CREATE TABLE search_index_state (rebuild_needed INTEGER NOT NULL);
    INSERT INTO search_index_state VALUES (1);";

/// SQLite numbers its placeholders `?n`; the shared SQL says `$n`.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The index changes `changes` make, in `tx`.
pub(super) fn write_index(tx: &Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    let mut upsert = tx.prepare_cached(&upsert_sql("VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))?;
    for change in changes {
        match IndexChange::of(change) {
            None => {}
            Some(IndexChange::Put(doc)) => {
                upsert.execute(rusqlite::params![
                    doc.kind.as_str(),
                    doc.id,
                    doc.effective_from,
                    doc.removed,
                    doc.title,
                    doc.words,
                    doc.msisdn,
                    doc.fee_micros,
                ])?;
            }
            Some(IndexChange::RemoveAll { kind, at }) => {
                tx.prepare_cached(&numbered(&remove_all_sql("1")))?
                    .execute(rusqlite::params![kind.as_str(), at])?;
            }
        }
    }
    Ok(())
}

/// Fills the index from the reference data the store holds, when a
/// migration asked for it (v13, over a store with rows already).
pub(super) fn rebuild_if_needed(store: &mut SqliteStore) -> Result<()> {
    let needed: i64 =
        store
            .conn
            .query_row("SELECT rebuild_needed FROM search_index_state", [], |r| {
                r.get(0)
            })?;
    if needed == 0 {
        return Ok(());
    }
    let data: ReferenceData = store.reference()?;
    let tx = store.conn.transaction()?;
    tx.execute("DELETE FROM search_documents", [])?;
    write_index(&tx, &current_puts(&data))?;
    tx.execute("UPDATE search_index_state SET rebuild_needed = 0", [])?;
    tx.commit()?;
    Ok(())
}

const FTS5: Engine = Engine {
    words_from: "search_words w JOIN search_documents d ON d.doc = w.rowid",
    words_match: "search_words MATCH $1",
    // FTS5 yields rowids in order: following it costs nothing.
    words_order: "ORDER BY w.rowid",
    query_text: SearchQuery::fts5_match,
    not_removed: "0",
    bytewise: "",
};

pub(super) fn query(conn: &Connection, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    let (sql, values) = select(query, &FTS5);
    let mut stmt = conn.prepare_cached(&numbered(&sql))?;
    let rows = stmt.query_map(
        rusqlite::params_from_iter(values.into_iter().map(value)),
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        },
    )?;
    let mut hits = Vec::new();
    for row in rows {
        let (kind, id, title, fee) = row?;
        hits.push(hit(&kind, id, title, fee)?);
    }
    Ok(hits)
}
