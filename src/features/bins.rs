//! Privacy bins: a metric's exact value is replaced by the range it falls in ("$50–$100",
//! "10K–50K visits"), from configured edges or automatic log-scale edges (1–5–10 steps).

use super::Unit;

/// Bins of one metric: ascending edges and one label per bin. Bin `i` holds values in
/// `[edges[i-1], edges[i])`; bin 0 is "under edges[0]" and the last bin is "edges[last] or more".
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    pub edges: Vec<f64>,
    pub labels: Vec<String>,
}

/// Marks "no bin" for a value that is missing or cannot be binned (e.g. negative on a log scale).
pub const NO_BIN: u16 = u16::MAX;

impl Bins {
    /// Builds bins from explicit ascending edges (validated by the config layer).
    pub fn from_edges(edges: Vec<f64>, unit: &Unit, suffix: &str) -> Bins {
        let mut labels = Vec::with_capacity(edges.len() + 1);
        if let Some(first) = edges.first() {
            labels.push(with_suffix(
                format!("under {}", unit.format_edge_alone(*first)),
                suffix,
            ));
        }
        for w in edges.windows(2) {
            labels.push(with_suffix(unit.format_range(w[0], w[1]), suffix));
        }
        if let Some(last) = edges.last() {
            labels.push(with_suffix(
                format!("{} or more", unit.format_edge_alone(*last)),
                suffix,
            ));
        }
        Bins { edges, labels }
    }

    /// Automatic log-scale edges 1, 5, 10, 50, 100, … (scaled by the unit's display factor)
    /// spanning the positive values seen. `None` when no positive value exists.
    pub fn auto(values: &[f64], unit: &Unit, suffix: &str) -> Option<Bins> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            if v > 0.0 && v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            return None;
        }
        let scale = unit.display_factor();
        let (lo, hi) = (lo * scale, hi * scale);
        let mut edges = Vec::new();
        let mut decade = 10f64.powi(exponent(lo.log10().floor()));
        // Keep a safety bound: a few dozen edges at most even for absurd ranges.
        while edges.len() < 40 {
            for step in [1.0, 5.0] {
                let e = decade * step;
                if e > lo && e <= hi {
                    edges.push(round_edge(e) / scale);
                }
            }
            decade *= 10.0;
            if decade > hi {
                break;
            }
        }
        if edges.is_empty() {
            // Every value sits in one 1–5–10 step: a single edge at the step below still hides it.
            let d = 10f64.powi(exponent(lo.log10().floor()));
            let e = if lo >= 5.0 * d { 5.0 * d } else { d };
            edges.push(round_edge(e) / scale);
        }
        Some(Bins::from_edges(edges, unit, suffix))
    }

    /// Index of the bin holding `v`; [`NO_BIN`] for NaN.
    #[inline]
    pub fn index(&self, v: f64) -> u16 {
        if v.is_nan() {
            return NO_BIN;
        }
        // Edges are few (at most 41) and ascending: counting those ≤ v is the bin, without the
        // mispredicted branches of a binary search on random values.
        let at_or_below = self.edges.iter().filter(|&&e| e <= v).count();
        u16::try_from(at_or_below).unwrap_or(NO_BIN - 1)
    }

    pub fn label(&self, index: u16) -> Option<&str> {
        self.labels.get(index as usize).map(String::as_str)
    }
}

fn round_edge(e: f64) -> f64 {
    // 10^k * 5 computed in floating point can carry noise (0.30000000000000004); edges are
    // "nice" numbers by construction, so round to 12 significant digits.
    let digits = 12 - exponent(e.abs().log10().ceil());
    let f = 10f64.powi(digits);
    (e * f).round() / f
}

/// A decimal exponent: a whole number, the floor or ceiling of the log10 of a finite positive f64.
#[expect(
    clippy::cast_possible_truncation,
    reason = "whole and within ±324 (log10 of a finite positive f64), far inside i32"
)]
fn exponent(whole_log10: f64) -> i32 {
    whole_log10 as i32
}

fn with_suffix(label: String, suffix: &str) -> String {
    if suffix.is_empty() {
        label
    } else {
        format!("{label} {suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_edges_and_their_boundaries() {
        let unit = Unit::Currency("$".into());
        let b = Bins::from_edges(vec![50.0, 100.0, 200.0], &unit, "");
        assert_eq!(
            b.labels,
            vec!["under $50", "$50–$100", "$100–$200", "$200 or more"]
        );
        assert_eq!(b.index(49.99), 0);
        assert_eq!(b.index(50.0), 1, "an edge belongs to the bin above it");
        assert_eq!(b.index(99.99), 1);
        assert_eq!(b.index(100.0), 2);
        assert_eq!(b.index(1e9), 3);
        assert_eq!(b.index(f64::NAN), NO_BIN);
        assert_eq!(b.index(-5.0), 0);
    }

    #[test]
    fn auto_edges_are_one_five_ten() {
        let b = Bins::auto(
            &[3.0, 12_000.0, 42_000.0, -4.0, 0.0],
            &Unit::Count,
            "visits",
        )
        .unwrap();
        assert_eq!(b.edges, vec![5.0, 10.0, 50.0, 100.0, 500.0, 1e3, 5e3, 1e4]);
        let i = b.index(12_000.0);
        assert_eq!(b.label(i), Some("10K or more visits"));
        let b = Bins::auto(&[3.0, 60_000.0], &Unit::Count, "visits").unwrap();
        assert_eq!(b.label(b.index(12_000.0)), Some("10K–50K visits"));
        assert_eq!(b.label(b.index(4.0)), Some("under 5 visits"));
        assert!(Bins::auto(&[0.0, -1.0, f64::NAN], &Unit::Count, "").is_none());
    }

    #[test]
    fn auto_edges_for_percentages_use_display_units() {
        // Conversion rates 0.4 % … 7 %: edges at 0.5 %, 1 %, 5 %.
        let b = Bins::auto(&[0.004, 0.02, 0.07], &Unit::Percent, "").unwrap();
        assert_eq!(b.edges, vec![0.005, 0.01, 0.05]);
        assert_eq!(
            b.labels,
            vec!["under 0.5 %", "0.5–1 %", "1–5 %", "5 % or more"]
        );
    }

    #[test]
    fn single_value_still_gets_a_bin() {
        let b = Bins::auto(&[70.0], &Unit::Currency("$".into()), "").unwrap();
        assert_eq!(b.label(b.index(70.0)), Some("$50 or more"));
    }
}
