//! PostgreSQL: the lake's manifest.

use std::collections::BTreeSet;

use cdrflow_core::operator::LakeFile;

use super::*;
use crate::codecs::lake_dataset;

/// Names a commit's lake files, in its transaction (one statement).
pub(super) fn write_manifest(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let files: Vec<&LakeFile> = commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.lake_files)
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let datasets: Vec<&str> = files.iter().map(|f| f.dataset).collect();
    let partitions: Vec<&str> = files.iter().map(|f| f.partition.as_str()).collect();
    let rows: Vec<i64> = files.iter().map(|f| f.rows as i64).collect();
    let bytes: Vec<i64> = files.iter().map(|f| f.bytes as i64).collect();
    tx.execute(
        "INSERT INTO lake_files (path, dataset, partition_path, row_count, byte_count)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])",
        &[&paths, &datasets, &partitions, &rows, &bytes],
    )?;
    Ok(())
}

impl LakeManifest for PgStore {
    fn committed_lake_files(&mut self, paths: &[String]) -> Result<BTreeSet<String>> {
        let rows = self.live_client()?.query(
            "SELECT path FROM lake_files WHERE path = ANY($1)",
            &[&paths],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn lake_files(&mut self) -> Result<Vec<LakeFile>> {
        let rows = self.live_client()?.query(
            "SELECT dataset, path, partition_path, row_count, byte_count FROM lake_files ORDER BY path",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(LakeFile {
                    dataset: lake_dataset(r.get(0))?,
                    path: r.get(1),
                    partition: r.get(2),
                    rows: r.get::<_, i64>(3) as u64,
                    bytes: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }
}
