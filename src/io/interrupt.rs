//! SIGTERM and SIGINT: stop the process cleanly — the staging folder of the run removed, the
//! output lock released (by the exit itself), exit code 143 / 130 and one log line — and never
//! in the middle of a publish step.
//!
//! The signal is handled on a thread of its own (signal-hook's iterator), which takes the same
//! lock as the publish critical section ([`state`]): a signal arriving while a partition is
//! being swapped in waits for the swap to end, and publishing checks [`stopping`] before each
//! step, so no new step starts once a signal has arrived. A second signal while the first is
//! being handled ends the process at once, as the default action would (an impatient Ctrl-C,
//! a scheduler's follow-up kill); the next run repairs whatever that cut short.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Set inside the signal handler itself, before the handling thread wakes up.
static STOPPING: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<State> = Mutex::new(State {
    staging: Vec::new(),
    removed: Vec::new(),
    published: Vec::new(),
    finished: false,
});
static HANDLER: OnceLock<JoinHandle<()>> = OnceLock::new();

/// What the signal handler must know, guarded by the lock publishing holds.
#[derive(Debug)]
pub(crate) struct State {
    /// Staging folders of this process that exist now.
    staging: Vec<PathBuf>,
    /// Staging folders the run itself removed on its way out after the signal.
    removed: Vec<PathBuf>,
    /// Partitions this process has published (named in the log line).
    published: Vec<PathBuf>,
    /// The command has returned: a signal now changes nothing.
    finished: bool,
}

impl State {
    pub(crate) fn register(&mut self, dir: &Path) {
        self.staging.push(dir.to_path_buf());
    }

    /// The staging folder `dir` is gone (published, or `removed` on the way out).
    pub(crate) fn forget(&mut self, dir: &Path, removed: bool) {
        self.staging.retain(|d| d != dir);
        if removed && stopping() {
            self.removed.push(dir.to_path_buf());
        }
    }

    pub(crate) fn published(&mut self, partition: &Path) {
        self.published.push(partition.to_path_buf());
    }
}

/// The publish critical section: held while a staging folder is created and while a
/// partition is published; the signal handler takes it before acting.
pub(crate) fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a SIGTERM or SIGINT has arrived.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Installs the SIGTERM / SIGINT handling for the life of the process (call once, from
/// `main`, before any work).
pub fn install() -> std::io::Result<()> {
    for signal in [SIGTERM, SIGINT] {
        // Registered before the flag is set, so it sees the flag of an earlier signal only.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &STOPPING)?;
        signal_hook::flag::register(signal, &STOPPING)?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let handler = std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                stop(signal);
            }
        })?;
    let _ = HANDLER.set(handler);
    Ok(())
}

/// Called by `main` when the command has returned, before it prints anything or exits. If a
/// signal is being handled, waits for the handler to end the process (its exit code, 130 or
/// 143, is the one reported, not the error the interrupted command returned); otherwise marks
/// the work finished, and a later signal changes nothing.
pub fn settle() {
    let mut state = state();
    if stopping() {
        drop(state);
        // The handler ends the process; only a handler that died would let this loop end.
        while HANDLER.get().is_some_and(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        return;
    }
    state.finished = true;
}

fn stop(signal: i32) {
    let mut state = state();
    if state.finished {
        return;
    }
    let (name, code) = if signal == SIGINT {
        ("SIGINT", 130)
    } else {
        ("SIGTERM", 143)
    };
    let mut removed: Vec<String> = state
        .removed
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    for dir in std::mem::take(&mut state.staging) {
        match super::publish::discard(&dir) {
            Ok(true) => removed.push(dir.display().to_string()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                stage = "signal",
                "{}: cannot remove the unfinished staging folder ({e}); the next run removes it",
                dir.display()
            ),
        }
    }
    let published = if state.published.is_empty() {
        "nothing published".to_string()
    } else {
        let names: Vec<String> = state
            .published
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("published before the signal: {}", names.join(", "))
    };
    let staging = if removed.is_empty() {
        "no staging folder to remove".to_string()
    } else {
        format!("removed the unfinished {}", removed.join(", "))
    };
    tracing::warn!(
        stage = "signal",
        "{name}: stopped ({published}; {staging}); the output lock is released as the process exits with code {code}"
    );
    std::process::exit(code);
}
