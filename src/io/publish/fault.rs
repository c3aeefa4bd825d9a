//! The named fault-injection points of every publishing step (`failpoints` builds only).

/// Test-only fault injection at a named step (cargo feature `failpoints`; in normal builds
/// this does nothing). Points are set by the `FAILPOINTS` environment variable with the `fail`
/// crate's syntax (`name=action;name=action`), read once: `return(kill)` kills the process on
/// the spot with SIGKILL (no destructors, no clean-up), `return` makes the step fail with an
/// I/O error, `sleep(ms)` holds it, `N*off->…` skips the first N passes.
pub(crate) fn fault(point: &'static str) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        static SETUP: std::sync::Once = std::sync::Once::new();
        // The scenario holds the crate's global lock for the life of the process.
        SETUP.call_once(|| std::mem::forget(fail::FailScenario::setup()));
        fail::fail_point!(point, |arg: Option<String>| {
            if arg.as_deref() == Some("kill") {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
            Err(std::io::Error::other(format!(
                "injected failure at {point}"
            )))
        });
    }
    let _ = point;
    Ok(())
}
