//! The feature stage as Spark SQL (`churnclv sql`): the text of one query over a view named
//! `events` that returns the feature table of `churnclv features` — same columns, types and
//! definitions (docs/features.md) — and of one that counts the rejected rows by reason.
//!
//! The query's shape follows what a Spark engine runs well at scale (docs/scale-out.md):
//! - one scan of `events` and one shuffle, by `customer_id`: every window is partitioned by
//!   `customer_id` and the final aggregate groups by it, so the engine reuses the first
//!   exchange; deduplication is per customer for the same reason (`io::read::duplicate_rows`);
//! - no `COUNT(DISTINCT …)` (Spark rewrites several into an `Expand` with extra exchanges):
//!   distinct days, categories and channels are `size(collect_set(…))`;
//! - no `RANGE … UNBOUNDED FOLLOWING` frame (quadratic per partition in Spark 4.1): "the next
//!   purchase at or after t" is a running `min` over time descending;
//! - money as `DECIMAL(18,6)`, exact like the Rust micro-units; every division by a count that
//!   may be 0 under `NULLIF` (ANSI mode fails on division by zero); times as µs since the epoch
//!   (`unix_micros`), so the session time zone only matters for a naive `event_time` — set
//!   `spark.sql.session.timeZone=UTC`, as churnclv reads naive times as UTC;
//! - no final `ORDER BY` (a global sort is a second shuffle): `train` and `score --features`
//!   sort by `customer_id` on reading.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Duration, NaiveDate};

use crate::config::Config;
use crate::events::EventKind;
use crate::features::{features_schema, labelled_schema};
use crate::io::input::Field;
use crate::time::{date_us, DAY_US, MAX_TIME_US, MIN_TIME_US};

/// Why a query cannot be written.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SqlError {
    /// `--absent` named a column the input contract requires.
    #[error("--absent {0}: the column is required (customer_id, event_time and event_type are)")]
    RequiredAbsent(String),
    /// `--absent` named a column the input contract does not have.
    #[error("--absent {0}: not a column of the input contract; expected one of amount, channel, category, order_id, event_id")]
    UnknownColumn(String),
    /// A feature column without a SQL expression: a column was added to the table without
    /// its definition here.
    #[error("feature column '{0}' has no SQL definition in src/sql/mod.rs")]
    Undefined(String),
}

/// What a query is written for: the view's column names and the validation settings (from
/// the config and `--map`), the optional columns the view lacks, the cutoff and the label
/// horizon.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Column names of the view, by contract field (`[columns]` after `--map`).
    pub names: BTreeMap<Field, String>,
    /// Raw event-type aliases (`[event_types]`), already checked by the config.
    pub aliases: BTreeMap<String, EventKind>,
    pub max_abs_amount: f64,
    pub deduplicate: bool,
    /// `validation.max_future` in µs: rows at or after `max(now, end) + this` are
    /// `future_event` (`now` is the engine's `current_timestamp()`).
    pub max_future_us: i64,
    /// Optional columns the view does not have: read as null, as churnclv reads a file
    /// without them.
    pub absent: Vec<Field>,
    pub cutoff: NaiveDate,
    pub label_horizon_days: Option<u32>,
}

