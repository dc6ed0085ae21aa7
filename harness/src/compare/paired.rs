//! A/B mode (`gate --against <ref>`): the two builds ran alternately,
//! A, B, A, B, ..., so sample `i` of each side saw the same machine state.
//! Each pair is reduced to its ratio B/A, which cancels slow drift (a
//! noisy neighbour, thermal state, a growing table) that an unpaired test
//! would read as spread or as a change. Same rule as unpaired latency:
//! significant (Wilcoxon signed-rank on the log ratios) *and* the
//! bootstrap interval of the median ratio wholly beyond ± the noise
//! threshold.

use serde::{Deserialize, Serialize};

use super::latency::{as_f64, check_sample_count, classify};
use super::stats::{
    bootstrap_interval, median, median_in_place, resample_into, wilcoxon_signed_rank_p, SeededRng,
};
use super::{CompareConfig, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    pub pairs: usize,
    /// A: the reference build.
    pub baseline_median_us: f64,
    /// B: the build under test.
    pub candidate_median_us: f64,
    /// Median over pairs of B/A − 1 (0.10 = B 10% slower).
    pub relative_change: f64,
    /// Bootstrap (pairs resampled) confidence interval of `relative_change`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided Wilcoxon signed-rank p-value of ln(B/A).
    pub p_value: f64,
    pub verdict: Verdict,
}

/// A/B verdict of one scenario: the first interleaved comparison and,
/// when that said regressed, the confirming re-run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedOutcome {
    pub first: PairedComparison,
    pub rerun: Option<PairedComparison>,
}

impl PairedOutcome {
    /// A regression counts only when the re-run reproduces it.
    pub fn verdict(&self) -> Verdict {
        match (self.first.verdict, &self.rerun) {
            (Verdict::Regressed, Some(rerun)) if rerun.verdict != Verdict::Regressed => {
                Verdict::Unchanged
            }
            (verdict, _) => verdict,
        }
    }

    pub fn needs_confirmation(&self) -> bool {
        self.first.verdict == Verdict::Regressed && self.rerun.is_none()
    }
}

/// Compares interleaved samples: `baseline_us[i]` and `candidate_us[i]`
/// were taken one after the other. Both sides must have the same length
/// (drop an incomplete last pair) and at least `config.min_samples` pairs.
pub fn compare_interleaved(
    baseline_us: &[u64],
    candidate_us: &[u64],
    config: &CompareConfig,
) -> anyhow::Result<PairedComparison> {
    anyhow::ensure!(
        baseline_us.len() == candidate_us.len(),
        "interleaved samples come in pairs: {} baseline samples, {} candidate samples",
        baseline_us.len(),
        candidate_us.len()
    );
    check_sample_count(baseline_us.len(), candidate_us.len(), config)
        .map_err(anyhow::Error::msg)?;
    let (baseline, candidate) = (as_f64(baseline_us), as_f64(candidate_us));
    let ratios: Vec<f64> = candidate
        .iter()
        .zip(&baseline)
        .map(|(b, a)| b / a)
        .collect();
    let log_ratios: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let p_value = wilcoxon_signed_rank_p(&log_ratios);
    let (ci_low, ci_high) = bootstrap_median_ratio(&ratios, config);
    Ok(PairedComparison {
        pairs: ratios.len(),
        baseline_median_us: median(&baseline),
        candidate_median_us: median(&candidate),
        relative_change: median(&ratios) - 1.0,
        ci_low,
        ci_high,
        p_value,
        verdict: classify(p_value, ci_low, ci_high, config),
    })
}

/// What B adds to A in absolute terms: the median over pairs of
/// `candidate_us[i] − baseline_us[i]` and its percentile bootstrap
/// interval, µs (tier 4's FFI overhead). Pairs as for
/// [`compare_interleaved`]; `None` without pairs.
pub fn median_difference(
    baseline_us: &[u64],
    candidate_us: &[u64],
    config: &CompareConfig,
) -> Option<(f64, f64, f64)> {
    let differences: Vec<f64> = candidate_us
        .iter()
        .zip(baseline_us)
        .map(|(&b, &a)| b as f64 - a as f64)
        .collect();
    if differences.is_empty() {
        return None;
    }
    let mut rng = SeededRng::new(config.bootstrap_seed);
    let mut draw = Vec::new();
    let (low, high) =
        bootstrap_interval(config.bootstrap_resamples, config.confidence_level, || {
            resample_into(&mut rng, &differences, &mut draw);
            median_in_place(&mut draw)
        });
    Some((median(&differences), low, high))
}

