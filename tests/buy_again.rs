//! The BTYD buy-again score as a churn champion (issue 14, point 2): in a purchases-only world
//! drawn from a known BG/NBD process, where "no purchase in H" is exactly what BG/NBD models,
//! it has the lowest validation log loss of the three challengers, scores the customers with
//! its reasons, and `score` with the saved model reproduces the run's probabilities and
//! reasons exactly.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use serde_json::Value;

use churnclv::models::buy_again;
use common::bin;

const AS_OF: &str = "2025-07-01";
/// BG/NBD parameters of the world (days): λ ~ Gamma(r, α), p ~ Beta(a, b).
const PARAMS: [f64; 4] = [0.7, 35.0, 1.2, 3.0];

/// `customers` buyers whose first purchase falls in the 400 days from 760 days before as-of,
/// then purchase days from BG/NBD (a purchase at noon; after each repeat purchase a drop-out
/// coin with probability p), with a random amount; nothing but purchases.
fn bgnbd_world(path: &Path, customers: usize, seed: u64) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let gamma = Gamma::new(PARAMS[0], 1.0 / PARAMS[1]).expect("gamma");
    let beta = Beta::new(PARAMS[2], PARAMS[3]).expect("beta");
    let end = common::ts(AS_OF, 0);
    let day = 86_400_000_000i64;
    let (mut ids, mut times, mut amounts) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..customers {
        let (lambda, p): (f64, f64) = (gamma.sample(&mut rng), beta.sample(&mut rng));
        let exp = Exp::new(lambda).expect("rate");
        let first = rng.gen_range(360..760i64);
        let mut t = 0.0f64;
        let mut purchase = |offset_days: i64, rng: &mut rand_chacha::ChaCha8Rng| {
            ids.push(format!("c{c:05}"));
            times.push(end - (first - offset_days) * day + 12 * 3_600_000_000);
            amounts.push(10.0 + f64::from(rng.gen_range(0..4000u32)) / 100.0);
        };
        purchase(0, &mut rng);
        loop {
            t += exp.sample(&mut rng);
            // Purchases up to the day before as-of (labels of the as-of window are not needed).
            if t.floor() as i64 >= first {
                break;
            }
            purchase(t.floor() as i64, &mut rng);
            if rng.gen::<f64>() < p {
                break;
            }
        }
    }
    let n = ids.len();
    common::write(
        path,
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(&ids)) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            ),
            (
                "event_type",
                Arc::new(StringArray::from_iter_values(vec!["purchase"; n])),
            ),
            ("amount", Arc::new(Float64Array::from(amounts))),
        ],
    )
}

struct Fixture {
    dir: tempfile::TempDir,
    events: PathBuf,
    out: PathBuf,
}

/// One run on 12,000 BG/NBD customers (all bought before tv = as-of − 270 days: 12,000
/// validation customers), H = 90 days.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
        let events = bgnbd_world(&dir.path().join("events.parquet"), 12_000, 3);
        let out = dir.path().join("run");
        common::run_90d(&events, &out, AS_OF, &[]);
        Fixture { dir, events, out }
    })
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// (customer, churn_probability, churn_reason_1..3) per row of a scores table.
type Row = (String, Option<f64>, [Option<String>; 3]);

fn rows(out: &Path) -> Vec<Row> {
    let mut all = Vec::new();
    for b in common::read_batches(&common::table_file(out, "scores", AS_OF)) {
        let id = b
            .column_by_name("customer_id")
            .expect("id")
            .as_string::<i32>()
            .clone();
        let p = b
            .column_by_name("churn_probability")
            .expect("p")
            .as_primitive::<Float64Type>()
            .clone();
        let reason = |k: usize| {
            b.column_by_name(&format!("churn_reason_{k}"))
                .expect("reason")
                .as_string::<i32>()
                .clone()
        };
        let r = [reason(1), reason(2), reason(3)];
        for i in 0..b.num_rows() {
            let s = |a: &StringArray| a.is_valid(i).then(|| a.value(i).to_string());
            all.push((
                id.value(i).to_string(),
                p.is_valid(i).then(|| p.value(i)),
                [s(&r[0]), s(&r[1]), s(&r[2])],
            ));
        }
    }
    all
}

