//! The edges of the pipeline: finding, opening, reading and validating events ([`discover`],
//! [`input`], [`read`]; decoder panics caught by [`guard`]), output paths checked before the
//! work ([`target`]), writing outputs ([`output`]) and publishing them safely ([`publish`]:
//! lock, staging, swap, recovery; [`interrupt`]: SIGTERM / SIGINT), a run's own scratch
//! folder ([`scratch`]) and the k-way merge of files sorted by customer ([`sorted_merge`]).

pub mod discover;
pub mod guard;
pub mod input;
pub mod interrupt;
pub mod output;
pub mod publish;
pub mod read;
pub mod scratch;
pub mod sorted_merge;
pub mod target;

pub use input::{open_inputs, InputError, InputFile, InputSet};
pub use output::{OutputError, ParquetOptions};
pub use publish::{LockError, PublishError, RunLock, Staging};
pub use read::{scan, ReadOptions, Reason, Scan, ScanStats, Shard};