impl QuerySpec {
    /// The spec of a query with `config`'s columns and validation, `absent` optional columns
    /// (contract names), at `cutoff`.
    pub fn new(
        config: &Config,
        absent: &[String],
        cutoff: NaiveDate,
        label_horizon_days: Option<u32>,
    ) -> Result<QuerySpec, SqlError> {
        let c = &config.columns;
        let names: BTreeMap<Field, String> = [
            (Field::CustomerId, &c.customer_id),
            (Field::EventTime, &c.event_time),
            (Field::EventType, &c.event_type),
            (Field::Amount, &c.amount),
            (Field::Channel, &c.channel),
            (Field::Category, &c.category),
            (Field::OrderId, &c.order_id),
            (Field::EventId, &c.event_id),
        ]
        .into_iter()
        .map(|(f, n)| (f, n.clone()))
        .collect();
        let mut fields = Vec::new();
        for a in absent {
            let f = Field::ALL
                .into_iter()
                .find(|f| f.name() == a.trim())
                .ok_or_else(|| SqlError::UnknownColumn(a.clone()))?;
            if matches!(f, Field::CustomerId | Field::EventTime | Field::EventType) {
                return Err(SqlError::RequiredAbsent(a.clone()));
            }
            fields.push(f);
        }
        let aliases = config
            .event_types
            .iter()
            .filter_map(|(raw, target)| {
                EventKind::from_name(target).map(|k| (raw.trim().to_ascii_lowercase(), k))
            })
            .collect();
        Ok(QuerySpec {
            names,
            aliases,
            max_abs_amount: config.validation.max_abs_amount,
            deduplicate: config.validation.deduplicate,
            max_future_us: config.validation.max_future.us(),
            absent: fields,
            cutoff,
            label_horizon_days,
        })
    }

    fn cutoff_us(&self) -> i64 {
        date_us(self.cutoff)
    }

    fn horizon_us(&self) -> i64 {
        i64::from(self.label_horizon_days.unwrap_or(0)) * DAY_US
    }

    /// Where the used rows end: the cutoff, or the label window's end.
    fn end_us(&self) -> i64 {
        let h = Duration::days(i64::from(self.label_horizon_days.unwrap_or(0)));
        date_us(self.cutoff + h)
    }

    /// The view's column as an SQL expression of the contract's type, or a typed null.
    fn column(&self, f: Field, ty: &str) -> String {
        match self.names.get(&f) {
            Some(name) if !self.absent.contains(&f) => format!("CAST({} AS {ty})", ident(name)),
            _ => format!("CAST(NULL AS {ty})"),
        }
    }
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal (Spark SQL escapes with backslashes).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The rows of `events` with their contract types, event kind, deduplication key and reject
/// reason (null: used): the common head of both queries. Reasons are checked in the Rust
/// reader's order (`io::read::validate`), so each row gets the same one.
fn checked(spec: &QuerySpec) -> String {
    let mut kinds = String::new();
    for (raw, kind) in &spec.aliases {
        let _ = write!(kinds, " WHEN {} THEN {}", lit(raw), lit(kind.as_str()));
    }
    for kind in EventKind::ALL {
        let _ = write!(kinds, " WHEN {0} THEN {0}", lit(kind.as_str()));
    }
    let dedup = if spec.deduplicate {
        "WHEN key_kind IS NOT NULL AND LAG(key_kind) OVER w_dup = key_kind \
         AND LAG(key_id) OVER w_dup = key_id THEN 'duplicate_key'"
    } else {
        ""
    };
    format!(
        "WITH src AS (
  SELECT
    {customer} AS customer_id,
    unix_micros({time}) AS t,
    {event_type} AS event_type,
    {amount} AS amount,
    {channel} AS channel,
    {category} AS category,
    {order_id} AS order_id,
    {event_id} AS event_id
  FROM events
),
typed AS (
  SELECT *,
    CASE lower(trim(event_type)){kinds} ELSE 'other' END AS kind,
    -- Deduplication key (docs/features.md): event_id, else (event type, order_id).
    CASE WHEN event_id IS NOT NULL THEN 'e'
         WHEN order_id IS NOT NULL THEN concat('o', coalesce(lower(trim(event_type)), '')) END AS key_kind,
    coalesce(event_id, order_id) AS key_id
  FROM src
),
checked AS (
  SELECT customer_id, t, kind, amount, channel, category,
    CASE
      WHEN customer_id IS NULL THEN 'null_customer_id'
      WHEN customer_id RLIKE '^\\\\s*$' THEN 'empty_customer_id'
      WHEN t IS NULL THEN 'null_event_time'
      WHEN t < {min_t} OR t >= {max_t} THEN 'time_out_of_range'
      WHEN t >= greatest(unix_micros(current_timestamp()), {end}) + {max_future} THEN 'future_event'
      WHEN event_type IS NULL THEN 'null_event_type'
      WHEN NOT (amount - amount = CAST(0 AS DOUBLE)) THEN 'non_finite_amount'
      WHEN abs(amount) > CAST({max_abs:?} AS DOUBLE) THEN 'amount_out_of_range'
      WHEN amount < CAST(0 AS DOUBLE) THEN 'negative_amount'
      -- As in the reader: a row after the cutoff is after_as_of even when it repeats a key.
      WHEN t >= {end} THEN 'after_as_of'
      {dedup}
    END AS reason
  FROM typed
  -- Of the rows of a customer sharing a key, the least by these values is kept (the order-free
  -- rule of io::read::duplicate_rows); every later one repeats its predecessor's key.
  WINDOW w_dup AS (PARTITION BY customer_id ORDER BY key_kind ASC NULLS LAST, key_id ASC NULLS LAST,
    t ASC NULLS LAST, event_type ASC NULLS LAST, amount ASC NULLS LAST, channel ASC NULLS LAST,
    category ASC NULLS LAST)
)",
        customer = spec.column(Field::CustomerId, "STRING"),
        time = spec.column(Field::EventTime, "TIMESTAMP"),
        event_type = spec.column(Field::EventType, "STRING"),
        amount = spec.column(Field::Amount, "DOUBLE"),
        channel = spec.column(Field::Channel, "STRING"),
        category = spec.column(Field::Category, "STRING"),
        order_id = spec.column(Field::OrderId, "STRING"),
        event_id = spec.column(Field::EventId, "STRING"),
        min_t = MIN_TIME_US,
        max_t = MAX_TIME_US,
        end = spec.end_us(),
        max_future = spec.max_future_us.max(0),
        max_abs = spec.max_abs_amount,
    )
}

