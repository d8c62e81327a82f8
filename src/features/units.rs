//! How a metric's numbers are written: bin edges ("$50", "10K", "2.5 %") and exact public values.

/// The kind of quantity a metric holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// A count (visits, orders): 12,345 exact, 10K as an edge.
    Count,
    /// Money with its symbol: $1,234 exact, $50 as an edge.
    Currency(String),
    /// A fraction shown as a percentage: 0.023 is "2.3 %".
    Percent,
    /// A plain number: 1.25.
    Ratio,
}

impl Unit {
    /// Multiplier from stored value to displayed number.
    pub fn display_factor(&self) -> f64 {
        match self {
            Unit::Percent => 100.0,
            _ => 1.0,
        }
    }

    /// A bin edge, short: "10K", "$1.5M", "2.5" (percent sign added by the range label).
    pub fn format_edge(&self, v: f64) -> String {
        match self {
            Unit::Count => compact(v),
            Unit::Currency(sym) => money(sym, compact(v.abs()), v < 0.0),
            Unit::Percent => trim(v * 100.0, 2),
            Unit::Ratio => trim(v, 3),
        }
    }

    /// A range label: "$50–$100", "10K–50K", "1–5 %", "-10 % to 0 %".
    pub fn format_range(&self, lo: f64, hi: f64) -> String {
        match self {
            Unit::Percent if lo < 0.0 => {
                format!("{} % to {} %", self.format_edge(lo), self.format_edge(hi))
            }
            Unit::Percent => format!("{}–{} %", self.format_edge(lo), self.format_edge(hi)),
            _ => format!("{}–{}", self.format_edge(lo), self.format_edge(hi)),
        }
    }

    /// An edge standing alone ("5 %", "$50", "10K").
    pub fn format_edge_alone(&self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{} %", self.format_edge(v)),
            _ => self.format_edge(v),
        }
    }

    /// An exact value for a public metric: "12,345", "$1,234", "$12.50", "2.3 %", "1.25".
    pub fn format_value(&self, v: f64) -> String {
        match self {
            Unit::Count => thousands(v.round()),
            Unit::Currency(sym) => {
                let a = v.abs();
                let body = if a >= 100.0 {
                    thousands(a.round())
                } else {
                    format!("{a:.2}")
                };
                money(sym, body, v < 0.0)
            }
            Unit::Percent => format!("{} %", trim(v * 100.0, 1)),
            Unit::Ratio => trim(v, 2),
        }
    }
}

fn money(sym: &str, body: String, negative: bool) -> String {
    if negative {
        format!("-{sym}{body}")
    } else {
        format!("{sym}{body}")
    }
}

/// 1234 → "1.2K", 10000 → "10K", 2500000 → "2.5M".
fn compact(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    let (scaled, suffix) = if a >= 1e9 {
        (a / 1e9, "B")
    } else if a >= 1e6 {
        (a / 1e6, "M")
    } else if a >= 1e3 {
        (a / 1e3, "K")
    } else {
        (a, "")
    };
    format!("{sign}{}{suffix}", trim(scaled, 2))
}

/// Up to `decimals` decimals, trailing zeros removed: 2.50 → "2.5", 3.00 → "3".
fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// 1234567 → "1,234,567".
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    if v < 0.0 && s != "0" {
        out.push('-');
    }
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(Unit::Count.format_edge(10_000.0), "10K");
        assert_eq!(Unit::Count.format_edge(1_500_000.0), "1.5M");
        assert_eq!(Unit::Count.format_edge(500.0), "500");
        assert_eq!(Unit::Currency("$".into()).format_edge(50.0), "$50");
        assert_eq!(Unit::Percent.format_edge(0.025), "2.5");
        assert_eq!(Unit::Percent.format_range(-0.1, 0.0), "-10 % to 0 %");
        assert_eq!(Unit::Percent.format_range(0.01, 0.05), "1–5 %");
        assert_eq!(Unit::Count.format_value(1_234_567.4), "1,234,567");
        assert_eq!(Unit::Currency("€".into()).format_value(12.5), "€12.50");
        assert_eq!(Unit::Currency("$".into()).format_value(-1234.0), "-$1,234");
        assert_eq!(Unit::Percent.format_value(0.0234), "2.3 %");
        assert_eq!(Unit::Ratio.format_value(1.0), "1");
    }
}
