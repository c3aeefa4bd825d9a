"""`make bench-booster`: the boosted challengers' work of one `churnclv run` done by LightGBM, the
usual peer, on the same customers — what issue 12's time budget has to hold for issue 14's
challengers at a well-known library's speed.

churnclv's run fits each booster three times (docs/models.md): on the tv table early-stopped on
the t0 table (the rounds), then refitted with those rounds on t0 (out-of-time evaluation) and
on t1 (the model that scores); the churn booster with a logistic loss, the spend booster with a
Tweedie loss.

This script builds the same labelled tables with `churnclv features` (buyers, the 17 model
inputs) and times LightGBM doing those six fits with churnclv's hyperparameters (learning rate
0.3, depth 4, 64 bins, 100 rows a leaf, L2 1, half the rows a round, patience 10; the spend
booster stops on a fifth of its own window), on 2 threads: wall and process CPU per fit, then
the totals as one JSON line."""
import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import date, timedelta

import lightgbm as lgb
import pyarrow.parquet as pq

INPUTS = ["recency_days", "frequency", "monetary_total", "avg_order_value", "tenure_days",
          "T_days", "n_events", "days_since_last_event", "events_30d", "events_90d",
          "trend_30d", "active_days", "n_sessions", "cart_abandonments", "n_support_tickets",
          "n_email_opens", "refund_ratio"]

PARAMS = dict(learning_rate=0.3, max_depth=4, num_leaves=16, min_data_in_leaf=100,
              lambda_l2=1.0, max_bin=64, bagging_fraction=0.5, bagging_freq=1,
              num_threads=2, verbose=-1, seed=1)


def table(binary, events, cutoff, horizon, folder):
    """The labelled feature table at `cutoff`: (model inputs, churned, window spend) of buyers."""
    out = os.path.join(folder, f"{cutoff}.parquet")
    subprocess.run([binary, "features", "--events", events, "--as-of", str(cutoff),
                    "--label-horizon", f"{horizon}d", "--out", out, "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    t = pq.read_table(out).to_pandas()
    t = t[t.n_purchases > 0]
    x = t[INPUTS].astype("float64").fillna(0.0).to_numpy()
    return x, t.churned.astype("float64").to_numpy(), t.window_net_spend.clip(lower=0).to_numpy()


def fit(params, x, y, rounds, stop_on=None):
    """One fit, timed (binning included, as churnclv's fit bins its inputs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    data = lgb.Dataset(x, y, params={"max_bin": 64})
    extra = {}
    if stop_on is not None:
        extra = dict(valid_sets=[lgb.Dataset(stop_on[0], stop_on[1], reference=data)],
                     callbacks=[lgb.early_stopping(10, verbose=False)])
    booster = lgb.train(params, data, num_boost_round=rounds, **extra)
    return booster, time.perf_counter() - wall, time.process_time() - cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--as-of", default="2025-12-31", type=date.fromisoformat)
    ap.add_argument("--horizon", default=90, type=int)
    a = ap.parse_args()
    h = timedelta(days=a.horizon)
    tv, t0, t1 = a.as_of - 3 * h, a.as_of - 2 * h, a.as_of - h
    with tempfile.TemporaryDirectory() as folder:
        tables = [table(a.bin, a.events, c, a.horizon, folder) for c in (tv, t0, t1)]
    result = {"lightgbm": lgb.__version__, "customers": [len(t[1]) for t in tables]}
    (xv, cv, sv), (x0, c0, s0), (x1, c1, s1) = tables
    # The churn booster's rounds: fitted on tv, stopped on t0. The spend booster's: fitted on
    # four fifths of tv's buyers, stopped on every fifth (docs/models.md).
    keep = [i % 5 != 0 for i in range(len(sv))]
    held = [not k for k in keep]
    plans = {
        "churn": (dict(objective="binary"), (xv, cv, (x0, c0), 300), ((x0, c0), (x1, c1))),
        "spend": (dict(objective="tweedie", tweedie_variance_power=1.5),
                  (xv[keep], sv[keep], (xv[held], sv[held]), 500), ((x0, s0), (x1, s1))),
    }
    for name, (objective, (x, y, stop_on, most), refits) in plans.items():
        params = dict(PARAMS, **objective)
        chosen, wall, cpu = fit(params, x, y, most, stop_on)
        rounds = chosen.best_iteration or most
        fits = [(wall, cpu)]
        for x, y in refits:
            _, wall, cpu = fit(params, x, y, rounds)
            fits.append((wall, cpu))
        result[name] = {"rounds": rounds,
                        "wall_s": [round(w, 3) for w, _ in fits],
                        "cpu_s": [round(c, 3) for _, c in fits]}
    result["total_wall_s"] = round(sum(sum(result[n]["wall_s"]) for n in ("churn", "spend")), 3)
    result["total_cpu_s"] = round(sum(sum(result[n]["cpu_s"]) for n in ("churn", "spend")), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