/// `churnclv sql rejects`: rows not used, counted by reason (`reason`, `rows`), as the
/// `rejected:` line of `churnclv features` at the same cutoff and horizon.
pub fn rejects_query(spec: &QuerySpec) -> String {
    format!(
        "-- churnclv {version}: rows of the view `events` not used by the features before {cutoff}{labels}, by reason.
{head}
SELECT reason, count(*) AS rows FROM checked WHERE reason IS NOT NULL GROUP BY reason
",
        version = env!("CARGO_PKG_VERSION"),
        cutoff = spec.cutoff,
        labels = labels_note(spec),
        head = checked(spec),
    )
}

fn labels_note(spec: &QuerySpec) -> String {
    match spec.label_horizon_days {
        Some(h) => format!(" and the labels of the {h} days after it"),
        None => String::new(),
    }
}

/// Per-customer aggregates: `(name, expression)` in the `agg` step.
fn aggregates(spec: &QuerySpec) -> Vec<(String, String)> {
    let c = spec.cutoff_us();
    let h = spec.horizon_us();
    let mut a: Vec<(String, String)> = vec![
        ("n_events".into(), "count(*) FILTER (WHERE b)".into()),
        (
            "purchase_days".into(),
            "count(*) FILTER (WHERE first_of_day)".into(),
        ),
        ("first_day".into(), "min(pday)".into()),
        ("last_day".into(), "max(pday)".into()),
        ("gap_sq".into(), "sum(gap * gap)".into()),
        (
            "last_purchase_t".into(),
            "max(t) FILTER (WHERE b AND kind = 'purchase')".into(),
        ),
        (
            "purchase_money".into(),
            "coalesce(sum(money) FILTER (WHERE b AND kind = 'purchase'), 0)".into(),
        ),
        (
            "refund_money".into(),
            "coalesce(sum(money) FILTER (WHERE b AND kind = 'refund'), 0)".into(),
        ),
        (
            "max_order".into(),
            "max(money) FILTER (WHERE b AND kind = 'purchase')".into(),
        ),
        // spend_through_day is non-decreasing (amounts are >= 0): its least value is the
        // first purchase day's total.
        (
            "first_day_spend".into(),
            "min(spend_through_day) FILTER (WHERE pday IS NOT NULL)".into(),
        ),
        ("first_t".into(), "min(t) FILTER (WHERE b)".into()),
        ("last_t".into(), "max(t) FILTER (WHERE b)".into()),
        (
            "active_days".into(),
            "size(collect_set(CASE WHEN b THEN day END))".into(),
        ),
        (
            "n_categories".into(),
            "size(collect_set(CASE WHEN b THEN category END))".into(),
        ),
        (
            "n_channels".into(),
            "size(collect_set(CASE WHEN b THEN channel END))".into(),
        ),
        (
            "cart_abandonments".into(),
            "count(*) FILTER (WHERE abandoned)".into(),
        ),
        (
            "last_abandoned_t".into(),
            "max(t) FILTER (WHERE abandoned)".into(),
        ),
        (
            "events_7d".into(),
            format!("count(*) FILTER (WHERE b AND t >= {})", c - 7 * DAY_US),
        ),
        (
            "events_30d".into(),
            format!("count(*) FILTER (WHERE b AND t >= {})", c - 30 * DAY_US),
        ),
        (
            "events_90d".into(),
            format!("count(*) FILTER (WHERE b AND t >= {})", c - 90 * DAY_US),
        ),
        (
            "events_60_30d".into(),
            format!(
                "count(*) FILTER (WHERE t >= {} AND t < {})",
                c - 60 * DAY_US,
                c - 30 * DAY_US
            ),
        ),
    ];
    for kind in EventKind::ALL {
        if kind == EventKind::Other {
            continue;
        }
        a.push((
            format!("n_{}", kind.as_str()),
            format!("count(*) FILTER (WHERE b AND kind = '{}')", kind.as_str()),
        ));
    }
    if spec.label_horizon_days.is_some() {
        let w = format!("t >= {c}");
        let p = format!("t >= {} AND b", c - h);
        a.extend([
            (
                "win_purchases".into(),
                format!("count(*) FILTER (WHERE {w} AND kind = 'purchase')"),
            ),
            (
                "win_days".into(),
                format!("size(collect_set(CASE WHEN {w} AND kind = 'purchase' THEN day END))"),
            ),
            (
                "win_net".into(),
                format!(
                    "coalesce(sum(money) FILTER (WHERE {w} AND kind = 'purchase'), 0) \
                     - coalesce(sum(money) FILTER (WHERE {w} AND kind = 'refund'), 0)"
                ),
            ),
            (
                "prior_net".into(),
                format!(
                    "coalesce(sum(money) FILTER (WHERE {p} AND kind = 'purchase'), 0) \
                     - coalesce(sum(money) FILTER (WHERE {p} AND kind = 'refund'), 0)"
                ),
            ),
        ]);
    }
    a
}

