//! `report.html`: one self-contained page (inline SVG drawn with plotters, no scripts, no
//! external assets) with the run's out-of-time evaluation — ROC, calibration, cumulative gains,
//! value by decile, churn coefficients — and the engagement tiers.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::evaluate::{CalibrationBin, Decile};
use crate::stages::score::TierStats;

/// Errors drawing the report.
#[derive(Debug, thiserror::Error)]
#[error("report: {0}")]
pub struct ReportError(String);

impl ReportError {
    pub fn new(message: impl Into<String>) -> ReportError {
        ReportError(message.into())
    }
}

/// Draws the series labels of a line chart: boxed, half-transparent, at `position`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), ReportError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError(e.to_string())
}

/// Churn scores of one ranking (higher = more likely to churn) and the observed labels.
pub struct Ranking<'a> {
    pub name: &'a str,
    pub scores: &'a [f64],
    pub churned: &'a [bool],
}

/// Everything the page shows.
pub struct ReportData<'a> {
    pub title: String,
    /// (label, value) rows of the summary table.
    pub summary: Vec<(String, String)>,
    pub rankings: Vec<Ranking<'a>>,
    /// (name, calibration table) of every churn probability (one chart, all challengers).
    pub calibration: Vec<(&'a str, &'a [CalibrationBin])>,
    /// (name, deciles) of value predictions.
    pub value_deciles: Vec<(&'a str, &'a [Decile])>,
    pub coefficients: Vec<(String, f64)>,
    pub tiers: Vec<(&'a str, &'a TierStats)>,
    /// (label, value) rows of the business KPIs.
    pub kpis: Vec<(String, String)>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];
const SIZE: (u32, u32) = (520, 380);

/// (x, y) points of the ROC curve: (false positive rate, true positive rate), ties grouped.
pub fn roc_points(scores: &[f64], churned: &[bool]) -> Vec<(f64, f64)> {
    curve(scores, churned, |tp, fp, _, pos, neg| (fp / neg, tp / pos))
}

/// (x, y) points of cumulative gains: (share of customers targeted, share of churners found).
pub fn gains_points(scores: &[f64], churned: &[bool]) -> Vec<(f64, f64)> {
    curve(scores, churned, |tp, _, seen, pos, _| (seen, tp / pos))
}

