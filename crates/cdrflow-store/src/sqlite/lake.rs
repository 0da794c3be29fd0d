//! SQLite: the lake's manifest.

use std::collections::BTreeSet;

use cdrflow_core::operator::LakeFile;

use super::*;
use crate::codecs::lake_dataset;

/// Names a commit's lake files, in its transaction.
pub(super) fn write_manifest(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO lake_files (path, dataset, partition_path, row_count, byte_count) VALUES (?, ?, ?, ?, ?)",
    )?;
    for file in commit.parts.iter().flat_map(|p| &p.checkpoint.lake_files) {
        insert.execute(params![
            file.path,
            file.dataset,
            file.partition,
            file.rows as i64,
            file.bytes as i64
        ])?;
    }
    Ok(())
}

impl LakeManifest for SqliteStore {
    fn committed_lake_files(&mut self, paths: &[String]) -> Result<BTreeSet<String>> {
        let mut select = self
            .conn
            .prepare_cached("SELECT 1 FROM lake_files WHERE path = ?")?;
        let mut committed = BTreeSet::new();
        for path in paths {
            if select.exists([path])? {
                committed.insert(path.clone());
            }
        }
        Ok(committed)
    }

    fn lake_files(&mut self) -> Result<Vec<LakeFile>> {
        let mut select = self.conn.prepare(
            "SELECT dataset, path, partition_path, row_count, byte_count FROM lake_files ORDER BY path",
        )?;
        let mut rows = select.query([])?;
        let mut files = Vec::new();
        while let Some(r) = rows.next()? {
            files.push(LakeFile {
                dataset: lake_dataset(&r.get::<_, String>(0)?)?,
                path: r.get(1)?,
                partition: r.get(2)?,
                rows: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
            });
        }
        Ok(files)
    }
}