/// The SQL expression of each output column, over the `agg` step's names.
fn definition(name: &str, spec: &QuerySpec) -> Option<String> {
    let c = spec.cutoff_us();
    let cutoff_day = c.div_euclid(DAY_US);
    let days = |us: &str| format!("CAST({c} - {us} AS DOUBLE) / CAST({DAY_US} AS DOUBLE)");
    let money = |m: &str| format!("CAST({m} AS DOUBLE)");
    let count = |n: &str| format!("CAST({n} AS BIGINT)");
    let repeat_days = "NULLIF(purchase_days - 1, 0)";
    Some(match name {
        "customer_id" => "customer_id".into(),
        "n_events" | "purchase_days" | "active_days" | "cart_abandonments" | "n_categories"
        | "n_channels" | "events_7d" | "events_30d" | "events_90d" => count(name),
        "n_purchases" => count("n_purchase"),
        "frequency" => count("greatest(purchase_days - 1, 0)"),
        "recency_days" => days("last_purchase_t"),
        "t_x_days" => {
            "CAST(CASE WHEN purchase_days > 0 THEN last_day - first_day ELSE 0 END AS DOUBLE)"
                .into()
        }
        "T_days" => format!(
            "CAST(CASE WHEN purchase_days > 0 THEN {} - first_day ELSE 0 END AS DOUBLE)",
            cutoff_day - 1
        ),
        "monetary_total" => money("purchase_money - refund_money"),
        "avg_order_value" => format!(
            "{} / CAST(NULLIF(n_purchase, 0) AS DOUBLE)",
            money("purchase_money")
        ),
        "max_order_value" => money("max_order"),
        "repeat_spend_mean" => format!(
            "{} / CAST({repeat_days} AS DOUBLE)",
            money("purchase_money - first_day_spend")
        ),
        "tenure_days" => days("first_t"),
        "days_since_cart_abandonment" => days("last_abandoned_t"),
        "n_page_views" => count("n_page_view"),
        "n_sessions" => count("n_session_start"),
        "n_add_to_cart" => count("n_add_to_cart"),
        "n_checkout_starts" => count("n_checkout_start"),
        "n_support_tickets" => count("n_support_ticket"),
        "n_email_opens" => count("n_email_open"),
        "n_email_clicks" => count("n_email_click"),
        "n_sms_clicks" => count("n_sms_click"),
        "n_reviews" => count("n_review"),
        "n_referrals" => count("n_referral"),
        "n_community_posts" => count("n_community_post"),
        "n_refunds" => count("n_refund"),
        "refund_amount" => money("refund_money"),
        // Micro-units over micro-units, as the Rust ratio; 0 without purchase amount.
        "refund_ratio" => "coalesce(CAST(refund_money * 1000000 AS DOUBLE) \
             / NULLIF(CAST(purchase_money * 1000000 AS DOUBLE), CAST(0 AS DOUBLE)), CAST(0 AS DOUBLE))"
            .into(),
        "days_since_last_event" => days("last_t"),
        "ipt_mean_days" => {
            format!("CAST(last_day - first_day AS DOUBLE) / CAST({repeat_days} AS DOUBLE)")
        }
        // Population spread of the n gaps g between purchase days, in integers until the end:
        // sum((g - mean)^2) / n = (n * sum(g^2) - (sum g)^2) / n^2, with sum g = last - first.
        "ipt_std_days" => format!(
            "sqrt(CAST((purchase_days - 1) * gap_sq - (last_day - first_day) * (last_day - first_day) AS DOUBLE) \
             / CAST({repeat_days} * {repeat_days} AS DOUBLE))"
        ),
        "trend_30d" => "CAST(events_30d + 1 AS DOUBLE) / CAST(events_60_30d + 1 AS DOUBLE)".into(),
        "churned" => "win_purchases = 0".into(),
        "window_purchase_days" => count("win_days"),
        "window_net_spend" => money("win_net"),
        "prior_window_net_spend" => money("prior_net"),
        _ => return None,
    })
}

