//! SVG charts drawn from numbers: the score gauge (a half dial with the bands in colour) and
//! the comparison of two distributions over the same bins (plotters). Every chart carries a
//! text alternative (`role="img"` and `aria-label`), and the pages print the figures beside it.

use std::f64::consts::PI;
use std::fmt::Write;

use plotters::prelude::*;

/// A score band as the gauge draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct BandView {
    /// The band's name (`good`).
    pub name: String,
    /// Its lowest score.
    pub min_score: i32,
}

/// Band colours, from the worst band to the best (cycled if there are more bands).
const BAND_COLOURS: [&str; 5] = ["#b3261e", "#d9730d", "#c9a400", "#5b9b3a", "#1a6b2f"];

fn point(cx: f64, cy: f64, r: f64, frac: f64) -> (f64, f64) {
    let a = PI * (1.0 - frac.clamp(0.0, 1.0));
    (cx + r * a.cos(), cy - r * a.sin())
}

/// The score gauge: a half dial from `min` (left) to `max` (right), the bands as coloured
/// arcs, a needle at `score`, and the score written in the middle.
pub fn gauge(score: i32, min: i32, max: i32, bands: &[BandView], band: &str) -> String {
    let (cx, cy, r) = (160.0, 150.0, 120.0);
    // A scale upside down or empty is drawn as one point wide rather than refused.
    let max = max.max(min.saturating_add(1));
    let span = f64::from((max - min).max(1));
    let frac = |s: i32| f64::from(s.clamp(min, max) - min) / span;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 320 190" width="320" height="190" role="img" aria-label="Score {score} on a scale of {min} to {max}, band {band}">"#
    );
    for (i, b) in bands.iter().enumerate() {
        let from = b.min_score.max(min);
        let to = bands.get(i + 1).map_or(max, |n| n.min_score.min(max));
        if to <= from {
            continue;
        }
        let (x0, y0) = point(cx, cy, r, frac(from));
        let (x1, y1) = point(cx, cy, r, frac(to));
        let colour = BAND_COLOURS[i % BAND_COLOURS.len()];
        let _ = write!(
            svg,
            r#"<path d="M {x0:.1} {y0:.1} A {r} {r} 0 0 1 {x1:.1} {y1:.1}" fill="none" stroke="{colour}" stroke-width="22"><title>{} from {from}</title></path>"#,
            escape(&b.name)
        );
    }
    let (nx, ny) = point(cx, cy, r - 30.0, frac(score));
    let _ = write!(
        svg,
        r##"<line x1="{cx}" y1="{cy}" x2="{nx:.1}" y2="{ny:.1}" stroke="#1b1f24" stroke-width="4" stroke-linecap="round"/><circle cx="{cx}" cy="{cy}" r="7" fill="#1b1f24"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="{cx}" y="{}" text-anchor="middle" font-size="34" font-weight="700" fill="#1b1f24" font-family="system-ui, sans-serif">{score}</text>"##,
        cy + 36.0
    );
    let (lx, ly) = point(cx, cy, r, 0.0);
    let (rx, ry) = point(cx, cy, r, 1.0);
    let _ = write!(
        svg,
        r##"<text x="{lx:.0}" y="{:.0}" text-anchor="middle" font-size="13" fill="#4f5862">{min}</text><text x="{rx:.0}" y="{:.0}" text-anchor="middle" font-size="13" fill="#4f5862">{max}</text></svg>"##,
        ly + 28.0,
        ry + 28.0
    );
    svg
}

/// Escapes text for SVG.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The bins, the expected and the actual shares differ in number (or there are none).
    #[error("the bins, the expected and the actual shares differ in number")]
    Shape,
    /// plotters failed to draw.
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// Two distributions over the same bins side by side (shares, 0–1): `expected` (e.g. the
/// training holdout) and `actual` (e.g. the recent scores), with a label under each bin.
///
/// # Errors
/// [`ChartError::Shape`] if the lengths differ; [`ChartError::Draw`] if plotters cannot draw.
pub fn compare(
    title: &str,
    labels: &[String],
    expected: (&str, &[f64]),
    actual: (&str, &[f64]),
) -> Result<String, ChartError> {
    let n = labels.len();
    if n == 0 || expected.1.len() != n || actual.1.len() != n {
        return Err(ChartError::Shape);
    }
    let top = expected
        .1
        .iter()
        .chain(actual.1)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.35;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| ChartError::Draw(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top)
            .map_err(|e| ChartError::Draw(e.to_string()))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            // Bin i is centred on x = i.
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc("score")
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .y_desc("share")
            .draw()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
        let series = [
            (expected, RGBColor(0x8c, 0x95, 0x9f), -0.42),
            (actual, RGBColor(0x0b, 0x5c, 0xad), 0.0),
        ];
        for ((name, values), colour, offset) in series {
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let x0 = i as f64 + offset;
                    Rectangle::new([(x0, 0.0), (x0 + 0.42, v.max(0.0))], colour.filled())
                }))
                .map_err(|e| ChartError::Draw(e.to_string()))?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present().map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    let mut alt = format!("{title}.");
    for (i, l) in labels.iter().enumerate() {
        let _ = write!(
            alt,
            " {l}: {} {:.1}%, {} {:.1}%.",
            expected.0,
            expected.1[i] * 100.0,
            actual.0,
            actual.1[i] * 100.0
        );
    }
    Ok(out.replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{}" "#, escape(&alt)),
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bands() -> Vec<BandView> {
        [
            ("poor", 300),
            ("fair", 580),
            ("good", 670),
            ("very_good", 740),
            ("exceptional", 800),
        ]
        .iter()
        .map(|(n, s)| BandView {
            name: n.to_string(),
            min_score: *s,
        })
        .collect()
    }

    #[test]
    fn gauge_draws_every_band_and_says_the_score() {
        let svg = gauge(712, 300, 850, &bands(), "good");
        assert_eq!(svg.matches("<path").count(), 5);
        assert!(svg.contains(">712</text>"));
        assert!(svg.contains(r#"aria-label="Score 712 on a scale of 300 to 850, band good""#));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn gauge_survives_odd_input() {
        for (s, min, max) in [(-5, 300, 850), (9999, 300, 850), (500, 500, 500), (0, 10, 0)] {
            let svg = gauge(s, min, max, &bands(), "x");
            assert!(svg.ends_with("</svg>"), "{svg}");
            assert!(!svg.contains("NaN"), "{svg}");
        }
        let evil = [BandView {
            name: "<script>".into(),
            min_score: 300,
        }];
        assert!(!gauge(400, 300, 850, &evil, "x").contains("<script>"));
    }

    #[test]
    fn compare_draws_both_series_with_a_text_alternative() {
        let labels: Vec<String> = (1..=3).map(|i| format!("D{i}")).collect();
        let svg = compare(
            "Scores",
            &labels,
            ("training", &[0.3, 0.3, 0.4]),
            ("recent", &[0.1, 0.2, 0.7]),
        )
        .unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{}", &svg[..80]);
        assert!(svg.contains("D2: training 30.0%, recent 20.0%"));
        assert!(compare("x", &labels, ("a", &[0.1]), ("b", &[0.1, 0.2, 0.3])).is_err());
        assert!(compare("x", &[], ("a", &[]), ("b", &[])).is_err());
    }
}
