//! The out-of-time evaluation of the train stage: the churn model fitted at `t0` and
//! evaluated at `t1` beside the recency baseline and the challengers (or the customer-split
//! fallback), the BTYD holdout evaluation, and the buy-again score's validation log loss.

use super::*;

fn rate(l: &[bool]) -> f64 {
    if l.is_empty() {
        0.0
    } else {
        l.iter().filter(|&&x| x).count() as f64 / l.len() as f64
    }
}

/// How an evaluation splits time: its scheme, the training window (features before the
/// first date, labels until the second) and the evaluation window, and why a fallback was used.
struct Scheme {
    name: &'static str,
    train: (NaiveDate, NaiveDate),
    eval: (NaiveDate, NaiveDate),
    fallback_reason: Option<String>,
}

/// The churn model fitted on `train` and evaluated on `eval` beside the recency baseline, and
/// the supervised spend model (on the same design) beside the "next H = last H" baseline.
fn fit_and_score(
    params: ChurnParams,
    train: Sample,
    eval: &Sample,
    scheme: Scheme,
    selection: &ValueSelection,
    booster: &BoostSelection,
) -> Result<Evaluation> {
    let window = window_name(scheme.train.0, scheme.train.1);
    let what = if scheme.fallback_reason.is_some() {
        "customer split"
    } else {
        "out of time"
    };
    if train.is_empty() {
        return Err(ModelError::Empty { window }.into());
    }
    let (train_customers, train_churn_rate) = (train.len(), rate(&train.churned));
    // The boosted challenger and the linear models (churn, spend) share no state: they are
    // fitted side by side, the design standardising a copy of the inputs the booster reads.
    // One design: the churn and spend models share its scaling, so the evaluation rows are
    // standardised once for both. Errors in the order of the fits: booster, then design.
    let (boosted, linear) = rayon::join(
        || challengers::fit_boosted(booster, &train.x, &train.churned),
        || -> Result<_> {
            let design = Design::from_logged(train.x.clone())
                .with_context(|| format!("churn model ({what})"))?;
            let model = ChurnModel::fit_design(params, &design, &train.churned, &window, None)
                .with_context(|| format!("churn model ({what})"))?;
            let z = design.standardise_logged(&eval.x)?;
            // Every supervised spend model on the same design; the Poisson GLM is "the" spend
            // model reported as `value.model` (its fitted total is the training window's,
            // docs/models.md).
            let value_challengers =
                value_select::out_of_time(&design, &train.spend, &z, &eval.spend, selection);
            Ok((model, z, value_challengers))
        },
    );
    let boosted = boosted.map_err(boost_error)?;
    let (model, z, value_challengers) = linear?;
    drop(train);
    let boosted_p: Vec<f64> = boosted
        .ensemble
        .margins(&eval.x)
        .into_iter()
        .map(|m| boosted.probability_of_margin(m))
        .collect();
    // (log1p_ols when the GLM could not fit, e.g. no positive spend in the window: warned.)
    let value_model = [value_select::Kind::PoissonGlm, value_select::Kind::Log1pOls]
        .iter()
        .find_map(|k| {
            value_challengers
                .iter()
                .find(|c| c.metrics.name == k.name())
        })
        .map(|c| c.metrics.clone())
        .ok_or_else(|| {
            ModelError::Invalid("spend model: neither the Poisson GLM nor log1p OLS fitted".into())
        })
        .context("spend model")?;
    let p = model.predict_standardised(&z);
    let resampled = challengers::Resampled::new(&p, &eval.churned);
    // The logistic model's own scores, measured once: `churn.model` and the first challenger.
    let logistic = Challenger::new("logistic", p.clone(), &resampled, &eval.churned, None);
    let Some(d) = &eval.detail else {
        return Err(Error::Internal(
            "the evaluation sample has no evaluation columns".into(),
        ));
    };
    Ok(Evaluation {
        scheme: scheme.name,
        train_cutoff: scheme.train.0,
        train_labels_until: scheme.train.1,
        eval_cutoff: scheme.eval.0,
        eval_labels_until: scheme.eval.1,
        train_customers,
        eval_customers: eval.len(),
        train_churn_rate,
        eval_churn_rate: rate(&eval.churned),
        fallback_reason: scheme.fallback_reason,
        alpha_selection: None,
        customer_sample: None,
        model: logistic.scores.clone(),
        baseline: ChurnScores::new("recency", &d.recency, &eval.churned, false),
        value_model,
        value_baseline: ValueScoresMetrics::new(
            "last_window_spend",
            &d.prior_net_spend,
            &eval.spend,
        ),
        value_challengers,
        challengers: vec![
            logistic,
            Challenger::new(
                "boosted",
                boosted_p,
                &resampled,
                &eval.churned,
                booster.validation_log_loss,
            ),
        ],
        eval_scores: (p, d.recency.clone(), eval.churned.clone()),
        resampled_logistic: resampled,
        eval_rows: None,
    })
}