/// `churnclv sql features`: the feature table at `spec.cutoff` (labelled with
/// `spec.label_horizon_days`), column for column as `churnclv features` writes it.
pub fn features_query(spec: &QuerySpec) -> Result<String, SqlError> {
    let c = spec.cutoff_us();
    let schema = match spec.label_horizon_days {
        Some(_) => labelled_schema(),
        None => features_schema(),
    };
    let mut select = Vec::new();
    for f in schema.fields() {
        let expr =
            definition(f.name(), spec).ok_or_else(|| SqlError::Undefined(f.name().clone()))?;
        select.push(format!("  {expr} AS {}", ident(f.name())));
    }
    let agg = aggregates(spec)
        .into_iter()
        .map(|(n, e)| format!("    {e} AS {n}"))
        .collect::<Vec<_>>()
        .join(",\n");
    Ok(format!(
        "-- churnclv {version}: the feature table before {cutoff}{labels} (docs/features.md),
-- from the view `events`; run with spark.sql.session.timeZone=UTC. Rows are not sorted.
{head},
used AS (
  SELECT customer_id, t, kind, channel, category,
    t < {c} AS b,
    CAST(floor(t / {DAY_US}) AS BIGINT) AS day,
    CASE WHEN kind IN ('purchase', 'refund') THEN coalesce(CAST(amount AS DECIMAL(18,6)), CAST(0 AS DECIMAL(18,6)))
         ELSE CAST(0 AS DECIMAL(18,6)) END AS money
  FROM checked WHERE reason IS NULL
),
marked AS (
  SELECT *,
    CASE WHEN b AND kind = 'purchase' THEN day END AS pday,
    -- The next purchase before the cutoff at or after t: a running min over time descending
    -- (RANGE: rows at the same time are peers, so a purchase at t counts).
    min(CASE WHEN b AND kind = 'purchase' THEN t END) OVER (PARTITION BY customer_id ORDER BY t DESC
      RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS next_purchase_t
  FROM used
),
days AS (
  SELECT *,
    LAG(pday) OVER (PARTITION BY customer_id ORDER BY pday ASC NULLS LAST, t ASC) AS prev_pday,
    sum(CASE WHEN pday IS NOT NULL THEN money END) OVER (PARTITION BY customer_id
      ORDER BY pday ASC NULLS LAST RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS spend_through_day
  FROM marked
),
flags AS (
  SELECT *,
    coalesce(pday IS NOT NULL AND (prev_pday IS NULL OR prev_pday <> pday), false) AS first_of_day,
    CASE WHEN pday IS NOT NULL AND prev_pday IS NOT NULL AND prev_pday <> pday THEN pday - prev_pday END AS gap,
    coalesce(b AND kind = 'add_to_cart' AND (next_purchase_t IS NULL OR next_purchase_t >= t + {DAY_US}), false) AS abandoned
  FROM days
),
agg AS (
  SELECT customer_id,
{agg}
  FROM flags
  GROUP BY customer_id
)
SELECT
{select}
FROM agg
WHERE n_events > 0
",
        version = env!("CARGO_PKG_VERSION"),
        cutoff = spec.cutoff,
        labels = labels_note(spec),
        head = checked(spec),
        select = select.join(",\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(h: Option<u32>) -> QuerySpec {
        let d = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap_or_default();
        QuerySpec::new(&Config::default(), &[], d, h).expect("spec")
    }

    #[test]
    fn every_column_of_both_tables_has_a_definition() {
        for h in [None, Some(90)] {
            let q = features_query(&spec(h)).expect("query");
            let schema = if h.is_some() {
                labelled_schema()
            } else {
                features_schema()
            };
            for f in schema.fields() {
                assert!(q.contains(&format!(" AS `{}`", f.name())), "{}", f.name());
            }
        }
    }

    #[test]
    fn the_query_keeps_to_the_portable_shape() {
        let q = features_query(&spec(Some(90))).expect("query");
        assert!(!q.contains("UNBOUNDED FOLLOWING"));
        assert!(!q.to_uppercase().contains("COUNT(DISTINCT"));
        assert!(!q.contains("ORDER BY customer_id"));
        assert!(!q.to_uppercase().contains(" JOIN "));
        assert_eq!(q.matches("FROM events").count(), 1);
    }

    #[test]
    fn absent_columns_are_checked() {
        let d = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap_or_default();
        let cfg = Config::default();
        assert_eq!(
            QuerySpec::new(&cfg, &["customer_id".into()], d, None).err(),
            Some(SqlError::RequiredAbsent("customer_id".into()))
        );
        assert_eq!(
            QuerySpec::new(&cfg, &["qty".into()], d, None).err(),
            Some(SqlError::UnknownColumn("qty".into()))
        );
        let s = QuerySpec::new(&cfg, &["amount".into()], d, None).expect("spec");
        let q = features_query(&s).expect("query");
        assert!(q.contains("CAST(NULL AS DOUBLE) AS amount"));
    }

    #[test]
    fn names_and_aliases_are_quoted() {
        let mut cfg = Config::default();
        cfg.columns.customer_id = "user`id".into();
        cfg.event_types.insert("it's".into(), "purchase".into());
        let d = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap_or_default();
        let q = features_query(&QuerySpec::new(&cfg, &[], d, None).expect("spec")).expect("q");
        assert!(q.contains("CAST(`user``id` AS STRING)"));
        assert!(q.contains("WHEN 'it\\'s' THEN 'purchase'"));
    }
}
