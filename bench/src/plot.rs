//! One PNG per scenario from the JSON rows: latency percentiles (or memory
//! per connection, for idle) against the scenario's setting, a line per
//! server and mode.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn plot_all(results: &Path, out: &Path, font: &Path) -> anyhow::Result<()> {
    let font_bytes: &'static [u8] = Box::leak(
        std::fs::read(font)
            .with_context(|| format!("reading the font {}", font.display()))?
            .into_boxed_slice(),
    );
    register_font("sans-serif", FontStyle::Normal, font_bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", font.display()))?;
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(results)?)?;
    std::fs::create_dir_all(out)?;
    // A named scenario run appends to the results: its rows replace the
    // earlier ones of the same server and setting, as in the tables.
    let mut latest: Vec<&Value> = Vec::new();
    for row in &rows {
        let key = |r: &Value| {
            (
                r["scenario"].clone(),
                r["peer"].clone(),
                r["setting"].clone(),
            )
        };
        latest.retain(|earlier| key(earlier) != key(row));
        latest.push(row);
    }
    let mut by_scenario: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for row in latest {
        by_scenario
            .entry(row["scenario"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(row);
    }
    for (scenario, rows) in by_scenario {
        let path = out.join(format!("{scenario}.png"));
        plot_scenario(&scenario, &rows, &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A series: one server (and mode), its points sorted by x.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn plot_scenario(scenario: &str, rows: &[&Value], path: &Path) -> anyhow::Result<()> {
    let idle = scenario == "idle";
    let mut series = Series::new();
    for row in rows {
        let peer = row["peer"].as_str().unwrap_or("?");
        let setting = row["setting"].as_str().unwrap_or("");
        let mode = ["reliable", "fast"]
            .into_iter()
            .find(|mode| setting.contains(mode))
            .map_or(String::new(), |mode| format!(" {mode}"));
        // A setting where nothing arrived in time has no latency to draw.
        if !idle && row["delivery"]["count"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let x = row["x"].as_f64().unwrap_or(0.0);
        let metrics: &[(&str, f64)] = if idle {
            &[(
                " KiB/conn",
                row["rss_per_connection"].as_f64().unwrap_or(0.0) / 1024.0,
            )]
        } else {
            &[
                (" p50", row["delivery"]["p50_ms"].as_f64().unwrap_or(0.0)),
                (" p99", row["delivery"]["p99_ms"].as_f64().unwrap_or(0.0)),
            ]
        };
        for (metric, y) in metrics {
            series
                .entry(format!("{peer}{mode}{metric}"))
                .or_default()
                .push((x, *y));
        }
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let points = series.values().flatten();
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;

    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_label, y_label) = match scenario {
        s if s.starts_with("linker") => ("connections", "round trip (ms)"),
        "fanout" => ("messages/s sent to the room", "delivery latency (ms)"),
        "idle" => ("idle connections", "server memory per connection (KiB)"),
        _ => ("messages/s sent", "cross-replica latency (ms)"),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: Rookery vs socket.io"),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
