//! The lake's files: staged under `_staging/`, published by a rename once
//! the store's commit names them, recovered after a crash by asking the
//! manifest which staged files were committed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::mediated::MediatedRecord;
use cdrflow_core::operator::LakeFile;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::columns::{
    export_batch, export_schema, mediated_batch, mediated_schema, rated_batch, rated_schema,
};
use crate::{Dataset, LakeError, Result};

const STAGING: &str = "_staging";
/// The lock file in a process's staging folder.
const LOCK: &str = ".lock";
/// Rows per batch handed to the Parquet writer: bounds the Arrow copy of a
/// large partition (a row group holds up to a million rows either way).
const BATCH_ROWS: usize = 65_536;

/// What [`Lake::recover`] found under `_staging/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Committed before the crash, moved into place now.
    pub published: usize,
    /// Not committed: deleted (their records are read again).
    pub discarded: usize,
}

/// The staged files of processes that stopped, found by [`Lake::orphans`]:
/// their folders stay locked until [`Lake::recover`] has dealt with them.
pub struct Orphans {
    /// (final path, where it is staged)
    files: Vec<(String, PathBuf)>,
    folders: Vec<(PathBuf, File)>,
}

impl Orphans {
    /// The paths to ask the manifest about.
    pub fn paths(&self) -> Vec<String> {
        self.files.iter().map(|(path, _)| path.clone()).collect()
    }
}

/// A lake directory that this process writes into.
///
/// Each process stages under `_staging/{run}/`, a folder it holds an OS lock
/// on while it lives: recovery deals only with folders whose lock is free,
/// so processes sharing a lake never delete each other's work in flight.
pub struct Lake {
    root: PathBuf,
    /// Unique to this process, so that two runs never name a file alike.
    run: String,
    staging: PathBuf,
    _lock: File,
    /// Files are staged on one thread while another publishes: the
    /// counter is shared between them.
    next_file: AtomicU64,
    properties: WriterProperties,
}

