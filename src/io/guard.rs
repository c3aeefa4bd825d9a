//! Turning a panic inside the Parquet decoders into an error: damaged bytes in a page can
//! make parquet-rs panic (e.g. `util/bit_util.rs` "Num of bytes exceed MAX_VLQ_BYTE_LEN",
//! `byte_stream_split_decoder.rs`, arrow-buffer's `bit_chunk_iterator.rs`) instead of returning
//! an error. [`decode`] runs one decoding step under `catch_unwind`, so the caller can report
//! the file and row group (exit 2) and the job never dies with a backtrace on a corrupt file.
//!
//! Only the decoder calls are wrapped (footer parsing, opening a row group, pulling the next
//! record batch), never our own code: a panic in an accumulator or a model is a bug and still
//! aborts the run as one. While a guarded call runs, a thread-local flag tells the panic hook
//! to stay quiet (the message becomes part of the error instead of a `thread panicked` line on
//! stderr); panics anywhere else go to the hook that was installed before, unchanged.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Whether this thread is inside [`decode`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic of this thread happened (`crate-x.y.z/src/file.rs:line`).
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// A panic caught inside a decoder: its message and where it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderPanic {
    pub message: String,
    /// `parquet-60.1.0/src/util/bit_util.rs:1189:13`, when known.
    pub location: Option<String>,
}

impl std::fmt::Display for DecoderPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(at) => write!(
                f,
                "corrupt data: the Parquet decoder failed at {at}: {}",
                self.message
            ),
            None => write!(
                f,
                "corrupt data: the Parquet decoder failed: {}",
                self.message
            ),
        }
    }
}

/// Installs (once per process) a panic hook that records the location of guarded panics
/// silently and passes every other panic to the previous hook.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", short_path(l.file()), l.line(), l.column()));
                LOCATION.with(|slot| *slot.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// `…/registry/src/index…/parquet-60.1.0/src/util/bit_util.rs` → `parquet-60.1.0/src/util/bit_util.rs`:
/// the crate and version say where to look, the registry folder says nothing.
fn short_path(file: &str) -> &str {
    match file.rfind("/src/") {
        Some(i) => &file[file[..i].rfind('/').map_or(0, |j| j + 1)..],
        None => file,
    }
}

/// Runs `f` (one call into the Parquet decoders); a panic inside becomes `Err`.
pub fn decode<T>(f: impl FnOnce() -> T) -> Result<T, DecoderPanic> {
    install_hook();
    let was = GUARDED.with(|g| g.replace(true));
    // The decoder's state is not used again after a panic (the caller turns the error into a
    // failed row group and drops the reader), so unwind safety holds.
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic without a message".to_string());
        let location = LOCATION.with(|slot| slot.borrow_mut().take());
        DecoderPanic { message, location }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message_and_location() {
        let r: Result<(), _> = decode(|| panic!("bad page {}", 7));
        let e = r.expect_err("caught");
        assert_eq!(e.message, "bad page 7");
        let at = e.location.clone().unwrap_or_default();
        assert!(at.starts_with("src/io/guard.rs:"), "{at}");
        assert!(e
            .to_string()
            .starts_with("corrupt data: the Parquet decoder failed at src/io/guard.rs:"));
        assert_eq!(decode(|| 5).ok(), Some(5));
    }

    #[test]
    fn registry_paths_are_shortened_to_crate_and_version() {
        assert_eq!(
            short_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/parquet-60.1.0/src/util/bit_util.rs"),
            "parquet-60.1.0/src/util/bit_util.rs"
        );
        assert_eq!(short_path("src/io/guard.rs"), "src/io/guard.rs");
    }
}
