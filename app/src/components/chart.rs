//! Charts drawn on the server as SVG: no script, readable on a 360 px wide
//! phone (the text is sized for the chart's width there), each with its
//! numbers in a table beside it for screen readers (the SVG is one labelled
//! image; the table carries the values).

use leptos::prelude::*;

/// One stacked series: its name, its CSS class (colour), a value per bar.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub class: String,
    pub values: Vec<i64>,
}

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// A round upper bound for the axis: 1, 2 or 5 times a power of ten.
pub fn nice_max(max: i64) -> i64 {
    if max <= 0 {
        return 1;
    }
    let mut p = 1i64;
    while p <= max / 10 {
        p *= 10;
    }
    for m in [1i64, 2, 5] {
        if m.saturating_mul(p) >= max {
            return m * p;
        }
    }
    p.saturating_mul(10)
}

fn short(n: i64) -> String {
    if n >= 1_000_000 && n % 100_000 == 0 {
        format!("{}M", n as f64 / 1_000_000.0)
    } else if n >= 10_000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Stacked bars, one per label.
#[component]
pub fn StackedBars(
    /// The chart's accessible name.
    title: String,
    /// What the y axis counts ("calls", "credits").
    unit: String,
    labels: Vec<String>,
    series: Vec<Series>,
    /// The test id of the SVG.
    id: String,
) -> impl IntoView {
    let n = labels.len().max(1);
    let totals: Vec<i64> = (0..labels.len())
        .map(|i| series.iter().fold(0i64, |t, s| t.saturating_add(s.values.get(i).copied().unwrap_or(0).max(0))))
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let y = move |v: i64| TOP + plot_h - (v as f64 / max as f64) * plot_h;
    let mut ticks = vec![0, max / 2, max];
    ticks.dedup();
    let grid = ticks
        .iter()
        .map(|t| {
            let ty = y(*t);
            view! {
                <line x1=LEFT x2=W - RIGHT y1=ty y2=ty class="chart-grid"/>
                <text x=LEFT - 8.0 y=ty + 7.0 text-anchor="end" class="chart-axis">{short(*t)}</text>
            }
        })
        .collect_view();
    // A label under every bar when they fit, else every k-th.
    let every = n.div_ceil(8);
    let x_labels = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| (n - 1 - i) % every == 0)
        .map(|(i, l)| {
            let x = LEFT + slot * (i as f64 + 0.5);
            view! { <text x=x y=H - 14.0 text-anchor="middle" class="chart-axis">{l.clone()}</text> }
        })
        .collect_view();
    let bars = (0..labels.len())
        .map(|i| {
            let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            let mut base = 0i64;
            series
                .iter()
                .filter_map(|s| {
                    let v = s.values.get(i).copied().unwrap_or(0);
                    if v <= 0 {
                        return None;
                    }
                    let (top, bottom) = (y(base.saturating_add(v)), y(base));
                    base = base.saturating_add(v);
                    let tip = format!("{}: {} {} {}", labels[i], crate::types::group(v), s.name, unit);
                    Some(view! {
                        <rect x=x y=top width=bar_w height=(bottom - top).max(1.0) class=s.class.clone()>
                            <title>{tip}</title>
                        </rect>
                    })
                })
                .collect_view()
        })
        .collect_view();
    let legend = series
        .iter()
        .map(|s| view! { <li><span class=format!("swatch {}", s.class) aria-hidden="true"></span>{s.name.clone()}</li> })
        .collect_view();
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=format!("{title} (the table below holds the numbers)") data-testid=id
                preserveAspectRatio="xMidYMid meet">
                {grid}
                <text x=LEFT - 8.0 y=TOP - 2.0 text-anchor="end" class="chart-axis chart-unit">{unit.clone()}</text>
                {bars}
                {x_labels}
            </svg>
            <ul class="chart-legend">{legend}</ul>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(super::nice_max(0), 1);
        assert_eq!(super::nice_max(7), 10);
        assert_eq!(super::nice_max(13), 20);
        assert_eq!(super::nice_max(420), 500);
        assert_eq!(super::nice_max(1000), 1000);
        assert_eq!(super::nice_max(i64::MAX), i64::MAX);
        assert_eq!(super::nice_max(9_000_000_000_000_000_000), i64::MAX);
    }
}
