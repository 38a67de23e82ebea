//! Latency histograms: recording, merging across tasks and worker processes, summaries.
//!
//! Every task that receives envelopes keeps its own [`Latency`] (no shared lock on the hot path);
//! they are added together at the end of a run. A worker process ships its histogram to the parent
//! as base64 of HdrHistogram's V2 encoding (the interchange format of every HdrHistogram port), so
//! percentiles over several processes are exact, not averages of percentiles.

use anyhow::Context as _;
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest latency a histogram tracks, in microseconds: one hour. Anything slower is clamped
/// (saturating record) rather than dropped, so it still counts.
pub const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// Significant decimal digits kept: 3 means a value is recorded within 0.1 %.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Latency {
    /// An empty histogram from 1 µs to [`MAX_TRACKED_MICROS`].
    pub fn new() -> anyhow::Result<Self> {
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, SIGNIFICANT_DIGITS)
            .context("creating a latency histogram")?;
        Ok(Self { hist })
    }

    /// Records one latency (clamped to the tracked range; sub-microsecond counts as 1 µs).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(micros);
    }

    /// Records a latency given in microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        self.hist.saturating_record(micros.max(1));
    }

    /// Adds every value of `other` into this histogram.
    pub fn merge(&mut self, other: &Latency) -> anyhow::Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| anyhow::anyhow!("merging latency histograms: {e:?}"))
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The usual percentiles, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        Some(LatencySummary {
            count: self.hist.len(),
            p50_us: self.hist.value_at_quantile(0.50),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            mean_us: self.hist.mean(),
        })
    }

    /// The histogram in HdrHistogram V2 encoding, as base64 (for a worker's report to its parent).
    pub fn to_base64(&self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.hist, &mut buf)
            .map_err(|e| anyhow::anyhow!("serializing a latency histogram: {e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Decodes what [`Latency::to_base64`] made.
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("latency histogram is not base64")?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| anyhow::anyhow!("decoding a latency histogram: {e:?}"))?;
        // Re-home into our bounds so that merges never fail on mismatched ranges.
        let mut out = Self::new()?;
        out.hist
            .add(&decoded)
            .map_err(|e| anyhow::anyhow!("decoded latency histogram out of range: {e:?}"))?;
        Ok(out)
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value (within the histogram's precision).
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng as _, SeedableRng as _};

    fn values(seed: u64, n: usize) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A long tail: mostly small, some up to seconds.
        (0..n)
            .map(|_| {
                let r = rng.next_u64();
                let scale = [100, 10_000, 5_000_000][(r % 3) as usize];
                1 + (r >> 8) % scale
            })
            .collect()
    }

    #[test]
    fn merged_percentiles_equal_those_of_one_histogram_fed_everything() {
        let parts: Vec<Vec<u64>> = (0..8).map(|s| values(s, 5_000)).collect();
        let mut single = Latency::new().unwrap();
        let mut merged = Latency::new().unwrap();
        for part in &parts {
            let mut h = Latency::new().unwrap();
            for &v in part {
                h.record_micros(v);
                single.record_micros(v);
            }
            merged.merge(&h).unwrap();
        }
        assert_eq!(merged.len(), 40_000);
        assert_eq!(merged.summary(), single.summary());
    }

    #[test]
    fn merge_through_the_v2_encoding_loses_nothing() {
        // What a worker process does: encode, ship as text, decode in the parent, merge.
        let mut single = Latency::new().unwrap();
        let mut parent = Latency::new().unwrap();
        for seed in 0..3 {
            let mut worker = Latency::new().unwrap();
            for v in values(100 + seed, 3_000) {
                worker.record_micros(v);
                single.record_micros(v);
            }
            let wire = worker.to_base64().unwrap();
            parent.merge(&Latency::from_base64(&wire).unwrap()).unwrap();
        }
        assert_eq!(parent.summary(), single.summary());
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = Latency::new().unwrap();
        h.record(Duration::from_nanos(10));
        h.record(Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 2);
        let s = h.summary().unwrap();
        assert!(s.max_us >= MAX_TRACKED_MICROS);
    }

    #[test]
    fn empty_histogram_has_no_summary_and_garbage_does_not_decode() {
        assert!(Latency::new().unwrap().summary().is_none());
        assert!(Latency::from_base64("not base64!").is_err());
        assert!(Latency::from_base64("AAAA").is_err());
    }
}
