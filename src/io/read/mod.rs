//! Reading the events: every row group of every input file is read in parallel (rayon), each
//! row is validated and either handed to the accumulator of its customer's partition (in an
//! [`EventBatch`], the contract of [`crate::batch`]) or rejected with a [`Reason`]. Memory
//! follows the accumulators (customers), not the number of events.
//!
//! By concern:
//! - [`scan`]: the scan engine (tasks, partition queues) and the time-only first pass for the
//!   default as-of ([`latest_event_time`]);
//! - `row_group`: opening one row group, decoder calls guarded against panics;
//! - `decode`: a record batch in the shapes the validator reads, event times in µs;
//! - `validate`: [`ReadOptions`], [`Reason`], the checks, [`future_limit`];
//! - `dedup`: the key-columns pass that finds duplicate rows ([`duplicate_rows`]);
//! - `stats`: row accounting ([`ScanStats`]) and the reject-share gate;
//! - `rejects`: the rows copied to `rejects.parquet` ([`rejects_schema`]).

mod decode;
mod dedup;
mod rejects;
mod row_group;
mod scan;
mod stats;
mod validate;

pub use dedup::{duplicate_rows, Duplicates};
pub use rejects::rejects_schema;
pub use scan::{latest_event_time, scan, Scan};
pub use stats::{ScanStats, TooManyRejects};
pub use validate::{future_limit, ReadOptions, Reason, Shard};
