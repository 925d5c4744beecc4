//! The function library: every function's name, what it takes, and the aggregator vocabularies.

/// Every function of the language (besides `ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `sum(x) [by (...)]`: sum across series per step.
    Sum,
    /// `avg(x) [by (...)]`: mean across series per step.
    Avg,
    /// `min(x) [by (...)]`: minimum across series per step.
    Min,
    /// `max(x) [by (...)]`: maximum across series per step.
    Max,
    /// `count(x) [by (...)]`: number of series with a point per step.
    Count,
    /// `percentile(x, q) [by (...)]`: q-th percentile (0..=100) across series per step.
    Percentile,
    /// `topk(x, k) [by (...)]`: per step, the k series with the largest values.
    Topk,
    /// `bottomk(x, k) [by (...)]`: per step, the k series with the smallest values.
    Bottomk,
    /// `rate(x)`: per-second increase of a counter between adjacent steps, across resets.
    Rate,
    /// `increase(x)`: increase of a counter between adjacent steps, across resets.
    Increase,
    /// `derivative(x)`: per-second change between adjacent steps (may be negative).
    Derivative,
    /// `integral(x)`: running sum of value x step seconds from the start of the range.
    Integral,
    /// `moving(x, window, agg)`: aggregate of the points in `(t - window, t]`.
    Moving,
    /// `downsample(ts(...), agg)`: how raw samples inside a step become one point.
    Downsample,
    /// `timeshift(x, d)`: the values of `d` earlier, shown at `t`.
    Timeshift,
    /// `fill(x, v)`: every step a series lacks gets `v`.
    Fill,
    /// `default(x, v)`: every step where no series has a point gets `v` in a key-less series.
    Default,
    /// `alias(x, "name")`: sets the metric part; `{service}`, `{source}`, `{metric}` expand.
    Alias,
    /// `filter(predicate)`: the points a comparison keeps, as a series set.
    Filter,
}

/// All functions, for lookup and suggestions.
pub const ALL: [Func; 19] = [
    Func::Sum,
    Func::Avg,
    Func::Min,
    Func::Max,
    Func::Count,
    Func::Percentile,
    Func::Topk,
    Func::Bottomk,
    Func::Rate,
    Func::Increase,
    Func::Derivative,
    Func::Integral,
    Func::Moving,
    Func::Downsample,
    Func::Timeshift,
    Func::Fill,
    Func::Default,
    Func::Alias,
    Func::Filter,
];

impl Func {
    /// The function's name in queries.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sum => "sum",
            Func::Avg => "avg",
            Func::Min => "min",
            Func::Max => "max",
            Func::Count => "count",
            Func::Percentile => "percentile",
            Func::Topk => "topk",
            Func::Bottomk => "bottomk",
            Func::Rate => "rate",
            Func::Increase => "increase",
            Func::Derivative => "derivative",
            Func::Integral => "integral",
            Func::Moving => "moving",
            Func::Downsample => "downsample",
            Func::Timeshift => "timeshift",
            Func::Fill => "fill",
            Func::Default => "default",
            Func::Alias => "alias",
            Func::Filter => "filter",
        }
    }

    /// The function of a name.
    pub fn from_name(name: &str) -> Option<Func> {
        ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Whether the function aggregates across series (and so takes `by`).
    pub fn is_aggregation(self) -> bool {
        matches!(
            self,
            Func::Sum
                | Func::Avg
                | Func::Min
                | Func::Max
                | Func::Count
                | Func::Percentile
                | Func::Topk
                | Func::Bottomk
        )
    }

    /// Argument names, for arity errors.
    pub fn signature(self) -> &'static str {
        match self {
            Func::Sum | Func::Avg | Func::Min | Func::Max | Func::Count => "(series)",
            Func::Percentile => "(series, q)",
            Func::Topk | Func::Bottomk => "(series, k)",
            Func::Rate | Func::Increase | Func::Derivative | Func::Integral => "(series)",
            Func::Moving => "(series, window, aggregator)",
            Func::Downsample => "(ts(...), aggregator)",
            Func::Timeshift => "(series, duration)",
            Func::Fill | Func::Default => "(series, value)",
            Func::Alias => "(series, \"name\")",
            Func::Filter => "(predicate)",
        }
    }
}

/// The closest known function name, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    ALL.iter()
        .map(|f| (edit_distance(name, f.name()), f.name()))
        .filter(|(d, n)| *d <= 2 && *d < n.len())
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// How the raw samples of one series inside a step `(t - step, t]` become one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepAgg {
    /// The last sample (the default).
    Last,
    /// Sum of the samples.
    Sum,
    /// Mean of the samples.
    Avg,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
    /// Number of samples.
    Count,
}

impl StepAgg {
    /// Names accepted by `downsample`.
    pub const ALLOWED: &'static str = "last, avg, min, max, sum, count";

    /// The aggregator of a name.
    pub fn from_name(s: &str) -> Option<StepAgg> {
        Some(match s {
            "last" => StepAgg::Last,
            "sum" => StepAgg::Sum,
            "avg" => StepAgg::Avg,
            "min" => StepAgg::Min,
            "max" => StepAgg::Max,
            "count" => StepAgg::Count,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            StepAgg::Last => "last",
            StepAgg::Sum => "sum",
            StepAgg::Avg => "avg",
            StepAgg::Min => "min",
            StepAgg::Max => "max",
            StepAgg::Count => "count",
        }
    }
}

/// How the points inside a moving window become one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowAgg {
    /// Sum of the points.
    Sum,
    /// Mean of the points.
    Avg,
    /// Smallest point.
    Min,
    /// Largest point.
    Max,
    /// Number of points.
    Count,
}

impl WindowAgg {
    /// Names accepted by `moving`.
    pub const ALLOWED: &'static str = "avg, min, max, sum, count";

    /// The aggregator of a name.
    pub fn from_name(s: &str) -> Option<WindowAgg> {
        Some(match s {
            "sum" => WindowAgg::Sum,
            "avg" => WindowAgg::Avg,
            "min" => WindowAgg::Min,
            "max" => WindowAgg::Max,
            "count" => WindowAgg::Count,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            WindowAgg::Sum => "sum",
            WindowAgg::Avg => "avg",
            WindowAgg::Min => "min",
            WindowAgg::Max => "max",
            WindowAgg::Count => "count",
        }
    }
}

/// An aggregation across series, per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggOp {
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Number of series with a point.
    Count,
    /// The q-th percentile, `0 <= q <= 100`, linearly interpolated.
    Percentile(f64),
    /// The k largest series (keys kept).
    Topk(usize),
    /// The k smallest series (keys kept).
    Bottomk(usize),
}

impl AggOp {
    /// Whether storage can compute it from mergeable partials
    /// (count/sum/min/max), so it may run inside a fragment.
    pub fn is_mergeable(self) -> bool {
        matches!(
            self,
            AggOp::Sum | AggOp::Avg | AggOp::Min | AggOp::Max | AggOp::Count
        )
    }

    /// How it reads in plans.
    pub fn describe(self) -> String {
        match self {
            AggOp::Sum => "sum".into(),
            AggOp::Avg => "avg".into(),
            AggOp::Min => "min".into(),
            AggOp::Max => "max".into(),
            AggOp::Count => "count".into(),
            AggOp::Percentile(q) => format!("percentile {}", crate::printer::number(q)),
            AggOp::Topk(k) => format!("topk {k}"),
            AggOp::Bottomk(k) => format!("bottomk {k}"),
        }
    }
}
