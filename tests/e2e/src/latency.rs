//! Round-trip samples and their summary, shared by the e2e bench and the conformance
//! harness's exec-bench (which compiles this file by path).

use std::time::Duration;

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `once` ten times to warm up (page cache, the agent's first-use paths), then
/// `n` times; the timed samples, sorted.
pub fn samples(n: usize, mut once: impl FnMut() -> Duration) -> Vec<Duration> {
    for _ in 0..10 {
        once();
    }
    let mut s: Vec<Duration> = (0..n).map(|_| once()).collect();
    s.sort();
    s
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

/// `p50 X ms, p99 Y ms (min A, max B)` of sorted samples.
pub fn summary(sorted: &[Duration]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms (min {:.2}, max {:.2})",
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 99.0)),
        ms(sorted.first().copied().unwrap_or_default()),
        ms(sorted.last().copied().unwrap_or_default())
    )
}