/// Percentile bootstrap of median(B/A) − 1 over resampled pairs.
fn bootstrap_median_ratio(ratios: &[f64], config: &CompareConfig) -> (f64, f64) {
    let mut rng = SeededRng::new(config.bootstrap_seed);
    let mut draw = Vec::new();
    bootstrap_interval(config.bootstrap_resamples, config.confidence_level, || {
        resample_into(&mut rng, ratios, &mut draw);
        median_in_place(&mut draw) - 1.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::normal_samples;

    #[test]
    fn median_difference_is_what_b_adds_to_each_pair_despite_drift() {
        let (a, _) = drifting_pairs(7, 200, 1.0);
        // B takes each pair's A time plus 400 µs, give or take 50.
        let b: Vec<u64> = a
            .iter()
            .zip(normal_samples(8, a.len(), 400.0, 50.0))
            .map(|(a, extra)| a + extra)
            .collect();
        let (median, low, high) =
            median_difference(&a, &b, &CompareConfig::default()).expect("pairs");
        assert!((median - 400.0).abs() < 15.0, "median {median}");
        assert!(low <= median && median <= high, "{low} {median} {high}");
        assert!(high - low < 40.0, "the interval is tight: {low}..{high}");
        assert_eq!(median_difference(&[], &[], &CompareConfig::default()), None);
    }

    /// `n` interleaved pairs on a machine whose speed drifts by ±30% over
    /// the run; B is `factor` times A.
    fn drifting_pairs(seed: u64, n: usize, factor: f64) -> (Vec<u64>, Vec<u64>) {
        let drift = |i: usize| 1.0 + 0.3 * (i as f64 / 15.0).sin();
        let a = normal_samples(seed, n, 9_000.0, 800.0);
        let b = normal_samples(seed + 500, n, 9_000.0, 800.0);
        let scale = |samples: Vec<u64>, factor: f64| -> Vec<u64> {
            let scaled = samples
                .iter()
                .enumerate()
                .map(|(i, &s)| s as f64 * drift(i) * factor);
            scaled.map(|s| s.round() as u64).collect()
        };
        (scale(a, 1.0), scale(b, factor))
    }

    #[test]
    fn a_ten_percent_shift_is_detected() {
        let (a, b) = drifting_pairs(21, 200, 1.10);
        let result = compare_interleaved(&a, &b, &CompareConfig::default()).expect("pairs");
        assert_eq!(result.verdict, Verdict::Regressed, "{result:?}");
        assert!((result.relative_change - 0.10).abs() < 0.03, "{result:?}");
        let (a, b) = drifting_pairs(22, 200, 0.90);
        let result = compare_interleaved(&a, &b, &CompareConfig::default()).expect("pairs");
        assert_eq!(result.verdict, Verdict::Improved, "{result:?}");
    }

    #[test]
    fn no_shift_passes_for_every_seed() {
        for seed in 0..10 {
            let (a, b) = drifting_pairs(seed, 200, 1.0);
            let result = compare_interleaved(&a, &b, &CompareConfig::default()).expect("pairs");
            assert_eq!(
                result.verdict,
                Verdict::Unchanged,
                "seed {seed}: {result:?}"
            );
        }
    }

    #[test]
    fn a_paired_regression_stands_only_when_the_rerun_reproduces_it() {
        let config = CompareConfig::default();
        let (a, slower) = drifting_pairs(31, 200, 1.10);
        let (_, same) = drifting_pairs(31, 200, 1.0);
        let regressed = compare_interleaved(&a, &slower, &config).expect("pairs");
        let unchanged = compare_interleaved(&a, &same, &config).expect("pairs");
        let pending = PairedOutcome {
            first: regressed.clone(),
            rerun: None,
        };
        assert!(pending.needs_confirmation());
        assert_eq!(pending.verdict(), Verdict::Regressed);
        let reproduced = PairedOutcome {
            rerun: Some(regressed.clone()),
            ..pending.clone()
        };
        assert!(!reproduced.needs_confirmation());
        assert_eq!(reproduced.verdict(), Verdict::Regressed);
        let not_reproduced = PairedOutcome {
            rerun: Some(unchanged),
            ..pending
        };
        assert_eq!(not_reproduced.verdict(), Verdict::Unchanged);
    }

    #[test]
    fn unpaired_or_too_few_samples_are_refused() {
        let config = CompareConfig::default();
        assert!(compare_interleaved(&[9_000; 30], &[9_000; 29], &config).is_err());
        assert!(compare_interleaved(&[9_000; 10], &[9_000; 10], &config).is_err());
    }
}