/// The out-of-time evaluation: fitted at `t0`, evaluated at `t1`; or, when the `t0` sample is
/// missing, too small or has one class, the customer-split fallback inside the `t1` window.
pub(super) fn evaluate(
    train: Option<Sample>,
    eval: &Sample,
    ids: &[Box<str>],
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
    selection: &ValueSelection,
    booster: &BoostSelection,
) -> Result<Evaluation> {
    let one_class = |l: &[bool]| l.iter().all(|&x| x) || l.iter().all(|&x| !x);
    if eval.is_empty() {
        return Err(ModelError::Empty {
            window: window_name(c.t1, c.as_of),
        }
        .into());
    }
    let train = match train {
        None => Err(format!("no labelled table at {}", c.t0)),
        Some(t) if t.len() < config.run.min_train_customers => Err(format!(
            "{} customers bought before {} (min_train_customers {})",
            t.len(),
            c.t0,
            config.run.min_train_customers
        )),
        Some(t) if one_class(&t.churned) => Err(format!("one churn class in [{}, {})", c.t0, c.t1)),
        Some(t) => Ok(t),
    };
    let train = match train {
        Ok(t) => t,
        Err(reason) => {
            return customer_split(eval, ids, c, config, params, reason, selection, booster)
        }
    };
    fit_and_score(
        params,
        train,
        eval,
        Scheme {
            name: "out_of_time",
            train: (c.t0, c.t1),
            eval: (c.t1, c.as_of),
            fallback_reason: None,
        },
        selection,
        booster,
    )
}

/// History shorter than two horizons: a seeded 80/20 customer split in the `t1` window.
fn customer_split(
    eval: &Sample,
    ids: &[Box<str>],
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
    reason: String,
    selection: &ValueSelection,
    booster: &BoostSelection,
) -> Result<Evaluation> {
    let mut picked: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, &customer) in eval.customer.iter().enumerate() {
        let id = ids
            .get(customer as usize)
            .ok_or_else(|| Error::Internal(format!("sample customer {customer} has no id")))?;
        picked[usize::from(split_hash(id, config.run.seed) % 5 == 0)].push(i);
    }
    let (tr, ev) = (eval.select(&picked[0]), eval.select(&picked[1]));
    let mut evaluation = fit_and_score(
        params,
        tr,
        &ev,
        Scheme {
            name: "customer_split",
            train: (c.t1, c.as_of),
            eval: (c.t1, c.as_of),
            fallback_reason: Some(reason),
        },
        selection,
        booster,
    )?;
    let [_, held_out] = picked;
    evaluation.eval_rows = Some(held_out);
    Ok(evaluation)
}

