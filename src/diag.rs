//! How an error reaches the operator: one line, each cause once, control characters escaped.
//!
//! The crate's convention: an error's `Display` says what failed at its own level (naming the
//! file, column, row group or value) and does **not** repeat its underlying error, which is
//! its `source()` instead. [`error_line`] joins the chain with `": "`, so the operator reads
//! `out/x.parquet: cannot write Parquet: No space left on device (os error 28)` — the OS error
//! once. Third-party errors that both print and return their inner error (some Arrow and
//! Parquet variants do) are guarded against too: a cause whose text the line already holds is
//! not appended again.
//!
//! Paths come from the operator's file system and may hold a newline or other control
//! characters; [`escape_control`] writes them as `\n`, `\r`, `\t` or `\u{..}`, so a message is
//! always exactly one line of a log file (backslashes are left as they are: escaping them
//! would make every Windows-style path in a message harder to read for a case that never
//! happens in practice).

use std::borrow::Cow;
use std::error::Error;
use std::fmt::Write;

/// The whole cause chain of `err` on one line: `outer: inner: root`, each text once, control
/// characters escaped (the text form of the final error line).
pub fn error_line(err: &(dyn Error + 'static)) -> String {
    escape_control(&error_chain(err)).into_owned()
}

/// The cause chain of `err` joined with `": "`, each text once, control characters as they
/// are (for JSON, whose string escaping keeps them on one line and lets a reader recover the
/// exact path).
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if line.is_empty() {
            line = text;
        } else if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

/// `text` with every control character (C0, DEL, C1) and the Unicode line and paragraph
/// separators escaped: `\n`, `\r`, `\t`, otherwise `\u{hex}`. Borrowed when nothing changes.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: cannot read")]
    struct Outer {
        path: String,
        #[source]
        source: std::io::Error,
    }

    /// An error that, like some third-party ones, prints its cause and also returns it.
    #[derive(Debug, thiserror::Error)]
    #[error("External: {0}")]
    struct Noisy(#[source] std::io::Error);

    #[test]
    fn the_chain_on_one_line_each_cause_once() {
        let e = Outer {
            path: "a.parquet".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            error_line(&e),
            "a.parquet: cannot read: No such file or directory (os error 2)"
        );
        let n = Noisy(std::io::Error::from_raw_os_error(21));
        assert_eq!(error_line(&n), "External: Is a directory (os error 21)");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_control("plain/path"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\nb\rc\td\u{1b}[0m\u{7f}\u{85}\u{2028}é\\x"),
            "a\\nb\\rc\\td\\u{1b}[0m\\u{7f}\\u{85}\\u{2028}é\\x"
        );
        let e = Outer {
            path: "dir\nname/e.parquet".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        let line = error_line(&e);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.starts_with("dir\\nname/e.parquet: cannot read: "),
            "{line}"
        );
    }
}
