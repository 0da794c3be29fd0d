//! Change data capture: Debezium change events read as reference data.
//!
//! An operator's subscribers, customers, plans and cells live in an
//! operational PostgreSQL; Debezium (or `cdrflow cdc capture`) turns each
//! committed change into a Kafka message. This module reads those messages
//! ([`envelope`]: every shape Debezium's JsonConverter writes, with
//! [`value`] for Connect's encodings of numbers and times), and writes
//! them ([`capture`]: PostgreSQL's `pgoutput` messages as Debezium events,
//! for `cdrflow cdc capture`). Pure: bytes in, changes out.

pub mod apply;
pub mod capture;
pub mod envelope;
pub mod mapping;
pub mod value;

pub use apply::{ChangeConfig, ChangeCounts, ChangeMessage, LogicalMessage, ReferenceChanges};
pub use envelope::{
    decode, decode_with, ChangeError, ChangeEvent, ChangePosition, Decoded, Op, SchemaCache,
    Snapshot,
};
pub use mapping::{Adjustment, Entity, Mapping, MappingError, TableMapping};
pub use value::{Row, TimeUnit, Value};

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::path::Path;

    use super::*;

    /// A decoded message as the fixtures' `.expected` files write it.
    fn render(decoded: &Result<Decoded, ChangeError>) -> String {
        let row = |row: &Row| {
            row.0
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::Null => "null".to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Number(n) => format!("number:{n}"),
                        Value::Decimal(d) => format!("decimal:{}e-{}", d.mantissa, d.scale),
                        Value::Text(t) => format!("{t:?}"),
                        Value::Instant(us) => format!("instant:{us}"),
                        Value::Date(d) => format!("date:{d}"),
                        Value::Bytes(b) => format!("bytes:{b:?}"),
                        Value::Json(j) => format!("json:{j}"),
                    };
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out = String::new();
        match decoded {
            Err(e) => writeln!(out, "reject {}", e.reason().as_str()).unwrap(),
            Ok(Decoded::Tombstone { key }) => writeln!(
                out,
                "tombstone key: {}",
                key.as_ref().map(row).unwrap_or_default()
            )
            .unwrap(),
            Ok(Decoded::Message { prefix }) => {
                writeln!(out, "message prefix={}", prefix.as_deref().unwrap_or("-")).unwrap()
            }
            Ok(Decoded::Change(c)) => {
                let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "change {} {}.{}.{} lsn={} order={} tx={} snapshot={} committed_at={}",
                    c.op.code(),
                    or_dash(&c.db),
                    or_dash(&c.schema),
                    c.table,
                    c.position.lsn,
                    c.position.order,
                    c.tx_id.map_or("-".into(), |t| t.to_string()),
                    c.snapshot.as_str(),
                    c.committed_at.map_or("-".into(), |t| t.to_string()),
                )
                .unwrap();
                for (side, r) in [("key", &c.key), ("before", &c.before), ("after", &c.after)] {
                    if let Some(r) = r {
                        writeln!(out, "{side}: {}", row(r)).unwrap();
                    }
                }
            }
        }
        out
    }

    /// Every fixture decodes to what its `.expected` file, written by hand
    /// from Debezium's documented encodings, says.
    #[test]
    fn every_envelope_variant_meets_its_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cdc");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".expected").map(str::to_string)
            })
            .collect();
        names.sort();
        // The variants issue 14 names, each with a fixture of its own.
        for needed in [
            "envelope-with-schema-create",
            "bare-update-with-transaction-metadata",
            "bare-delete",
            "tombstone",
            "snapshot-first",
            "snapshot-last",
            "snapshot-true",
            "truncate",
            "logical-decoding-message",
            "variable-scale-decimal-and-a-double",
            "decimal-handling-double",
            "decimal-handling-string",
            "connect-and-millisecond-timestamps",
            "unwrapped-update",
            "unwrapped-delete-rewritten",
            "unwrapped-with-schema",
        ] {
            assert!(names.iter().any(|n| n == needed), "no fixture {needed}");
        }
        let mut failures = Vec::new();
        for name in &names {
            let read = |suffix: &str| std::fs::read(dir.join(format!("{name}{suffix}"))).ok();
            let value = read(".value.json").unwrap_or_default();
            let key = read(".key.json");
            let value = value.trim_ascii_end();
            let got = render(&decode(
                "dbserver1.public.subscribers",
                key.as_deref().map(<[u8]>::trim_ascii_end),
                value,
            ));
            let expected = String::from_utf8(read(".expected").unwrap()).unwrap();
            if got != expected {
                failures.push(format!("{name}:\n  expected {expected}  got      {got}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