#[test]
fn btyd_buy_again_wins_in_a_bgnbd_world_and_scores_with_its_reasons() {
    let f = fixture();
    let run = common::run_dir(&f.out, AS_OF);
    let m = json(&run.join("metrics.json"));
    let churn = &m["churn"];
    let ch = churn["challengers"].as_array().expect("challengers");
    let names: Vec<&str> = ch.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["logistic", "boosted", "btyd_buy_again"]);
    let loss = |i: usize| ch[i]["validation_log_loss"].as_f64().expect("validation");
    let (logistic, boosted, btyd) = (loss(0), loss(1), loss(2));
    assert!(ch[2].get("not_eligible").is_none(), "{}", ch[2]);
    eprintln!("validation log loss: logistic {logistic}, boosted {boosted}, btyd {btyd}");
    assert!(
        btyd < logistic && btyd < boosted,
        "{btyd} {logistic} {boosted}"
    );
    assert_eq!(churn["champion"]["name"], "btyd_buy_again");
    assert_eq!(churn["champion"]["chosen_by"], "validation_log_loss");
    assert!(m["evaluation"]["train_customers"].as_u64() >= Some(5000));

    // The saved champion: the reasons' reference beside the BG/NBD value model.
    let model = json(&run.join("model.json"));
    assert_eq!(model["value"]["transactions"]["kind"], "BgNbd");
    let reference = &model["churn"]["btyd_buy_again"]["reference"];
    for k in ["frequency", "recency_days", "t_days"] {
        assert!(reference[k].as_f64().is_some_and(|v| v >= 0.0), "{k}");
    }
    assert!(model["churn"]["boosted"].is_null());

    // Every scored probability is the final BG/NBD fit's P(no purchase in 90 days), and the
    // reasons name BG/NBD's inputs only.
    let scored = rows(&f.out);
    assert_eq!(scored.len(), 12_000);
    let params: Vec<f64> = ["r", "alpha", "a", "b"]
        .iter()
        .map(|k| {
            model["value"]["transactions"]["params"][k]
                .as_f64()
                .expect(k)
        })
        .collect();
    let t = churnclv::models::btyd::FittedTransactions::from_params(
        churnclv::models::btyd::ModelKind::BgNbd,
        [params[0], params[1], params[2], params[3]],
    )
    .expect("params");
    let features = common::read_batches(&common::table_file(&f.out, "features", AS_OF));
    let saved: buy_again::BuyAgainChurn =
        serde_json::from_value(model["churn"]["btyd_buy_again"].clone()).expect("saved");
    let mut reasons = [0usize; 4];
    let by_id: std::collections::HashMap<&str, &Row> =
        scored.iter().map(|r| (r.0.as_str(), r)).collect();
    let mut checked = 0;
    for b in &features {
        let col = |k: &str| b.column_by_name(k).unwrap_or_else(|| panic!("{k}")).clone();
        let (id, x, t_x, t_days) = (
            col("customer_id"),
            col("frequency"),
            col("t_x_days"),
            col("T_days"),
        );
        let id = id.as_string::<i32>();
        let x = x.as_primitive::<arrow_array::types::Int64Type>();
        let (t_x, t_days) = (
            t_x.as_primitive::<Float64Type>(),
            t_days.as_primitive::<Float64Type>(),
        );
        for i in 0..b.num_rows() {
            let row = by_id[id.value(i)];
            let c = churnclv::models::btyd::Customer::new(
                x.value(i) as f64,
                t_x.value(i),
                t_days.value(i).max(1e-6),
            );
            let p = t.p_no_purchase(&c, 90.0).expect("bgnbd");
            assert_eq!(row.1, Some(p), "{}", row.0);
            // The reasons: inputs with a positive logit difference to the saved medians,
            // largest first (recomputed here from the saved reference).
            let v = churnclv::models::value::ValueInputs {
                frequency: c.x,
                t_x_days: c.t_x,
                t_days: t_days.value(i),
                repeat_spend_mean: None,
                avg_order_value: None,
            };
            let contributions = saved.contributions(&t, &v, 90.0).expect("bgnbd");
            let names = buy_again::INPUTS.map(String::from);
            let want = churnclv::segment::churn_reasons(&names, &contributions)
                .map(|r| r.map(String::from));
            assert_eq!(row.2, want, "{}", row.0);
            reasons[names
                .iter()
                .position(|n| Some(n) == row.2[0].as_ref())
                .unwrap_or(3)] += 1;
            checked += 1;
        }
    }
    assert_eq!(checked, 12_000);
    eprintln!("first reasons (frequency, recency_days, t_days, none): {reasons:?}");
    // Every input is somebody's first reason, and some customers have none.
    assert!(reasons.iter().all(|&k| k > 100), "{reasons:?}");
    assert!(scored.iter().filter(|r| r.2[0].is_some()).count() > 1000);
}

