//! An SVG picture of a run: throughput per case and latency per system and
//! rate, as horizontal bars. Written beside the report (and, with
//! `--results`, to `results/chart.svg` next to the results file) so that a
//! reader takes in the run at a glance; the tables stay the reference.
//!
//! Hand-written SVG: a few rectangles and labels do not need a plotting
//! crate, and the file stays small and diffable.

use std::fmt::Write as _;

use crate::report::{Report, median};

const WIDTH: f64 = 900.0;
const LABEL_W: f64 = 250.0;
const BAR_MAX: f64 = 520.0;
const ROW: f64 = 22.0;
const BAR_H: f64 = 16.0;

/// One bar: a label, a value (and for latency a second, larger value drawn behind).
struct Bar {
    label: String,
    value: f64,
    behind: Option<f64>,
    text: String,
}

/// Bars of one panel, with a title and the scale's unit.
struct Panel {
    title: String,
    bars: Vec<Bar>,
    /// Bars on a log scale: latencies span 50 ms to tens of seconds (a
    /// system that fell behind), which a linear scale would flatten.
    log: bool,
}

fn colour(label: &str) -> &'static str {
    if label.contains("ceiling") {
        "#7f7f7f"
    } else if label.contains("kafka-streams") {
        "#d62728"
    } else if label.contains("quix") {
        "#9467bd"
    } else {
        "#1f77b4"
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn throughput_panel(rep: &Report) -> Option<Panel> {
    let mut cases: Vec<&str> = Vec::new();
    for t in &rep.throughput {
        if !cases.contains(&t.case.as_str()) {
            cases.push(&t.case);
        }
    }
    let bars: Vec<Bar> = cases
        .iter()
        .filter_map(|c| {
            let v: Vec<f64> = rep
                .throughput
                .iter()
                .filter(|t| t.case == *c)
                .filter_map(|t| t.rate())
                .collect();
            let m = median(&v)?;
            Some(Bar {
                label: c.to_string(),
                value: m,
                behind: None,
                text: format!("{:.0} records/s", m),
            })
        })
        .collect();
    (!bars.is_empty()).then(|| Panel {
        title: "Throughput, input records/s (median over rounds; longer is better)".into(),
        bars,
        log: false,
    })
}

fn latency_panel(rep: &Report) -> Option<Panel> {
    let bars: Vec<Bar> = rep
        .latency
        .iter()
        .filter_map(|l| {
            let p50 = l.p50_ms? as f64;
            let p99 = l.p99_ms? as f64;
            Some(Bar {
                label: format!("{} @ {} ({}/s)", l.system, l.rate_of, l.rate),
                value: p50,
                behind: Some(p99),
                text: format!(
                    "p50 {p50:.0} / p99 {p99:.0} ms{}",
                    if l.complete { "" } else { " (fell behind)" }
                ),
            })
        })
        .collect();
    (!bars.is_empty()).then(|| Panel {
        title: "Latency, produce → visible read_committed, ms, log scale: dark p50, light p99 \
                (shorter is better)"
            .into(),
        bars,
        log: true,
    })
}

/// A bar's length for `v` on a panel whose longest value is `max`: linear,
/// or on a log scale from 1 (a value of 1 or less has no length).
fn length(v: f64, max: f64, log: bool) -> f64 {
    if max <= 0.0 {
        return 0.0;
    }
    if log {
        if max <= 1.0 || v <= 1.0 {
            0.0
        } else {
            BAR_MAX * v.log10() / max.log10()
        }
    } else {
        BAR_MAX * v / max
    }
}

/// The picture, or `None` when the run measured neither throughput nor latency.
pub fn svg(rep: &Report) -> Option<String> {
    let panels: Vec<Panel> = [throughput_panel(rep), latency_panel(rep)]
        .into_iter()
        .flatten()
        .collect();
    if panels.is_empty() {
        return None;
    }
    let height: f64 = panels
        .iter()
        .map(|p| 40.0 + ROW * p.bars.len() as f64 + 20.0)
        .sum::<f64>()
        + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let mut y = 10.0;
    for p in &panels {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-size="14" font-weight="bold">{}</text>"#,
            y + 16.0,
            esc(&p.title)
        );
        y += 30.0;
        let max = p
            .bars
            .iter()
            .map(|b| b.behind.unwrap_or(b.value).max(b.value))
            .fold(0.0f64, f64::max);
        let len = |v: f64| length(v, max, p.log);
        for b in &p.bars {
            let c = colour(&b.label);
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
                LABEL_W - 6.0,
                y + BAR_H - 4.0,
                esc(&b.label)
            );
            if let Some(behind) = b.behind {
                let _ = writeln!(
                    s,
                    r#"<rect x="{LABEL_W}" y="{y:.0}" width="{:.1}" height="{BAR_H}" fill="{c}" fill-opacity="0.35"/>"#,
                    len(behind)
                );
            }
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_W}" y="{y:.0}" width="{:.1}" height="{BAR_H}" fill="{c}"/>"#,
                len(b.value)
            );
            let right = LABEL_W + len(b.behind.unwrap_or(0.0).max(b.value)) + 6.0;
            let _ = writeln!(
                s,
                r#"<text x="{right:.0}" y="{:.0}">{}</text>"#,
                y + BAR_H - 4.0,
                esc(&b.text)
            );
            y += ROW;
        }
        y += 20.0;
    }
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, Throughput};

    fn report() -> Report {
        let mut r = Report::default();
        for (case, secs) in [("ceiling-wc", 10.0), ("kstreams-wc-eos", 20.0)] {
            r.throughput.push(Throughput::finished(case, 1000, secs));
        }
        r.latency.push(Latency {
            system: "kafka-streams".into(),
            rate: 25,
            rate_of: "kstreams/2".into(),
            produced_secs: 20.0,
            samples: 3,
            p50_ms: Some(100),
            p99_ms: Some(400),
            p999_ms: Some(500),
            max_ms: Some(600),
            complete: false,
            progress: String::new(),
            rss_mib: None,
        });
        r
    }

    #[test]
    fn bars_are_scaled_to_the_longest_and_labelled_with_their_values() {
        let svg = svg(&report()).unwrap();
        // The ceiling's 100 records/s is the longest bar; kstreams' 50 is half of it.
        assert!(svg.contains(&format!(
            r#"width="{BAR_MAX:.1}" height="{BAR_H}" fill="{}""#,
            "#7f7f7f"
        )));
        assert!(svg.contains(&format!(
            r#"width="{:.1}" height="{BAR_H}" fill="{}""#,
            BAR_MAX / 2.0,
            "#1f77b4"
        )));
        assert!(svg.contains("100 records/s") && svg.contains("50 records/s"));
        // Latency, on a log scale: the p99 bar is the panel's longest, p50
        // log(100) / log(400) of it.
        assert!(svg.contains("p50 100 / p99 400 ms (fell behind)"));
        let p50 = BAR_MAX * 2.0 / 400f64.log10();
        assert!(svg.contains(&format!(
            r#"width="{p50:.1}" height="{BAR_H}" fill="{}"/>"#,
            "#d62728"
        )));
        assert!(svg.contains("kafka-streams @ kstreams/2 (25/s)"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn nothing_measured_draws_nothing() {
        let mut r = report();
        r.throughput.clear();
        r.latency.clear();
        assert!(svg(&r).is_none());
    }
}
