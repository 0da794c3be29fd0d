//! The same expectations for every store: SQLite (a temp file) and
//! PostgreSQL (a fresh database on 127.0.0.1:5432 — the test fails, never
//! skips, when the server is unreachable). One module per store concern;
//! `for_every_store!` runs a check against both backends.

use cdrflow_core::aggregate::RowKey;
use cdrflow_core::dedup::DedupEntry;
use cdrflow_core::mediation::{MediationConfig, Mediator, RawRecord, DEDUP_IDENTITIES, WATERMARK};
use cdrflow_core::model::{Kind, SourcePosition};
use cdrflow_core::normalize::{normalize_msisdn, parse_timestamp, CountryCode, Day};
use cdrflow_core::operator::{
    BatchContext, Checkpoint, MemoryState, Operator, StateChange, StateWrite,
};
use cdrflow_core::rating::{Tariff, TariffOverrides};
use cdrflow_store::postgres_store::PgStore;
use cdrflow_store::prelude::*;
use cdrflow_store::sqlite::SqliteStore;
use cdrflow_store::{
    kafka_scope, Commit, CommitPart, Cursor, KafkaCursor, RejectQuery, ReplayTarget, SourceCursor,
    StateAt, Store, StoreError, FILES_SCOPE,
};

mod analytics;
mod operator_state;
mod positions;
mod reference;
mod results;
mod usage;

/// `#[test]`s running `check(&mut dyn Store)` on a fresh SQLite and a fresh
/// PostgreSQL store named `name`.
macro_rules! for_every_store {
    ($check:ident, $sqlite:ident, $postgres:ident, $name:literal) => {
        #[test]
        fn $sqlite() {
            $check(&mut $crate::sqlite_store($name));
        }

        #[test]
        fn $postgres() {
            $check(&mut $crate::postgres_store($name));
        }
    };
}
pub(crate) use for_every_store;

pub(crate) const LINES: [&str; 4] = [
    r#"{"cdr_id":"1","msisdn":"0821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"video","up_bytes":1000000000000000,"down_bytes":20408}"#,
    r#"{"cdr_id":"2","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
    r#"{"cdr_id":"3","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":-1}"#,
    r#"{"event_id":"4","msisdn":"0821234567","event_type":"balance_recharge","amount":12.5,"timestamp":"2024-03-01T10:00:00Z"}"#,
];

pub(crate) fn checkpoint(lines: &[&str]) -> Checkpoint {
    let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
    let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
    let records: Vec<RawRecord<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| RawRecord {
            origin: "t",
            source_id: "t",
            position: SourcePosition::Line {
                line: i as u64 + 1,
                byte_offset: 0,
            },
            payload: l.as_bytes(),
            cut_from: None,
        })
        .collect();
    let mut context = BatchContext {
        now: parse_timestamp("2024-03-02T00:00:00Z").unwrap(),
        state: &mut MemoryState::new("mediation"),
    };
    mediator
        .process_batch(&records, &mut context, &mut Vec::new())
        .unwrap();
    let mut checkpoint = Checkpoint::default();
    mediator.checkpoint(&mut checkpoint);
    checkpoint
}

/// The dedup identities a checkpoint hands over.
pub(crate) fn handed_over_identities(cp: &Checkpoint) -> Vec<DedupEntry> {
    let mut out = Vec::new();
    for write in &cp.state {
        if let StateChange::Append { value, .. } = &write.change {
            out.extend(DedupEntry::decode_all(value));
        }
    }
    out
}

/// The mediator's stored identities in `scope` whose spans overlap the minutes given.
pub(crate) fn stored_identities(
    store: &mut dyn Store,
    scope: &str,
    first: i32,
    last: i32,
) -> Vec<DedupEntry> {
    let at = StateAt {
        operator: "mediation",
        scope,
        table: DEDUP_IDENTITIES.name,
    };
    let mut out = Vec::new();
    store
        .state_spans(at, first, last, &mut |v| {
            out.extend(DedupEntry::decode_all(v))
        })
        .unwrap();
    out
}

/// The mediator's stored watermark in `scope`, as written (decimal text).
pub(crate) fn stored_watermark(store: &mut dyn Store, scope: &str) -> Option<String> {
    let at = StateAt {
        operator: "mediation",
        scope,
        table: WATERMARK.name,
    };
    store
        .state_value(at, "")
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// Commits `lines` as one checkpoint of the files scope, with no cursors.
pub(crate) fn commit_lines(store: &mut dyn Store, lines: &[&str]) {
    let cp = checkpoint(lines);
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope: FILES_SCOPE,
                checkpoint: &cp,
            }],
            cursors: &[],
        })
        .unwrap();
}

pub(crate) fn postgres_store(name: &str) -> PgStore {
    let admin_url = std::env::var("CDRFLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL must be reachable at {admin_url} for this test: {e}")
    });
    let db = format!("cdrflow_test_{name}_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let url = match admin_url.rfind('/') {
        Some(i) => format!("{}/{db}", &admin_url[..i]),
        None => unreachable!("a URL with a database"),
    };
    PgStore::connect(&url).unwrap()
}

pub(crate) fn sqlite_store(name: &str) -> SqliteStore {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    SqliteStore::open(&dir.join("s.db")).unwrap()
}