#[test]
fn score_with_the_saved_btyd_champion_reproduces_the_run() {
    let f = fixture();
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let model = common::run_dir(&f.out, AS_OF).join("model.json");
    let scored = dir.path().join("scored");
    bin()
        .args(["score", "--quiet", "--as-of", AS_OF, "--events"])
        .arg(&f.events)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&scored)
        .assert()
        .success();
    let (ran, again) = (rows(&f.out), rows(&scored));
    assert_eq!(ran.len(), 12_000);
    // Bit for bit: probabilities and reasons.
    let bits = |r: &[Row]| -> Vec<(String, Option<u64>, [Option<String>; 3])> {
        r.iter()
            .map(|(i, p, why)| (i.clone(), p.map(f64::to_bits), why.clone()))
            .collect()
    };
    assert_eq!(bits(&ran), bits(&again));
}

/// `score` with `model` written in `dir` exits 2 with `invalid model: {what}` naming the file,
/// and publishes nothing.
fn refused(model: &Value, dir: &Path, what: &str) {
    let f = fixture();
    let path = dir.join("model.json");
    std::fs::write(&path, serde_json::to_string(model).expect("json")).expect("write");
    let out = dir.join("scored");
    let assert = bin()
        .args(["score", "--quiet", "--as-of", AS_OF, "--events"])
        .arg(&f.events)
        .arg("--model")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let want = format!("churnclv: error: {}: invalid model: {what}", path.display());
    assert!(stderr.starts_with(&want), "want {want}\ngot  {stderr}");
    assert!(!common::published_any(&out));
}

#[test]
fn a_saved_btyd_champion_with_a_pareto_value_model_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let mut model = json(&common::run_dir(&f.out, AS_OF).join("model.json"));
    let p = model["value"]["transactions"]["params"].clone();
    model["value"]["transactions"]["kind"] = serde_json::json!("ParetoNbd");
    model["value"]["transactions"]["params"] =
        serde_json::json!({"r": p["r"], "alpha": p["alpha"], "s": 1.0, "beta": 10.0});
    model["value"]["transactions"]["std_errors"] = Value::Null;
    refused(
        &model,
        dir.path(),
        "churn.btyd_buy_again: needs value.transactions of kind bgnbd or mbgnbd (P(no purchase) in closed form) (got pnbd)",
    );
}

#[test]
fn a_saved_model_with_two_churn_champions_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let mut model = json(&common::run_dir(&f.out, AS_OF).join("model.json"));
    // A valid (if empty) boosted champion beside the buy-again one: which would score?
    model["churn"]["boosted"] = serde_json::json!({
        "ensemble": {
            "objective": {"name": "logistic"},
            "features": churnclv::models::churn::FEATURES,
            "base_margin": 0.0,
            "trees": []
        },
        "platt": null
    });
    refused(
        &model,
        dir.path(),
        "churn.btyd_buy_again: must be absent when `boosted` is set (one champion scores) (got both set)",
    );
}

/// With `btyd.model = "pnbd"` the buy-again score has no closed form: it does not compete, the
/// entry says why, and the booster or the logistic model scores.
#[test]
fn pareto_nbd_runs_keep_the_buy_again_score_out_of_the_contest() {
    let f = fixture();
    let dir = tempfile::tempdir_in(f.dir.path()).expect("tmp");
    let config = dir.path().join("churnclv.toml");
    std::fs::write(&config, "[btyd]\nmodel = \"pnbd\"\n").expect("config");
    let out = dir.path().join("run");
    let config_arg = config.to_string_lossy().to_string();
    common::run_90d(&f.events, &out, AS_OF, &["--config", &config_arg]);
    let m = json(&common::run_dir(&out, AS_OF).join("metrics.json"));
    let buy_again = &m["churn"]["challengers"][2];
    assert_eq!(buy_again["name"], "btyd_buy_again");
    assert_eq!(
        buy_again["not_eligible"],
        "pnbd has no closed-form P(no purchase) in this build"
    );
    assert!(buy_again["validation_log_loss"].is_null());
    assert_eq!(m["churn"]["champion"]["name"], "boosted");
    let model = json(&common::run_dir(&out, AS_OF).join("model.json"));
    assert!(model["churn"].get("btyd_buy_again").is_none());
}
