//! Percentiles over recorded samples.

/// Sorted samples in microseconds.
#[derive(Debug, Default)]
pub(crate) struct Percentiles(Vec<u32>);

impl Percentiles {
    pub(crate) fn new(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-quantile (0–1) in milliseconds; NaN without samples.
    pub(crate) fn ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.0.len() as f64) * p).ceil() as usize;
        f64::from(self.0[rank.clamp(1, self.0.len()) - 1]) / 1000.0
    }

    /// p50, p90, p99, p99.9 and max, in milliseconds.
    pub(crate) fn summary(&self) -> [f64; 5] {
        [self.ms(0.5), self.ms(0.9), self.ms(0.99), self.ms(0.999), self.ms(1.0)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::new((1..=1000).rev().map(|ms| ms * 1000).collect());
        assert_eq!(p.summary(), [500.0, 900.0, 990.0, 999.0, 1000.0]);
        assert!(Percentiles::default().ms(0.5).is_nan());
    }
}
