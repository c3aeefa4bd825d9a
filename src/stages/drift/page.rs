//! The report's "Night over night" section: the drift status, every gate with its measured
//! value and limit, the tier transition matrix, the largest PSIs and parameter shifts, and
//! trend charts (AUC, churn rate, CLV total, tier sizes, BTYD parameters) over the last
//! published runs and this one. Inline SVG (plotters), added to the page `report.rs` drew.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::report::ReportError;
use crate::stages::drift::Drift;
use crate::stages::history::Row;

const SIZE: (u32, u32) = (520, 320);

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::new(e.to_string())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart over the runs: x is the run's position, labelled with its as-of.
fn trend(
    title: &str,
    dates: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<String, ReportError> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let (lo, hi) = if values.is_empty() {
        (0.0, 1.0)
    } else {
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.01).max(1e-9);
        (lo - pad, hi + pad)
    };
    let n = dates.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                dates.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n.min(6))
            .x_label_formatter(&label)
            .draw()
            .map_err(err)?;
        for (k, (name, v)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let pts: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .filter_map(|(i, y)| y.filter(|y| y.is_finite()).map(|y| (i as f64, y)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The trend charts of `rows` (oldest first, this run last).
fn trends(rows: &[Row]) -> Result<Vec<String>, ReportError> {
    let dates: Vec<String> = rows.iter().map(|r| r.as_of.to_string()).collect();
    let one = |name: &str, f: &dyn Fn(&Row) -> Option<f64>| {
        vec![(name.to_string(), rows.iter().map(f).collect::<Vec<_>>())]
    };
    let mut tiers: Vec<String> = rows.iter().flat_map(|r| r.tiers.keys().cloned()).collect();
    tiers.sort();
    tiers.dedup();
    let tier_series: Vec<(String, Vec<Option<f64>>)> = tiers
        .iter()
        .map(|t| {
            (
                t.clone(),
                rows.iter()
                    .map(|r| r.tiers.get(t).map(|&n| n as f64))
                    .collect(),
            )
        })
        .collect();
    // Parameters on different scales: each relative to its value in the first run shown.
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|r| r.btyd_params.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let params: Vec<(String, Vec<Option<f64>>)> = names
        .iter()
        .map(|p| {
            let first = rows.iter().find_map(|r| r.btyd_params.get(p).copied());
            (
                p.clone(),
                rows.iter()
                    .map(|r| Some(r.btyd_params.get(p)? / first.filter(|f| *f != 0.0)?))
                    .collect(),
            )
        })
        .collect();
    Ok(vec![
        trend(
            "out-of-time churn ROC-AUC",
            &dates,
            &one("ROC-AUC", &|r| r.roc_auc),
        )?,
        trend(
            "predicted churn rate",
            &dates,
            &one("churn rate", &|r| r.predicted_churn_rate),
        )?,
        trend("CLV total", &dates, &one("CLV total", &|r| r.total_clv))?,
        trend("customers per tier", &dates, &tier_series)?,
        trend(
            "BTYD / Gamma-Gamma parameters (relative to the first run shown)",
            &dates,
            &params,
        )?,
    ])
}

fn f4(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The section's HTML; `rows` are the trend rows (this run last).
pub fn section(drift: &Drift, rows: &[Row]) -> Result<String, ReportError> {
    let mut h = String::from("<h2>Night over night</h2>\n<table>");
    let status = serde_json::to_value(drift.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = write!(h, "<tr><td>drift status</td><td>{}</td></tr>", esc(&status));
    if let Some(r) = &drift.reference {
        let _ = write!(
            h,
            "<tr><td>reference</td><td>as_of={} ({})</td></tr>",
            r.as_of,
            esc(r.run_id.as_deref().unwrap_or("-"))
        );
    }
    if let Some(n) = &drift.note {
        let _ = write!(h, "<tr><td>note</td><td>{}</td></tr>", esc(n));
    }
    h.push_str("</table>\n");
    if !drift.gates.is_empty() {
        h.push_str("<table><tr><th>gate</th><th>worst</th><th>measured</th><th>limit</th><th>tripped</th></tr>");
        for g in &drift.gates {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                g.gate,
                esc(g.subject.as_deref().unwrap_or("-")),
                f4(g.measured),
                g.limit,
                if g.tripped { "TRIPPED" } else { "no" }
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(t) = drift.tiers.as_ref().and_then(|t| t.transitions.as_ref()) {
        // Tiers in their priority order, customers new / gone last.
        let rank = |name: &str| {
            crate::segment::TIERS
                .iter()
                .position(|(t, _)| *t == name)
                .unwrap_or(usize::MAX)
        };
        let mut cols: Vec<&String> = t.values().flat_map(|r| r.keys()).collect();
        cols.sort_by_key(|c| (rank(c), c.as_str()));
        cols.dedup();
        let mut rows: Vec<(&String, &std::collections::BTreeMap<String, u64>)> = t.iter().collect();
        rows.sort_by_key(|(r, _)| (rank(r), r.as_str()));
        h.push_str("<h3>Tier transitions (rows: reference tier, columns: this run)</h3><table><tr><th></th>");
        for c in &cols {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>");
        for (from, row) in rows {
            let _ = write!(h, "<tr><td>{}</td>", esc(from));
            for c in &cols {
                let _ = write!(h, "<td>{}</td>", row.get(*c).copied().unwrap_or(0));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>\n");
    }
    let mut psi: Vec<(&String, f64)> = drift
        .psi
        .iter()
        .filter_map(|(n, v)| Some((n, (*v)?)))
        .collect();
    psi.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut z: Vec<(&String, f64)> = drift
        .params
        .iter()
        .filter_map(|p| Some((&p.name, p.z?)))
        .collect();
    z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    if !psi.is_empty() || !z.is_empty() {
        h.push_str("<table><tr><th>largest PSI</th><th></th><th>largest parameter shift</th><th>standard errors</th></tr>");
        for i in 0..5.min(psi.len().max(z.len())) {
            let (a, b) = psi.get(i).map_or((String::new(), String::new()), |(n, v)| {
                (esc(n), format!("{v:.4}"))
            });
            let (c, d) = z.get(i).map_or((String::new(), String::new()), |(n, v)| {
                (esc(n), format!("{v:+.2}"))
            });
            let _ = write!(
                h,
                "<tr><td>{a}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>"
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h3>Trends over the last runs</h3>\n<div class=\"charts\">\n");
    for c in trends(rows)? {
        let _ = writeln!(h, "<figure>{c}</figure>");
    }
    h.push_str("</div>\n");
    Ok(h)
}

/// `page` with the section inserted before its end.
pub fn insert(page: String, section: &str) -> String {
    match page.rfind("</body>") {
        Some(i) => format!("{}{}{}", &page[..i], section, &page[i..]),
        None => page + section,
    }
}
