//! The integration tests, linked once into one binary (as ripgrep does): each module is a file
//! beside this one, named for what it checks; `common` holds the shared fixtures. Run one file's
//! tests with `cargo test --release --test integration MODULE::` (e.g. `publish::`).

mod common;

mod attack;
mod bad_input;
mod btyd;
mod buy_again;
mod cdnow;
mod chain;
mod challengers;
mod corpus;
mod dedup;
mod drift;
mod fallback;
mod features;
mod fuzz;
mod gates;
mod generate;
mod inputs;
mod kill;
mod messages;
mod model_file;
mod oracle;
mod publish;
mod reader;
mod run;
mod sharded;
mod shards;
mod sql;
mod tiers;
mod value;
