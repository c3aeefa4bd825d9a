"""`make bench`, the Python stack: the job a data scientist would write for the same file, timed
beside `churnclv run` by bench/whole_run.py. DuckDB features at the training cutoff t1 =
as_of − H (labels: no purchase in [t1, as_of)) and at as_of; sklearn LogisticRegression on
log1p-standardised features; lifetimes BG/NBD + Gamma-Gamma fitted on the history before as_of;
90-day CLV (expected purchases × expected order value) for every customer; scores to Parquet.
Prints a JSON line with the phase times."""
import argparse
import json
import time
from datetime import date, timedelta

T0 = time.perf_counter()
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

IMPORTS = time.perf_counter() - T0

FEATURES = ["recency_days", "frequency", "monetary_total", "avg_order_value", "tenure_days",
            "t_days", "n_events", "days_since_last_event", "events_30d", "events_90d",
            "n_sessions", "n_add_to_cart", "n_support_tickets", "n_email_opens",
            "n_refunds"]


def features(con, events, cutoff, horizon):
    """Per buyer, from the events before `cutoff`; with `horizon`, labelled `churned` (no
    purchase in [cutoff, cutoff + horizon))."""
    # Times as integer µs and days (timestamptz arithmetic goes through the time-zone library,
    # which made this query several times slower).
    cday = (cutoff - date(1970, 1, 1)).days
    c = cday * 86400000000
    t = "epoch_us(event_time)"
    day = f"({t} // 86400000000)"
    df = con.execute(f"""
SELECT customer_id,
       ({c} - max({t}) FILTER (WHERE event_type = 'purchase')) / 86400e6 AS recency_days,
       count(DISTINCT {day}) FILTER (WHERE event_type = 'purchase') - 1 AS frequency,
       coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS monetary_total,
       coalesce(avg(amount) FILTER (WHERE event_type = 'purchase'), 0) AS avg_order_value,
       ({c} - min({t})) / 86400e6 AS tenure_days,
       ({c} - min({t}) FILTER (WHERE event_type = 'purchase')) / 86400e6 AS t_days,
       count(*) AS n_events,
       ({c} - max({t})) / 86400e6 AS days_since_last_event,
       count(*) FILTER (WHERE {t} >= {c} - 30 * 86400000000) AS events_30d,
       count(*) FILTER (WHERE {t} >= {c} - 90 * 86400000000) AS events_90d,
       count(*) FILTER (WHERE event_type = 'session_start') AS n_sessions,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS n_add_to_cart,
       count(*) FILTER (WHERE event_type = 'support_ticket') AS n_support_tickets,
       count(*) FILTER (WHERE event_type = 'email_open') AS n_email_opens,
       count(*) FILTER (WHERE event_type = 'refund') AS n_refunds,
       max({day}) FILTER (WHERE event_type = 'purchase')
         - min({day}) FILTER (WHERE event_type = 'purchase') AS t_x_days,
       {cday} - min({day}) FILTER (WHERE event_type = 'purchase') AS age_days
FROM read_parquet('{events}')
WHERE {t} < {c}
GROUP BY customer_id
HAVING count(*) FILTER (WHERE event_type = 'purchase') > 0
""").df()
    if horizon:
        end = c + horizon * 86400000000
        buyers = con.execute(f"""
SELECT DISTINCT customer_id FROM read_parquet('{events}')
WHERE event_type = 'purchase' AND {t} >= {c} AND {t} < {end}
""").df()
        df["churned"] = ~df.customer_id.isin(buyers.customer_id)
    return df


def design(df, scaler=None):
    x = np.log1p(np.abs(df[FEATURES].to_numpy(dtype=float))) * np.sign(df[FEATURES].to_numpy(dtype=float))
    scaler = scaler or StandardScaler().fit(x)
    return scaler.transform(x), scaler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", required=True)
    ap.add_argument("--as-of", required=True, type=date.fromisoformat)
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    times = {"imports": IMPORTS}
    t1 = a.as_of - timedelta(days=a.horizon_days)
    con = duckdb.connect()

    t = time.perf_counter()
    train = features(con, a.events, t1, a.horizon_days)
    now = features(con, a.events, a.as_of, None)
    times["features"] = time.perf_counter() - t

    t = time.perf_counter()
    x, scaler = design(train)
    churn = LogisticRegression(max_iter=1000).fit(x, train.churned.to_numpy())
    now["churn_probability"] = churn.predict_proba(design(now, scaler)[0])[:, 1]
    times["churn"] = time.perf_counter() - t

    t = time.perf_counter()
    # BTYD on days: repeat purchase days, first to last purchase day, first purchase to as_of.
    keep = now.age_days > 0
    f, t_x, T = now.frequency.astype(float), now.t_x_days.astype(float), now.age_days.astype(float)
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(f[keep], t_x[keep], T[keep])
    repeat = keep & (now.frequency > 0) & (now.avg_order_value > 0)
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(now.frequency[repeat], now.avg_order_value[repeat])
    purchases = bgf.conditional_expected_number_of_purchases_up_to_time(a.horizon_days, f, t_x, T)
    aov = ggf.conditional_expected_average_profit(now.frequency, now.avg_order_value.clip(lower=1e-9))
    now["clv"] = np.where(keep, purchases * aov, 0.0)
    times["btyd_clv"] = time.perf_counter() - t

    t = time.perf_counter()
    con.register("scores", now[["customer_id", "churn_probability", "clv"]])
    con.execute(f"COPY scores TO '{a.out}' (FORMAT parquet)")
    times["write"] = time.perf_counter() - t
    times["customers"] = len(now)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
