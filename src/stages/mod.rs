//! The job as a library of stages, each a plain function over typed inputs, each runnable on
//! its own from files (the subcommand of the same name), `run` being all four in one process:
//!
//! ```text
//!  events (Parquet)           plan::Plan: config + --map checked, inputs opened, as-of and
//!        │                    windows resolved, output paths checked, run id
//!        ▼
//!  features::scan ─────────── one scan, every cutoff ─► rejects (RecordBatch)
//!        │ FeatureTable per cutoff            churnclv features --label-horizon H
//!        │ (labels of [c, c+H) on request) ─► F_c.parquet (features/table/: the contract)
//!        │ run: Scanned::model_inputs ─ the samples at tv, t0, t1 + the as-of table, the
//!        │      histories dropped; shards::model_inputs under a memory budget (one scan
//!        │      per hash shard of the customers, gathered in id order)
//!        ▼
//!  train::train ───────────── samples at tv, t0, t1 (labelled) and as-of buyers:
//!        │ Trained            L2 choice (tv→t0), out-of-time evaluation (t0→t1) or the
//!        │                    customer split, baselines, spend model, BTYD evaluation,
//!        │                    final refits     churnclv train ─► model.json, metrics.json
//!        ▼
//!  score::score_with ──────── fitted (or saved) models + the as-of table ─► Scored
//!        │                    (scores, segments, tiers, KPIs); under a memory budget
//!        │                    summary_by_slices (Summary + Cuts), the rows by slices
//!        │                    (score_slices) only as publish writes them
//!        │                                     churnclv score --features F --model M
//!        ▼
//!  drift::govern ──────────── this run's profile against the latest earlier published run:
//!        │ Governance         PSI, input / model / tier shifts, [gates] (exit 3 + side file)
//!        ▼
//!  publish::publish ───────── one partition writer, one Manifest type, through
//!                             io::publish's lock, staging and one-step swap
//! ```
//!
//! [`sharded`] is the score stage over customer buckets (two passes around the whole table's
//! cut points, `crate::cuts`) and their one publish: the scale-out path.
//! [`history`] lists the published runs (`churnclv history`, the report's trends).
//! [`metrics`] holds the metrics.json types, [`report_page`] the report page's data, [`console`]
//! what `run` and `train` print when they finish, [`validate`] and [`btyd`] the two diagnostic
//! subcommands' work. Every stage returns [`crate::Error`], whose variants carry their exit
//! code.

pub mod btyd;
pub mod challengers;
pub mod console;
pub mod drift;
pub mod features;
pub mod history;
pub mod jobs;
pub mod metrics;
pub mod publish;
pub mod report_page;
pub mod score;
pub mod sharded;
pub mod sharded_cuts;
pub mod sharded_publish;
pub mod shards;
pub mod train;
pub mod validate;
pub mod value_select;
