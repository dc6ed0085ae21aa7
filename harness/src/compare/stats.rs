//! The statistics behind the gate: medians, rank tests (Mann-Whitney U,
//! Wilcoxon signed-rank; normal approximation with tie and continuity
//! corrections), percentile bootstrap intervals, and a seeded generator.
//!
//! The generator is rand's ChaCha8 (rand_chacha), seeded from a `u64`:
//! unlike `StdRng` its stream is documented as portable, so a seed gives
//! the same interval on every machine (for the rand versions in
//! Cargo.lock). `erfc` is statrs's.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::function::erf::erfc;

/// The seeded generator of the bootstrap and of the tests' synthetic
/// samples: the same seed gives the same draws, run to run.
#[derive(Debug, Clone)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (unbiased). Panics when `n` is 0.
    pub fn index(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.random()
    }
}

/// The median (mean of the two middle values for an even count).
/// Reorders `values`. Panics on an empty slice.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let (count, mid) = (values.len(), values.len() / 2);
    let (lower, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if count % 2 == 1 {
        return upper;
    }
    let lower = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

pub fn median(values: &[f64]) -> f64 {
    median_in_place(&mut values.to_vec())
}

/// Ranks 1..=n of `values` (ties get their average rank), and the tie term
/// Σ(t³ − t) over groups of t equal values.
fn ranks_with_ties(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let average_rank = (start + end + 1) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = average_rank;
        }
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }
    (ranks, tie_term)
}

/// Two-sided p-value of a standard normal statistic, from `|distance| −
/// 0.5` (continuity correction) over `sd`. A zero spread means no evidence.
fn two_sided_p(distance: f64, sd: f64) -> f64 {
    if sd <= 0.0 {
        return 1.0;
    }
    let z = ((distance.abs() - 0.5).max(0.0)) / sd;
    erfc(z / std::f64::consts::SQRT_2).min(1.0)
}

/// Mann-Whitney U test of two independent samples: the two-sided p-value
/// that neither tends to be larger (normal approximation, tie-corrected).
pub fn mann_whitney_p(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, tie_term) = ranks_with_ties(&pooled);
    let rank_sum_x: f64 = ranks[..x.len()].iter().sum();
    let u_x = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    two_sided_p(u_x - n1 * n2 / 2.0, variance.max(0.0).sqrt())
}

/// Wilcoxon signed-rank test of paired differences: the two-sided p-value
/// that they are centred on zero (zeros dropped, normal approximation,
/// tie-corrected).
pub fn wilcoxon_signed_rank_p(differences: &[f64]) -> f64 {
    let nonzero: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    if nonzero.is_empty() {
        return 1.0;
    }
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (ranks, tie_term) = ranks_with_ties(&magnitudes);
    let positive_rank_sum: f64 = nonzero
        .iter()
        .zip(&ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, rank)| rank)
        .sum();
    let n = nonzero.len() as f64;
    let variance = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - tie_term / 48.0;
    two_sided_p(
        positive_rank_sum - n * (n + 1.0) / 4.0,
        variance.max(0.0).sqrt(),
    )
}

/// The `quantile` (0..=1) of sorted values, interpolating linearly.
pub fn quantile_of_sorted(sorted: &[f64], quantile: f64) -> f64 {
    let position = quantile.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// A percentile bootstrap interval: `statistic` evaluated `resamples`
/// times, the central `confidence` share of the results.
pub fn bootstrap_interval(
    resamples: usize,
    confidence: f64,
    mut statistic: impl FnMut() -> f64,
) -> (f64, f64) {
    let mut values: Vec<f64> = (0..resamples.max(1)).map(|_| statistic()).collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (
        quantile_of_sorted(&values, tail),
        quantile_of_sorted(&values, 1.0 - tail),
    )
}

/// Fills `into` with a resample (with replacement) of `from`.
pub fn resample_into(rng: &mut SeededRng, from: &[f64], into: &mut Vec<f64>) {
    into.clear();
    into.extend((0..from.len()).map(|_| from[rng.index(from.len())]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
    }

    #[test]
    fn ties_get_average_ranks() {
        let (ranks, tie_term) = ranks_with_ties(&[10.0, 20.0, 10.0, 30.0]);
        assert_eq!(ranks, vec![1.5, 3.0, 1.5, 4.0]);
        assert_eq!(tie_term, 6.0);
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        // Two-sided p of z = 1.96 is 0.05.
        assert!((erfc(1.96 / std::f64::consts::SQRT_2) - 0.049_995).abs() < 1e-5);
    }

    #[test]
    fn mann_whitney_matches_a_worked_example() {
        // U = 18, six tied pairs: σ² = 174.34, z = (|18 − 50| − 0.5)/σ = 2.3866,
        // p = 0.01701 (as scipy's mannwhitneyu, method="asymptotic").
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let y = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0];
        let p = mann_whitney_p(&x, &y);
        assert!((p - 0.017_01).abs() < 1e-4, "p = {p}");
        assert_eq!(mann_whitney_p(&[1.0; 30], &[1.0; 30]), 1.0);
    }

    #[test]
    fn wilcoxon_matches_a_worked_example() {
        // Differences 1..=20 all positive: W+ = 210, z = 3.9013, p = 9.569e-5.
        let differences: Vec<f64> = (1..=20).map(f64::from).collect();
        let p = wilcoxon_signed_rank_p(&differences);
        assert!((p - 9.569e-5).abs() < 1e-7, "p = {p}");
        let symmetric: Vec<f64> = (1..=20)
            .flat_map(|d| [f64::from(d), -f64::from(d)])
            .collect();
        assert!(wilcoxon_signed_rank_p(&symmetric) > 0.9);
        assert_eq!(wilcoxon_signed_rank_p(&[0.0; 10]), 1.0);
    }

    #[test]
    fn the_generator_is_reproducible_and_uniform() {
        let first: Vec<u64> = (0..5)
            .scan(SeededRng::new(7), |g, _| Some(g.next_u64()))
            .collect();
        let again: Vec<u64> = (0..5)
            .scan(SeededRng::new(7), |g, _| Some(g.next_u64()))
            .collect();
        assert_eq!(first, again);
        let mut rng = SeededRng::new(1);
        let mut counts = [0u32; 10];
        (0..100_000).for_each(|_| counts[rng.index(10)] += 1);
        // Each bucket expects 10,000 ± 95 (one standard deviation).
        assert!(
            counts.iter().all(|&c| c.abs_diff(10_000) < 500),
            "{counts:?}"
        );
    }
}