fn curve(
    scores: &[f64],
    churned: &[bool],
    point: impl Fn(f64, f64, f64, f64, f64) -> (f64, f64),
) -> Vec<(f64, f64)> {
    let n = scores.len().min(churned.len());
    let pos = churned.iter().take(n).filter(|&&c| c).count() as f64;
    let neg = n as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let idx = crate::evaluate::order(&scores[..n], true);
    let mut out = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut k = 0;
    while k < n {
        let s = scores[idx[k]];
        while k < n && scores[idx[k]] == s {
            if churned[idx[k]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            k += 1;
        }
        out.push(point(tp, fp, k as f64 / n as f64, pos, neg));
    }
    out
}

/// At most ~400 points of a curve (every k-th, and the last): the page stays small.
fn thin(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let step = pts.len().div_ceil(400).max(1);
    let mut out: Vec<(f64, f64)> = pts.iter().step_by(step).copied().collect();
    if let Some(&last) = pts.last() {
        if out.last() != Some(&last) {
            out.push(last);
        }
    }
    out
}

fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        if diagonal {
            chart
                .draw_series(LineSeries::new(
                    vec![(0.0, 0.0), (1.0, 1.0)],
                    BLACK.mix(0.3),
                ))
                .map_err(err)?
                .label("random / perfect calibration")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
        }
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(thin(pts), color.stroke_width(2)))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn decile_chart(title: &str, series: &[(&str, &[Decile])]) -> Result<String, ReportError> {
    let max = series
        .iter()
        .flat_map(|(_, d)| d.iter().flat_map(|x| [x.mean_predicted, x.mean_actual]))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..10.5f64, 0f64..max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("decile of prediction (10 = highest)")
            .y_desc("mean spend in the window")
            .draw()
            .map_err(err)?;
        let mut k = 0;
        for (name, deciles) in series {
            for (what, pick) in [("predicted", true), ("actual", false)] {
                let color = COLORS[k % COLORS.len()];
                k += 1;
                let pts: Vec<(f64, f64)> = deciles
                    .iter()
                    .map(|d| {
                        (
                            d.decile as f64,
                            if pick {
                                d.mean_predicted
                            } else {
                                d.mean_actual
                            },
                        )
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("{name} {what}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn coefficient_chart(coefs: &[(String, f64)]) -> Result<String, ReportError> {
    let m = coefs
        .iter()
        .map(|c| c.1.abs())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let n = coefs.len().max(1);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (SIZE.0, 60 + 30 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "churn model coefficients (standardised inputs)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(130)
            .build_cartesian_2d(-m..m, 0f64..n as f64)
            .map_err(err)?;
        let labels: Vec<String> = coefs.iter().map(|c| c.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = (*y - 0.5).round();
                if i >= 0.0 && (i as usize) < labels.len() && (y - 0.5 - i).abs() < 1e-6 {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc("→ raises churn")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(coefs.iter().enumerate().map(|(i, (_, v))| {
                let color = if *v > 0.0 { COLORS[3] } else { COLORS[0] };
                Rectangle::new(
                    [(0.0, i as f64 + 0.15), (*v, i as f64 + 0.85)],
                    color.filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the whole page.
pub fn render(data: &ReportData<'_>) -> Result<String, ReportError> {
    let roc: Vec<(String, Vec<(f64, f64)>)> = data
        .rankings
        .iter()
        .map(|r| (r.name.to_string(), roc_points(r.scores, r.churned)))
        .collect();
    let gains: Vec<(String, Vec<(f64, f64)>)> = data
        .rankings
        .iter()
        .map(|r| (r.name.to_string(), gains_points(r.scores, r.churned)))
        .collect();
    let calib: Vec<(String, Vec<(f64, f64)>)> = data
        .calibration
        .iter()
        .map(|(name, bins)| {
            let pts = bins
                .iter()
                .filter_map(|b| b.mean_predicted.zip(b.observed_rate))
                .collect::<Vec<_>>();
            (name.to_string(), pts)
        })
        .collect();
    let charts = [
        line_chart(
            "ROC (churn, out of time)",
            "false positive rate",
            "true positive rate",
            &roc,
            true,
        )?,
        line_chart(
            "calibration",
            "mean predicted churn probability",
            "observed churn rate",
            &calib,
            true,
        )?,
        line_chart(
            "cumulative gains",
            "share of customers targeted (by churn score)",
            "share of churners reached",
            &gains,
            true,
        )?,
        decile_chart("value by decile (out of time)", &data.value_deciles)?,
        coefficient_chart(&data.coefficients)?,
    ];
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0 24px}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body>\n<h1>{t}</h1>\n<h2>Summary</h2>\n<table>",
        t = esc(&data.title)
    );
    for (k, v) in &data.summary {
        let _ = write!(html, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    html.push_str("</table>\n<h2>KPIs</h2>\n<table>");
    for (k, v) in &data.kpis {
        let _ = write!(html, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    html.push_str("</table>\n<h2>Engagement tiers</h2>\n<table><tr><th>tier</th><th>customers</th><th>share</th><th>next best action</th><th>mean CLV</th><th>mean churn probability</th></tr>");
    for (name, t) in &data.tiers {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            t.customers,
            100.0 * t.share,
            t.next_best_action,
            t.mean_clv.map_or("-".into(), |v| format!("{v:.2}")),
            t.mean_churn_probability
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    html.push_str("</table>\n<h2>Out-of-time evaluation</h2>\n<div class=\"charts\">\n");
    for c in &charts {
        let _ = writeln!(html, "<figure>{c}</figure>");
    }
    html.push_str("</div>\n</body></html>\n");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_by_hand() {
        let s = [0.9, 0.8, 0.7, 0.1];
        let y = [true, false, true, false];
        assert_eq!(
            roc_points(&s, &y),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(
            gains_points(&s, &y),
            vec![(0.0, 0.0), (0.25, 0.5), (0.5, 0.5), (0.75, 1.0), (1.0, 1.0)]
        );
        assert!(roc_points(&s, &[true; 4]).is_empty());
    }

    #[test]
    fn renders_a_self_contained_page() {
        let s = [0.9, 0.8, 0.7, 0.1];
        let y = [true, false, true, false];
        let deciles: Vec<Decile> = (1..=10)
            .map(|d| Decile {
                decile: d,
                count: 1,
                mean_predicted: d as f64,
                mean_actual: d as f64 * 0.9,
            })
            .collect();
        let tier = TierStats {
            customers: 4,
            share: 1.0,
            next_best_action: "transactional",
            mean_clv: Some(1.0),
            mean_churn_probability: None,
        };
        let page = render(&ReportData {
            title: "churnclv <test>".into(),
            summary: vec![("ROC-AUC".into(), "0.75".into())],
            rankings: vec![Ranking {
                name: "model",
                scores: &s,
                churned: &y,
            }],
            calibration: vec![("model", &crate::evaluate::calibration(&s, &y, 10))],
            value_deciles: vec![("btyd", &deciles)],
            coefficients: vec![("recency_days".into(), 1.2), ("frequency".into(), -0.4)],
            tiers: vec![("standard", &tier)],
            kpis: vec![("repeat purchase rate".into(), "50.0%".into())],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 5);
        assert!(page.contains("churnclv &lt;test&gt;"));
        assert!(page.contains("<td>repeat purchase rate</td><td>50.0%</td>"));
        assert!(!page.contains("<script") && !page.contains("http://www.w3.org/1999/xlink\" href"));
    }
}
