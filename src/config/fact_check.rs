//! The fact check's vocabulary: the phrases that state a tier or a position, per job.

/// The vocabulary of one job (`[jobs.NAME.validate.fact_check]`); English by default.
#[derive(Debug, Clone, PartialEq)]
pub struct FactCheckConfig {
    pub enabled: bool,
    pub top_10: Vec<String>,
    pub above_median: Vec<String>,
    pub below_median: Vec<String>,
    pub bottom_10: Vec<String>,
    /// Words that call a metric good: allowed in the better half only.
    pub strong: Vec<String>,
    /// Words that call a metric bad: allowed in the worse half only.
    pub weak: Vec<String>,
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for FactCheckConfig {
    fn default() -> FactCheckConfig {
        FactCheckConfig {
            enabled: true,
            top_10: words(&[
                "top 10 %",
                "top 10 percent",
                "top ten percent",
                "top tenth",
                "top decile",
            ]),
            above_median: words(&[
                "above the median",
                "above median",
                "ahead of the median",
                "better than the median",
                "upper half",
            ]),
            below_median: words(&[
                "below the median",
                "below median",
                "behind the median",
                "trails the median",
                "falls short of the median",
                "worse than the median",
                "lower half",
            ]),
            bottom_10: words(&[
                "bottom 10 %",
                "bottom 10 percent",
                "bottom ten percent",
                "bottom tenth",
                "bottom decile",
            ]),
            strong: words(&[
                "strength",
                "strengths",
                "strongest",
                "leader",
                "leads the field",
                "leads its peers",
                "stands out",
                "excels",
                "outperforms",
            ]),
            weak: words(&[
                "weakness",
                "weaknesses",
                "weakest",
                "lags",
                "lags behind",
                "trails",
                "room for improvement",
                "underperforms",
            ]),
        }
    }
}