impl Lake {
    /// Opens (creating) the lake at `root`. `run` names this process's
    /// files (`part-{run}-{n}.parquet`): it must differ between processes
    /// writing into the same lake, at once or one after the other.
    pub fn open(root: impl Into<PathBuf>, run: &str) -> Result<Lake> {
        let root = root.into();
        let staging = root.join(STAGING).join(run);
        fs::create_dir_all(&staging).map_err(io_at(&staging))?;
        let lock_path = staging.join(LOCK);
        let lock = File::create(&lock_path).map_err(io_at(&lock_path))?;
        lock.lock().map_err(io_at(&lock_path))?;
        Ok(Lake {
            root,
            run: run.to_string(),
            staging,
            _lock: lock,
            next_file: AtomicU64::new(0),
            properties: properties(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a checkpoint's rows under `_staging/`, a file per partition
    /// and dataset, each synced to disk: once the commit names them, they
    /// survive a crash.
    pub fn stage(
        &self,
        mediated: &[MediatedRecord],
        rated: &[RatedRecord],
    ) -> Result<Vec<LakeFile>> {
        let mut staged = Vec::new();
        let mut by_partition: BTreeMap<String, Vec<&MediatedRecord>> = BTreeMap::new();
        for r in mediated {
            let partition = format!("kind={}/date={}", r.kind.as_str(), r.day);
            by_partition.entry(partition).or_default().push(r);
        }
        for (partition, rows) in by_partition {
            let batches = rows.chunks(BATCH_ROWS).map(mediated_batch);
            let file = self.write(
                Dataset::Mediated,
                partition,
                rows.len(),
                mediated_schema(),
                batches,
            )?;
            staged.push(file);
        }
        let mut by_period: BTreeMap<String, Vec<&RatedRecord>> = BTreeMap::new();
        for r in rated {
            by_period
                .entry(format!("period={}", r.billing_period))
                .or_default()
                .push(r);
        }
        for (partition, rows) in by_period {
            let batches = rows.chunks(BATCH_ROWS).map(rated_batch);
            let file = self.write(
                Dataset::Rated,
                partition,
                rows.len(),
                rated_schema(),
                batches,
            )?;
            staged.push(file);
        }
        sync_dirs(staged.iter().map(|f| self.staged_path(&f.path)))?;
        Ok(staged)
    }

    fn write(
        &self,
        dataset: Dataset,
        partition: String,
        rows: usize,
        schema: arrow_schema::SchemaRef,
        batches: impl Iterator<Item = RecordBatch>,
    ) -> Result<LakeFile> {
        let number = self.next_file.fetch_add(1, Ordering::Relaxed) + 1;
        let path = format!(
            "{}/{partition}/part-{}-{number:06}.parquet",
            dataset.as_str(),
            self.run,
        );
        let at = self.staged_path(&path);
        let parquet = |source| LakeError::Parquet {
            path: at.clone(),
            source,
        };
        fs::create_dir_all(at.parent().expect("a file in a folder")).map_err(io_at(&at))?;
        let file = File::create(&at).map_err(io_at(&at))?;
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(self.properties.clone())).map_err(parquet)?;
        for batch in batches {
            writer.write(&batch).map_err(parquet)?;
        }
        let file = writer.into_inner().map_err(parquet)?;
        file.sync_all().map_err(io_at(&at))?;
        let bytes = file.metadata().map_err(io_at(&at))?.len();
        Ok(LakeFile {
            dataset: dataset.as_str(),
            path,
            partition,
            rows: rows as u64,
            bytes,
        })
    }

    /// Moves committed files into their place.
    pub fn publish(&self, files: &[LakeFile]) -> Result<()> {
        for file in files {
            move_into_place(&self.staged_path(&file.path), &self.root.join(&file.path))?;
        }
        Ok(())
    }

    /// Deletes staged files whose commit did not happen (a fenced
    /// partition's, say). Best effort: recovery deletes what is left.
    pub fn discard(&self, files: &[LakeFile]) {
        for file in files {
            let _ = fs::remove_file(self.staged_path(&file.path));
        }
    }

    /// The staged files of processes that stopped (crashed, killed or
    /// ended between staging and publishing), locked for [`Lake::recover`].
    pub fn orphans(&self) -> Result<Orphans> {
        let mut orphans = Orphans {
            files: Vec::new(),
            folders: Vec::new(),
        };
        let all = self.root.join(STAGING);
        for entry in fs::read_dir(&all).map_err(io_at(&all))? {
            let folder = entry.map_err(io_at(&all))?.path();
            if folder == self.staging || !folder.is_dir() {
                continue;
            }
            let lock_path = folder.join(LOCK);
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_at(&lock_path))?;
            match lock.try_lock() {
                Ok(()) => {}
                // Its process is alive: its files are its own.
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
            }
            let mut found = Vec::new();
            walk(&folder, "", &mut found)?;
            orphans.files.extend(
                found
                    .into_iter()
                    .filter(|path| path != LOCK)
                    .map(|path| (path.clone(), folder.join(&path))),
            );
            orphans.folders.push((folder, lock));
        }
        orphans.files.sort();
        Ok(orphans)
    }

    /// Moves the orphans `committed` names (what the store's manifest
    /// holds) into place and deletes the others and their folders.
    pub fn recover(&self, orphans: Orphans, committed: &BTreeSet<String>) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        for (path, staged) in orphans.files {
            if committed.contains(&path) {
                move_into_place(&staged, &self.root.join(&path))?;
                recovery.published += 1;
            } else {
                fs::remove_file(&staged).map_err(io_at(&staged))?;
                recovery.discarded += 1;
            }
        }
        for (folder, lock) in orphans.folders {
            drop(lock);
            fs::remove_dir_all(&folder).map_err(io_at(&folder))?;
        }
        Ok(recovery)
    }

    /// This process's staged files not yet published, as paths under the root.
    pub fn staged(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        walk(&self.staging, "", &mut found)?;
        found.retain(|path| path != LOCK);
        found.sort();
        Ok(found)
    }

    fn staged_path(&self, path: &str) -> PathBuf {
        self.staging.join(path)
    }
}

impl Drop for Lake {
    /// A process that published everything it staged leaves no folder.
    fn drop(&mut self) {
        if self.staged().is_ok_and(|left| left.is_empty()) {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Deletes published files (a rebuild clears the lake with the store's
/// results); files already gone are not an error. Returns how many went.
pub fn remove_published(root: &Path, paths: &[String]) -> Result<usize> {
    let mut removed = 0;
    for path in paths {
        let at = root.join(path);
        match fs::remove_file(&at) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_at(&at)(source)),
        }
    }
    Ok(removed)
}

fn move_into_place(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().expect("a file in a folder")).map_err(io_at(to))?;
    fs::rename(from, to).map_err(io_at(to))
}

/// An I/O failure on `path`, for `map_err` (the path is copied only when
/// there is an error).
pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `columns` (of `schema`) as the Parquet file `path`: beside it
/// first, synced, then renamed over it, so a reader sees the old file or
/// the new one and never half of one (a process killed meanwhile leaves a
/// hidden `.tmp` the next write replaces).
pub(crate) fn write_in_place(
    path: &Path,
    schema: arrow_schema::SchemaRef,
    columns: Vec<arrow_array::ArrayRef>,
) -> Result<()> {
    let folder = path.parent().expect("a lake file is in a folder");
    let name = path.file_name().expect("a lake file has a name");
    let temporary = folder.join(format!(".{}.tmp", name.to_string_lossy()));
    let parquet_error = |source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| parquet_error(e.into()))?;
    let file = File::create(&temporary).map_err(io_at(&temporary))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(properties())).map_err(parquet_error)?;
    writer.write(&batch).map_err(parquet_error)?;
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all().map_err(io_at(&temporary))?;
    fs::rename(&temporary, path).map_err(io_at(path))?;
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(io_at(folder))
}

