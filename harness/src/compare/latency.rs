//! Wall-clock latency: two independent sample sets compared the way
//! criterion does: significant (Mann-Whitney U, p < α) *and* the bootstrap
//! interval of the relative change of medians wholly beyond ± the noise
//! threshold. Anything else is "unchanged (within noise)".

use serde::{Deserialize, Serialize};

use super::stats::{
    bootstrap_interval, mann_whitney_p, median, median_in_place, resample_into, SeededRng,
};
use super::{CompareConfig, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyComparison {
    pub baseline_samples: usize,
    pub current_samples: usize,
    pub baseline_median_us: f64,
    pub current_median_us: f64,
    /// current median / baseline median − 1 (0.10 = 10% slower).
    pub relative_change: f64,
    /// Bootstrap confidence interval of `relative_change`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided Mann-Whitney U p-value.
    pub p_value: f64,
    pub verdict: Verdict,
}

impl LatencyComparison {
    pub fn significant(&self, config: &CompareConfig) -> bool {
        self.p_value < config.significance_level
    }
}

/// Compares two sets of latency samples (µs). Fails, with the reason, when
/// either side has fewer than `config.min_samples`.
pub fn compare_latency(
    baseline_us: &[u64],
    current_us: &[u64],
    config: &CompareConfig,
) -> Result<LatencyComparison, String> {
    check_sample_count(baseline_us.len(), current_us.len(), config)?;
    let baseline = as_f64(baseline_us);
    let current = as_f64(current_us);
    let baseline_median_us = median(&baseline);
    let current_median_us = median(&current);
    let (ci_low, ci_high) = bootstrap_change_of_medians(&baseline, &current, config);
    let p_value = mann_whitney_p(&baseline, &current);
    Ok(LatencyComparison {
        baseline_samples: baseline.len(),
        current_samples: current.len(),
        baseline_median_us,
        current_median_us,
        relative_change: current_median_us / baseline_median_us - 1.0,
        ci_low,
        ci_high,
        p_value,
        verdict: classify(p_value, ci_low, ci_high, config),
    })
}

/// The rule: Regressed when significant and the interval lies wholly above
/// +noise, Improved when significant and wholly below −noise, else Unchanged.
pub fn classify(p_value: f64, ci_low: f64, ci_high: f64, config: &CompareConfig) -> Verdict {
    if p_value >= config.significance_level {
        Verdict::Unchanged
    } else if ci_low > config.noise_threshold {
        Verdict::Regressed
    } else if ci_high < -config.noise_threshold {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

pub(super) fn check_sample_count(
    baseline: usize,
    current: usize,
    config: &CompareConfig,
) -> Result<(), String> {
    let fewest = baseline.min(current);
    if fewest < config.min_samples {
        return Err(format!(
            "{fewest} samples on one side (baseline {baseline}, current {current}); at least {} needed",
            config.min_samples
        ));
    }
    Ok(())
}

/// Samples as f64, a zero clamped to 1 µs so ratios stay finite.
pub(super) fn as_f64(samples_us: &[u64]) -> Vec<f64> {
    samples_us.iter().map(|&s| s.max(1) as f64).collect()
}

/// Percentile bootstrap of median(current)/median(baseline) − 1, each side
/// resampled on its own.
fn bootstrap_change_of_medians(
    baseline: &[f64],
    current: &[f64],
    config: &CompareConfig,
) -> (f64, f64) {
    let mut rng = SeededRng::new(config.bootstrap_seed);
    let (mut baseline_draw, mut current_draw) = (Vec::new(), Vec::new());
    bootstrap_interval(config.bootstrap_resamples, config.confidence_level, || {
        resample_into(&mut rng, baseline, &mut baseline_draw);
        resample_into(&mut rng, current, &mut current_draw);
        median_in_place(&mut current_draw) / median_in_place(&mut baseline_draw) - 1.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::{normal_samples, shifted};

    const MEAN_US: f64 = 9_000.0;
    const SD_US: f64 = 800.0;

    fn compare(baseline: &[u64], current: &[u64]) -> LatencyComparison {
        compare_latency(baseline, current, &CompareConfig::default()).expect("enough samples")
    }

    #[test]
    fn a_fifteen_percent_slower_set_regresses() {
        let baseline = normal_samples(1, 200, MEAN_US, SD_US);
        let current = shifted(&normal_samples(2, 200, MEAN_US, SD_US), 1.15);
        let result = compare(&baseline, &current);
        assert_eq!(result.verdict, Verdict::Regressed, "{result:?}");
        assert!(result.p_value < 1e-6);
        assert!(
            result.ci_low > 0.05 && result.ci_low < 0.15 && result.ci_high > 0.15,
            "{result:?}"
        );
        assert!((result.relative_change - 0.15).abs() < 0.03, "{result:?}");
    }

    #[test]
    fn two_draws_of_one_distribution_are_unchanged_for_every_seed() {
        for seed in 0..20 {
            let baseline = normal_samples(seed, 200, MEAN_US, SD_US);
            let current = normal_samples(seed + 1_000, 200, MEAN_US, SD_US);
            let result = compare(&baseline, &current);
            assert_eq!(
                result.verdict,
                Verdict::Unchanged,
                "seed {seed}: {result:?}"
            );
        }
    }

    #[test]
    fn a_fifteen_percent_faster_set_improves() {
        let baseline = normal_samples(3, 200, MEAN_US, SD_US);
        let current = shifted(&normal_samples(4, 200, MEAN_US, SD_US), 0.85);
        let result = compare(&baseline, &current);
        assert_eq!(result.verdict, Verdict::Improved, "{result:?}");
        assert!(result.ci_high < -0.05, "{result:?}");
    }

    #[test]
    fn a_significant_three_percent_shift_is_within_noise() {
        let baseline = normal_samples(5, 400, MEAN_US, SD_US);
        let current = shifted(&normal_samples(6, 400, MEAN_US, SD_US), 1.03);
        let result = compare(&baseline, &current);
        let config = CompareConfig::default();
        assert!(
            result.significant(&config),
            "the shift is detectable: {result:?}"
        );
        assert!(result.ci_low < config.noise_threshold, "{result:?}");
        assert_eq!(result.verdict, Verdict::Unchanged, "{result:?}");
    }

    #[test]
    fn the_same_inputs_give_the_same_interval() {
        let baseline = normal_samples(7, 100, MEAN_US, SD_US);
        let current = normal_samples(8, 100, MEAN_US, SD_US);
        assert_eq!(compare(&baseline, &current), compare(&baseline, &current));
    }

    #[test]
    fn too_few_samples_are_not_compared() {
        let few = normal_samples(9, 10, MEAN_US, SD_US);
        let many = normal_samples(10, 200, MEAN_US, SD_US);
        let why = compare_latency(&few, &many, &CompareConfig::default()).unwrap_err();
        assert!(why.contains("10 samples"), "{why}");
    }

    #[test]
    fn the_noise_threshold_is_configurable() {
        let baseline = normal_samples(5, 400, MEAN_US, SD_US);
        let current = shifted(&normal_samples(6, 400, MEAN_US, SD_US), 1.03);
        let strict = CompareConfig {
            noise_threshold: 0.005,
            ..CompareConfig::default()
        };
        let result = compare_latency(&baseline, &current, &strict).expect("enough samples");
        assert_eq!(result.verdict, Verdict::Regressed, "{result:?}");
    }
}
