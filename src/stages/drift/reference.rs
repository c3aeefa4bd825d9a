//! The published runs of an output folder, as the drift check and `churnclv history` see
//! them: every `DIR/runs/as_of=D/` with `_SUCCESS` (a partition without it is not published),
//! its run id and the profile of its metrics.json, and the engagement tier of every customer
//! of a partition's score table (for the tier transition matrix). Reading never changes the
//! folder, and runs at or after a given as-of are never candidates for a reference.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;

use crate::io::publish::{RUNS, SUCCESS};
use crate::stages::drift::profile::Profile;
use crate::stages::publish::partition_path;

/// One published partition (`_SUCCESS` present).
#[derive(Debug, Clone)]
pub struct Published {
    pub as_of: NaiveDate,
    /// `DIR/runs/as_of=D`.
    pub dir: PathBuf,
    /// metrics.json parsed (`None`: absent, e.g. a `score` partition, or unreadable — the
    /// reason is in `problem`).
    pub metrics: Option<serde_json::Value>,
    pub run_id: Option<String>,
    /// The command that wrote it (manifest.json `command`).
    pub command: Option<String>,
    pub problem: Option<String>,
}

impl Published {
    /// The profile the run left (a `run` of a build with drift checks), or why there is none.
    pub fn profile(&self) -> Result<Profile, String> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        let Some(m) = &self.metrics else {
            return Err(format!(
                "no metrics.json (written by `{}`, not `run`)",
                self.command.as_deref().unwrap_or("?")
            ));
        };
        let Some(p) = m.get("profile") else {
            return Err(
                "its metrics.json has no profile (written by a build without drift checks)".into(),
            );
        };
        serde_json::from_value(p.clone())
            .map_err(|e| format!("its metrics.json profile does not parse: {e}"))
    }
}

/// A partition passed over, and why (in metrics.json `drift.skipped`).
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub as_of: NaiveDate,
    pub reason: String,
}

/// The published partitions of `out` (as-of, folder), newest first, none read yet. A folder
/// that is not `as_of=YYYY-MM-DD` or has no `_SUCCESS` is not a published run.
pub fn list(out: &Path) -> Vec<(NaiveDate, PathBuf)> {
    let Ok(entries) = fs::read_dir(out.join(RUNS)) else {
        return Vec::new();
    };
    let mut all: Vec<(NaiveDate, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let as_of = NaiveDate::parse_from_str(name.strip_prefix("as_of=")?, "%Y-%m-%d").ok()?;
            let dir = e.path();
            fs::symlink_metadata(dir.join(SUCCESS)).ok()?;
            Some((as_of, dir))
        })
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0));
    all
}

/// Every published partition of `out`, read, newest as-of first.
pub fn published(out: &Path) -> Vec<Published> {
    list(out)
        .into_iter()
        .map(|(as_of, dir)| read_partition(as_of, dir))
        .collect()
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, String> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: not JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

/// A published partition's manifest and metrics.
pub fn read_partition(as_of: NaiveDate, dir: PathBuf) -> Published {
    let manifest = read_json(&dir.join("manifest.json"));
    let metrics = read_json(&dir.join("metrics.json"));
    let text = |v: &Option<serde_json::Value>, key: &str| {
        v.as_ref()
            .and_then(|m| m.get(key))
            .and_then(|r| r.as_str())
            .map(str::to_owned)
    };
    let (manifest, problem_m) = match manifest {
        Ok(m) => (m, None),
        Err(e) => (None, Some(e)),
    };
    let (metrics, problem) = match metrics {
        Ok(m) => (m, problem_m),
        Err(e) => (None, Some(e)),
    };
    Published {
        as_of,
        run_id: text(&manifest, "run_id").or_else(|| text(&metrics, "run_id")),
        command: text(&manifest, "command"),
        metrics,
        problem,
        dir,
    }
}

/// The comparison base of a run at `as_of`: the published partitions strictly before it
/// that carry a profile, newest first, at most `window`; and the newer-than-reference ones
/// passed over (no profile), with why.
pub struct Candidates {
    pub runs: Vec<(Published, Profile)>,
    pub skipped: Vec<Skipped>,
    /// Published partitions after this as-of (never compared: a backfill). The partition of
    /// this very as-of (a rerun replaces it) is not counted, so a rerun writes what the first
    /// run wrote, byte for byte.
    pub later: usize,
}

pub fn candidates(out: &Path, as_of: NaiveDate, window: usize) -> Candidates {
    let all = list(out);
    let later = all.iter().filter(|p| p.0 > as_of).count();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    // Read newest first, only as far as the window needs.
    for (day, dir) in all.into_iter().filter(|p| p.0 < as_of) {
        if runs.len() >= window {
            break;
        }
        let p = read_partition(day, dir);
        match p.profile() {
            Ok(profile) => runs.push((p, profile)),
            // Only those newer than the reference matter to the reader: they explain why the
            // reference is not the latest partition.
            Err(reason) if runs.is_empty() => skipped.push(Skipped {
                as_of: p.as_of,
                reason,
            }),
            Err(_) => {}
        }
    }
    Candidates {
        runs,
        skipped,
        later,
    }
}

/// `customer_id → engagement_tier` of the score table of the partition at `as_of`.
pub fn tiers_of(out: &Path, as_of: NaiveDate) -> Result<HashMap<String, String>, String> {
    let path = out
        .join(partition_path("scores", as_of))
        .join("scores.parquet");
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = fs::File::open(&path).map_err(|e| fail(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = ["customer_id", "engagement_tier"]
        .iter()
        .map(|name| {
            schema
                .root_schema()
                .get_fields()
                .iter()
                .position(|f| f.name() == *name)
                .ok_or_else(|| fail(&format!("no column {name}")))
        })
        .collect::<Result<_, _>>()?;
    let mask = ProjectionMask::roots(schema, roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| fail(&e))?;
    let mut tiers = HashMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| fail(&e))?;
        let (ids, tier) = (
            text_column(&batch, "customer_id"),
            text_column(&batch, "engagement_tier"),
        );
        let (Some(ids), Some(tier)) = (ids, tier) else {
            return Err(fail(&"customer_id and engagement_tier must be text"));
        };
        for i in 0..ids.len() {
            if ids.is_valid(i) && tier.is_valid(i) {
                tiers.insert(ids.value(i).to_owned(), tier.value(i).to_owned());
            }
        }
    }
    Ok(tiers)
}

/// A Utf8 column of a batch by name.
pub fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
}
