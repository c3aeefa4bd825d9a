//! A stage-level progress bar on stderr, for people at a terminal.
//!
//! Shown only when stderr is a terminal, `--quiet` is off and the log format is text: never in
//! JSON mode, never when stderr is piped or redirected (schedulers, CI, tests). When it is off,
//! [`Progress`] does nothing. While a bar is drawn, text log lines go through
//! [`ProgressBar::suspend`] (see [`stderr`]) so they print above it instead of through it.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::LogFormat;

/// Whether progress bars are shown: only for a person at a terminal reading text logs.
pub fn enabled(stderr_is_tty: bool, quiet: bool, format: LogFormat) -> bool {
    stderr_is_tty && !quiet && format == LogFormat::Text
}

/// Set once at start-up (by `init_logging`); unset means off.
static ENABLED: OnceLock<bool> = OnceLock::new();
/// The bar being drawn, if any, for the log writer.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Records the decision of [`enabled`] for the [`Progress`] bars made later.
pub fn init(enabled: bool) {
    let _ = ENABLED.set(enabled);
}

fn active() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    ACTIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pipeline's stages as one bar: `stage` starts the next one, the bar is cleared when the
/// value is finished or dropped (also on an error, before the error line is printed).
pub struct Progress {
    bar: Option<ProgressBar>,
    started: u64,
}

impl Progress {
    /// A bar of `stages` stages, or a no-op when bars are off.
    pub fn stages(stages: u64) -> Self {
        let bar = ENABLED.get().copied().unwrap_or(false).then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} {elapsed:>4} [{bar:24}] {pos}/{len} stages done · {wide_msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(Some(stages), ProgressDrawTarget::stderr())
                .with_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            *active() = Some(bar.clone());
            bar
        });
        Progress { bar, started: 0 }
    }

    /// Marks the previous stage done and shows `message` as the current one.
    pub fn stage(&mut self, message: impl Into<Cow<'static, str>>) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.started);
            bar.set_message(message);
            self.started += 1;
        }
    }

    /// Clears the bar (the work is done; the summary follows).
    pub fn finish(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            *active() = None;
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The text log writer: stderr, with the active bar (if any) hidden while a line is written.
pub fn stderr() -> Stderr {
    Stderr
}

/// See [`stderr`].
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = active().clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_for_text_logs_on_a_terminal_without_quiet() {
        assert!(enabled(true, false, LogFormat::Text));
        for (tty, quiet, format) in [
            (false, false, LogFormat::Text),
            (true, true, LogFormat::Text),
            (true, false, LogFormat::Json),
            (false, true, LogFormat::Json),
            (true, true, LogFormat::Json),
            (false, false, LogFormat::Json),
            (false, true, LogFormat::Text),
        ] {
            assert!(!enabled(tty, quiet, format), "{tty} {quiet} {format:?}");
        }
    }

    #[test]
    fn a_disabled_bar_is_a_no_op() {
        // ENABLED is never set in unit tests: bars are off.
        let mut p = Progress::stages(3);
        p.stage("features");
        p.stage("publish");
        assert!(p.bar.is_none() && active().is_none());
        p.finish();
    }
}
