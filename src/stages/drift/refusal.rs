//! What a refused run leaves: the side file with the full comparison
//! (`DIR/_drift/as_of=D/<run_id>.json`) and the one-line refusal naming the gate.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Context, Result};
use crate::io::output::write_bytes;

use super::{Check, Drift};

/// The folder of the side files of refused runs: `DIR/_drift/as_of=D/<run_id>.json` (the
/// leading underscore keeps it out of what Hive, Spark and pyarrow treat as data).
pub const SIDE_FOLDER: &str = "_drift";

/// `DIR/_drift/as_of=D/<run_id>.json`.
pub fn side_file_path(out: &Path, as_of: NaiveDate, run_id: &str) -> PathBuf {
    out.join(SIDE_FOLDER)
        .join(format!("as_of={as_of}"))
        .join(format!("{run_id}.json"))
}

#[derive(Serialize)]
struct SideFile<'a> {
    run_id: &'a str,
    as_of: NaiveDate,
    drift: &'a Drift,
}

/// Written through a temporary file renamed into place: the file on-call opens is whole.
pub(super) fn write_side_file(path: &Path, check: &Check<'_>, drift: &Drift) -> Result<()> {
    let dir = path.parent().unwrap_or(check.out);
    std::fs::create_dir_all(dir).with_context(|| format!("drift side file {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(&SideFile {
        run_id: check.run_id,
        as_of: check.as_of,
        drift,
    })?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    write_bytes(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("drift side file {}", path.display()))?;
    Ok(())
}

/// The one-line refusal: the first tripped gate with its subject, value and limit, the
/// others by name, the side file, the way out.
pub(super) fn refusal(drift: &Drift, side: &Path, unwritten: Option<String>) -> String {
    let first = drift.gates.iter().find(|g| g.tripped);
    let against = drift
        .reference
        .as_ref()
        .map(|r| format!("as_of={}", r.as_of))
        .unwrap_or_default();
    let mut line = match first {
        Some(g) => format!(
            "drift gate {}: {} measured {} > limit {} (against {against})",
            g.gate,
            g.subject.as_deref().unwrap_or("?"),
            g.measured.map_or("?".into(), |m| format!("{m:.4}")),
            g.limit
        ),
        None => "drift gate".into(),
    };
    let others: Vec<&str> = drift.tripped.iter().skip(1).copied().collect();
    if !others.is_empty() {
        line.push_str(&format!("; also tripped: {}", others.join(", ")));
    }
    match unwritten {
        None => line.push_str(&format!(
            "; nothing published; full comparison in {}; --accept-drift publishes anyway",
            side.display()
        )),
        Some(e) => line.push_str(&format!(
            "; nothing published; the comparison could not be written ({e}); --accept-drift publishes anyway"
        )),
    }
    line
}
