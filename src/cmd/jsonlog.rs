//! `--log-format json`: one flat JSON object per line, for schedulers.
//!
//! Keys: `ts` (RFC 3339 UTC with milliseconds), `level` (`INFO`, `WARN`, …), `stage` (when the
//! event has one), `message`, then every other field of the event as a top-level key with its
//! natural JSON type (integers, floats and booleans as such; everything else as a string). A
//! float that JSON cannot hold (NaN, ±inf) is written as `null`. An event field named `ts` or
//! `level` would be written as `field_ts` / `field_level`.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format json`.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = json_line(chrono::Utc::now(), event.metadata().level(), fields.0);
        writeln!(writer, "{line}")
    }
}

/// The fields of one event in their declared order, as JSON values.
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        self.0.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities have no JSON number: null.
        let v = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.push(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        let v = i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.push(field, v);
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        let v = u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.push(field, v);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` (format arguments) and `%display` fields format the same through Debug.
        self.push(field, Value::from(format!("{value:?}")));
    }
}

/// One log line (without the newline): `ts`, `level`, `stage`, `message`, then the other fields
/// in the order the event declares them.
pub(super) fn json_line(
    ts: chrono::DateTime<chrono::Utc>,
    level: &Level,
    mut fields: Vec<(&'static str, Value)>,
) -> String {
    let mut out = String::with_capacity(256);
    let mut put = |key: &str, value: &Value| {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&Value::from(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    };
    let ts = ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    put("ts", &Value::from(ts));
    put("level", &Value::from(level.as_str()));
    let mut take = |name: &str| {
        fields
            .iter()
            .position(|(k, _)| *k == name)
            .map(|i| fields.remove(i).1)
    };
    if let Some(stage) = take("stage") {
        put("stage", &stage);
    }
    put(
        "message",
        &take("message").unwrap_or_else(|| Value::from("")),
    );
    for (key, value) in &fields {
        match *key {
            "ts" | "level" => put(&format!("field_{key}"), value),
            _ => put(key, value),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn one_flat_object_per_line_with_typed_fields() {
        let out = capture(|| {
            tracing::info!(
                stage = "features",
                rows_read = 12u64,
                delta = -3i64,
                auc = 0.75f64,
                nan = f64::NAN,
                ok = true,
                run_id = %"r-1",
                path = ?"a\"b",
                "rejected: {}",
                "bad \"quote\"\n"
            );
            tracing::warn!(stage = "plan", ts = 5u64, "no fields");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        let keys: Vec<&str> = first
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut want = vec![
            "ts",
            "level",
            "stage",
            "message",
            "rows_read",
            "delta",
            "auc",
            "nan",
            "ok",
            "run_id",
            "path",
        ];
        want.sort_unstable();
        assert_eq!(keys, want, "{}", lines[0]);
        // Written in this order: ts, level, stage, message, then the event's own fields.
        assert!(
            lines[0].starts_with("{\"ts\":\"")
                && lines[0].contains("\"level\":\"INFO\",\"stage\":\"features\",\"message\":"),
            "{}",
            lines[0]
        );
        let ts = first["ts"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z') && ts.len() == "2026-11-23T03:12:00.123Z".len());
        assert_eq!(first["message"], "rejected: bad \"quote\"\n");
        assert_eq!(first["rows_read"], 12);
        assert!(first["rows_read"].is_u64());
        assert_eq!(first["delta"], -3);
        assert_eq!(first["auc"], 0.75);
        assert!(first["nan"].is_null());
        assert_eq!(first["ok"], true);
        assert_eq!(first["run_id"], "r-1");
        assert_eq!(first["path"], "\"a\\\"b\"");

        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap_or_default();
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["field_ts"], 5);
        assert!(second["ts"].is_string());
    }
}
