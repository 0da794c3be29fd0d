//! The Parquet lake at the commit (`--lake DIR`): each job's mediated and
//! rated records are staged as files before the store's transaction, named
//! in its manifest (`lake_files`) by that transaction, and moved into place
//! after it — so the lake, like every other output, holds each record once
//! whatever moment the process is killed at (`cdrflow-lake` explains the
//! protocol).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use cdrflow_core::operator::LakeFile;
use cdrflow_lake::Lake;
use cdrflow_store::Store;

use crate::committer::{with_retry, JobPart};
use crate::pipeline::now_millis;

pub struct LakeSink {
    lake: Lake,
    /// Off: the rated records go to the lake only, not to `rated_records`.
    rated_records_in_store: bool,
}

impl LakeSink {
    /// Opens the lake at `dir` and first finishes what stopped processes
    /// left staged, by asking `store` which of their files were committed.
    pub fn open(
        dir: &Path,
        rated_records_in_store: bool,
        store: &mut dyn Store,
    ) -> Result<LakeSink> {
        let run = format!("{}-{}", now_millis(), std::process::id());
        let lake = Lake::open(dir, &run)
            .with_context(|| format!("cannot open the lake at {} (--lake)", dir.display()))?;
        let orphans = lake.orphans()?;
        let committed = store.committed_lake_files(&orphans.paths())?;
        let recovery = lake.recover(orphans, &committed)?;
        if recovery.published + recovery.discarded > 0 {
            tracing::info!(
                published = recovery.published,
                discarded = recovery.discarded,
                "lake: finished the files an earlier run left staged (committed ones moved into place, the rest deleted: their records are read again)"
            );
        }
        Ok(LakeSink {
            lake,
            rated_records_in_store,
        })
    }

    /// Writes a part's rows as staged files and names them in its checkpoint.
    pub fn stage(&self, part: &mut JobPart) -> Result<()> {
        let checkpoint = &mut part.checkpoint;
        let mediated = std::mem::take(&mut checkpoint.mediated);
        checkpoint.lake_files = self
            .lake
            .stage(&mediated, &checkpoint.rated_records)
            .context("staging the lake's files")?;
        if !self.rated_records_in_store {
            checkpoint.rated_records = Vec::new();
        }
        Ok(())
    }

    /// A part that will not be committed (its partition was fenced).
    pub fn discard(&self, part: &JobPart) {
        self.lake.discard(&part.checkpoint.lake_files);
    }

    /// After the commit: publishes the files the manifest names. A commit
    /// that found its positions applied before wrote no manifest rows of
    /// its own: its files are duplicates and go.
    pub fn publish(
        &self,
        store: &mut dyn Store,
        parts: &[JobPart],
        stopping: &AtomicBool,
    ) -> Result<()> {
        let files: Vec<&LakeFile> = parts
            .iter()
            .flat_map(|p| &p.checkpoint.lake_files)
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let committed = with_retry(stopping, "reading the lake's manifest", || {
            store.committed_lake_files(&paths)
        })?;
        let (named, duplicates): (Vec<LakeFile>, Vec<LakeFile>) = files
            .into_iter()
            .cloned()
            .partition(|f| committed.contains(&f.path));
        self.lake.discard(&duplicates);
        self.lake
            .publish(&named)
            .context("publishing the lake's files")?;
        Ok(())
    }
}
