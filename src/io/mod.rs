//! The edges of the pipeline: reading and validating events ([`input`], [`read`]) and writing
//! outputs atomically ([`output`]).

pub mod guard;
pub mod input;
pub mod output;
pub mod read;

pub use input::{open_inputs, InputError, InputFile, InputSet};
pub use output::{LockError, OutputError, ParquetOptions, RunLock, Staging};
pub use read::{
    partition_of, scan, Codes, Event, EventBatch, EventBatches, Ids, IdsKey, ReadOptions, Reason,
    Scan, ScanStats, DAY_US,
};