/// Out-of-time evaluation of the BTYD models: fitted on the history before `t1` (no labels),
/// predicting the holdout `[t1, as_of)` of the customers who had bought before `t1`. The
/// holdout purchase totals and MAE cover them all (the literature's design); the buy-again and
/// spend scores are compared on `rows` (the churn model's held-out customers under the
/// customer split), so every churn AUC in metrics.json is on the same customers.
pub(super) fn evaluate_btyd(
    eval: &Sample,
    d: &Detail,
    rows: Option<&[usize]>,
    c: &Cutoffs,
    config: &Config,
    warnings: &mut Vec<String>,
) -> Result<BtydEvaluation> {
    let (model, w) = ValueModel::fit_with_warnings(&d.value, &config.btyd)
        .context("BTYD model (calibration before t1)")?;
    warnings.extend(w);
    let h = f64::from(c.horizon_days);
    // Per customer, independent: in parallel, collected in row order.
    let scores: Vec<_> = d.value.par_iter().map(|v| model.score(v, h)).collect();
    let expected: Vec<f64> = scores.iter().map(|s| s.expected_purchases).collect();
    // The buy-again score: P(no purchase in the holdout), in closed form for BG/NBD and
    // MBG/NBD (models::buy_again); Pareto/NBD keeps the Poisson approximation exp(−E[X]).
    let no_purchase: Vec<f64> = d
        .value
        .par_iter()
        .zip(&expected)
        .map(|(v, e)| buy_again::probability(&model.transactions, v, h).unwrap_or((-e).exp()))
        .collect();
    let actual: Vec<f64> = d.purchase_days.iter().map(|&d| d as f64).collect();
    let spend: Vec<f64> = scores
        .iter()
        .map(|s| s.expected_purchases * s.expected_order_value)
        .collect();
    let pick = |v: &[f64]| -> Vec<f64> {
        match rows {
            Some(r) => r.iter().map(|&i| v[i]).collect(),
            None => v.to_vec(),
        }
    };
    let (expected_c, spend_c, actual_spend_c) = (pick(&expected), pick(&spend), pick(&eval.spend));
    let churned_c: Vec<bool> = match rows {
        Some(r) => r.iter().map(|&i| eval.churned[i]).collect(),
        None => eval.churned.clone(),
    };
    let buys_again: Vec<bool> = churned_c.iter().map(|c| !c).collect();
    Ok(BtydEvaluation {
        model: model.fit.used.clone(),
        fit: model.fit.clone(),
        calibration_end: c.t1,
        holdout_until: c.as_of,
        customers: eval.len(),
        compared_customers: churned_c.len(),
        params: serde_json::to_value(model.transactions.params)?,
        log_likelihood: model.transactions.log_likelihood,
        holdout_purchases_mae: mae(&expected, &actual),
        predicted_total_purchases: expected.iter().sum(),
        actual_total_purchases: d.purchase_days.iter().sum(),
        buy_again_roc_auc: auc_or_nan(&expected_c, &buys_again),
        spend: ValueScoresMetrics::new("btyd_clv_undiscounted", &spend_c, &actual_spend_c),
        spend_note: model.spend_note.clone(),
        churn: ChurnScores::new(
            "btyd_expected_purchases",
            &expected_c.iter().map(|e| -e).collect::<Vec<_>>(),
            &churned_c,
            false,
        ),
        churn_probability: pick(&no_purchase),
    })
}

/// The BTYD buy-again score's validation log loss ([`buy_again::validation_log_loss`]) with
/// the transaction model the value selection fitted on `val`'s history before `t0`; `Err`
/// says why it cannot compete (metrics.json `not_eligible`).
pub(super) fn buy_again_validation(
    selection: &ValueSelection,
    val: Option<&Sample>,
    c: &Cutoffs,
) -> std::result::Result<f64, &'static str> {
    let (Some(fit), Some(val)) = (&selection.btyd_validation_fit, val) else {
        return Err("no validation-window BTYD fit");
    };
    buy_again::validation_log_loss(fit, val, f64::from(c.horizon_days))
}

/// FNV-1a of the customer id mixed with the seed: a platform-independent split.
fn split_hash(id: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
