//! The last line of a run and its exit code, and the one-line guard of text log lines.
//!
//! A failed run ends with exactly one line on stderr: `churnclv: error: <cause chain>` with
//! text logs, or a JSON object like the log lines (`ts`, `level` `ERROR`, `stage` `exit`,
//! `message`, `exit_code`) with `--log-format json` — for a usage error that clap finds too,
//! so a scheduler that parses stderr as JSON lines never meets a line it cannot read. Control
//! characters in messages (a newline in a folder name) are escaped, so one event is one line.

use std::fmt;
use std::process::ExitCode;

use churnclv::diag::{error_chain, escape_control};
use serde_json::Value;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use super::{jsonlog, LogFormat};

/// Prints the final error line of `err` in the log format and returns its exit code (which
/// the error carries: see `churnclv::error`).
pub fn fail(err: &churnclv::Error, format: LogFormat) -> ExitCode {
    let code = err.exit_code();
    let message = error_chain(err);
    emit(format, &message, code);
    ExitCode::from(code)
}

/// A command line clap refused (or `--help` / `--version`). Help and version print as clap
/// prints them (exit 0); an error is exit 2, as one JSON line when the command line asks for
/// `--log-format json`, clap's own text otherwise.
pub fn usage(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || !wants_json()
    {
        // Prints to stdout (help, version) or stderr (errors) and exits 0 or 2.
        err.exit();
    }
    emit(LogFormat::Json, &clap_message(&err), 2);
    ExitCode::from(2)
}

/// Whether the raw command line asks for JSON logs (`--log-format json` or
/// `--log-format=json`, before any `--`): clap has not parsed it when it fails.
fn wants_json() -> bool {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    args.iter().enumerate().any(|(i, a)| {
        a == "--log-format=json"
            || (a == "--log-format" && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}

/// clap's error text on one line: `error: ` dropped, the hint to try `--help` dropped, lines
/// joined with `; ` (or a space after a line ending in `:`), e.g. `the following required
/// arguments were not provided: --out <DIR>; Usage: churnclv run --events <PATH> --out <DIR>`.
fn clap_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("For more information") {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// Writes the final line: text with control characters escaped, or a JSON object (whose string
/// escaping keeps the message on one line).
fn emit(format: LogFormat, message: &str, code: u8) {
    match format {
        LogFormat::Text => eprintln!("churnclv: error: {}", escape_control(message)),
        LogFormat::Json => {
            let fields = vec![
                ("stage", Value::from("exit")),
                ("message", Value::from(message)),
                ("exit_code", Value::from(code)),
            ];
            let line = jsonlog::json_line(chrono::Utc::now(), &tracing::Level::ERROR, fields);
            eprintln!("{line}");
        }
    }
}

/// A text log formatter that writes what `F` writes with control characters escaped, so a
/// message holding a newline (a path) stays on one line.
pub struct OneLine<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for OneLine<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{}", escape_control(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn clap_errors_become_one_line() {
        let err = super::super::Cli::try_parse_from(["churnclv", "run", "--events", "e"])
            .err()
            .map(|e| clap_message(&e))
            .unwrap_or_default();
        assert_eq!(
            err,
            "the following required arguments were not provided: --out <DIR>; Usage: churnclv run --events <PATH> --out <DIR>"
        );
    }
}