/// zstd at level 1 with min/max statistics per column chunk (what DuckDB
/// and Spark prune row groups by): against level 3 with per-page
/// statistics, about 1 s less CPU of 21 s in `bench/rating_throughput.sh`
/// and files no larger. Dictionaries for the repetitive columns (kinds,
/// plans, regions, numbers of a subscriber base), none for the columns
/// nearly every row spells differently: there a dictionary is hashed value
/// by value until it overflows and the writer falls back to plain pages.
pub(crate) fn properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("1 is a zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(true)
        .set_created_by(format!("cdrflow {}", env!("CARGO_PKG_VERSION")));
    for column in UNIQUE_PER_ROW {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder.build()
}

/// Columns of either dataset whose values hardly repeat.
const UNIQUE_PER_ROW: [&str; 6] = [
    "record_id",
    "event_time",
    "other_party",
    "up_bytes",
    "down_bytes",
    "usage_units",
];

/// Syncs the folders of new files, so that their names survive a crash too.
fn sync_dirs(files: impl Iterator<Item = PathBuf>) -> Result<()> {
    let folders: BTreeSet<PathBuf> = files
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for folder in folders {
        File::open(&folder)
            .and_then(|f| f.sync_all())
            .map_err(io_at(&folder))?;
    }
    Ok(())
}

fn walk(dir: &Path, prefix: &str, found: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = match prefix {
            "" => name,
            _ => format!("{prefix}/{name}"),
        };
        if entry.file_type().map_err(io_at(dir))?.is_dir() {
            walk(&entry.path(), &path, found)?;
        } else {
            found.push(path);
        }
    }
    Ok(())
}

/// `cdrflow export rated --format parquet`: rated records into one Parquet
/// file (or stream), in batches.
pub struct RatedParquet<W: Write + Send> {
    writer: ArrowWriter<W>,
    pending: Vec<RatedRecord>,
}

impl<W: Write + Send> RatedParquet<W> {
    pub fn new(out: W) -> Result<RatedParquet<W>> {
        let writer =
            ArrowWriter::try_new(out, export_schema(), Some(properties())).map_err(export_error)?;
        Ok(RatedParquet {
            writer,
            pending: Vec::with_capacity(BATCH_ROWS),
        })
    }

    pub fn push(&mut self, record: RatedRecord) -> Result<()> {
        self.pending.push(record);
        if self.pending.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let rows: Vec<&RatedRecord> = self.pending.iter().collect();
        let batch = export_batch(&rows);
        self.writer.write(&batch).map_err(export_error)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is left and the file's footer.
    pub fn finish(mut self) -> Result<W> {
        if !self.pending.is_empty() {
            self.flush()?;
        }
        self.writer.into_inner().map_err(export_error)
    }
}

fn export_error(source: parquet::errors::ParquetError) -> LakeError {
    LakeError::Parquet {
        path: PathBuf::from("the export"),
        source,
    }
}
