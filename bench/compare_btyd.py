"""`make bench`, BTYD fits: churnclv vs Python lifetimes (pinned in bench/requirements.txt) on
the same customer summaries, in one run. Prints fit times, speed-ups and how far apart the
fitted parameters are."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

MODELS = {"bgnbd": BetaGeoFitter, "pnbd": ParetoNBDFitter, "gg": GammaGammaFitter}
NAMES = {"v": "gamma"}  # lifetimes calls Gamma-Gamma's scale v


def churnclv_fit(binary, events, cutoff, model, unit, repeats):
    best, out = None, None
    for _ in range(repeats):
        res = subprocess.run([binary, "--quiet", "btyd", "--events", events, "--cutoff", cutoff,
                              "--model", model, "--time-unit", unit], check=True, capture_output=True)
        out = json.loads(res.stdout)
        best = out["fit_seconds"] if best is None else min(best, out["fit_seconds"])
    return best, out


def summary(binary, events, cutoff, scale):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.parquet")
        subprocess.run([binary, "--quiet", "features", "--events", events, "--as-of", cutoff, "--out", path],
                       check=True, stdout=subprocess.DEVNULL)
        t = pq.read_table(path, columns=["n_purchases", "frequency", "t_x_days", "T_days", "repeat_spend_mean"]).to_pandas()
    t = t[(t.n_purchases > 0) & (t.T_days > 0)]
    return t.frequency.astype(float), t.t_x_days / scale, t.T_days / scale, t.repeat_spend_mean


def lifetimes_fit(model, s, repeats):
    x, t_x, T, zbar = s
    best, fitter = None, None
    for _ in range(repeats):
        fitter = MODELS[model]()
        start = time.perf_counter()
        if model == "gg":
            keep = (x > 0) & (zbar > 0)
            fitter.fit(x[keep], zbar[keep])
        else:
            fitter.fit(x, t_x, T)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    return best, {NAMES.get(k, k): v for k, v in fitter.params_.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dataset", action="append", required=True,
                    help="label:events:cutoff:unit (unit day or week)")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    print(f"{'data':<16}{'model':<7}{'customers':>10}{'churnclv s':>12}{'lifetimes s':>13}{'speed-up':>10}{'max param diff':>16}")
    for spec in a.dataset:
        label, events, cutoff, unit = spec.split(":")
        s = summary(a.bin, events, cutoff, 7.0 if unit == "week" else 1.0)
        for model in ["bgnbd", "pnbd", "gg"]:
            ours_s, ours = churnclv_fit(a.bin, events, cutoff, model, unit, a.repeats)
            theirs_s, theirs = lifetimes_fit(model, s, a.repeats)
            diff = max(abs(ours["params"][k] / v - 1.0) for k, v in theirs.items())
            print(f"{label:<16}{model:<7}{ours['customers']:>10}{ours_s:>12.4f}{theirs_s:>13.4f}"
                  f"{theirs_s / ours_s:>9.1f}x{diff:>15.2%}")
            sys.stdout.flush()
    print("churnclv: fit_seconds reported by `churnclv btyd` (fit + standard errors); lifetimes: "
          "fitter.fit() wall time; best of", a.repeats)


if __name__ == "__main__":
    main()
