//! Pacing from Shopify's cost bucket.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// `extensions.cost.throttleStatus`, as every answer carries it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

/// What this container last heard of a shop's bucket, and when.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    status: Option<(ThrottleStatus, Instant)>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    pub fn new() -> Self {
        Self { status: None }
    }

    /// Remembers the bucket as an answer reported it.
    pub fn heard(&mut self, status: ThrottleStatus, at: Instant) {
        self.status = Some((status, at));
    }

    /// Points in the bucket at `now`, as far as this container knows
    /// (`None`: nothing heard yet).
    pub fn available(&self, now: Instant) -> Option<f64> {
        self.status.map(|(s, at)| {
            let refilled =
                s.currently_available + s.restore_rate * now.saturating_duration_since(at).as_secs_f64();
            refilled.min(s.maximum_available)
        })
    }

    /// How long to wait before a call that costs `cost` points, so it is not
    /// throttled: nothing while the bucket holds enough (or nothing was heard).
    pub fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        match (self.status, self.available(now)) {
            (Some((s, _)), Some(have)) if have < cost && s.restore_rate > 0.0 => {
                Duration::from_secs_f64((cost.min(s.maximum_available) - have) / s.restore_rate)
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(available: f64) -> ThrottleStatus {
        ThrottleStatus {
            maximum_available: 100.0,
            currently_available: available,
            restore_rate: 10.0,
        }
    }

    #[test]
    fn a_call_waits_only_for_the_points_it_lacks() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        assert_eq!(p.wait_for(50.0, t0), Duration::ZERO, "nothing heard: no wait");
        p.heard(status(20.0), t0);
        assert_eq!(p.wait_for(10.0, t0), Duration::ZERO);
        assert_eq!(p.wait_for(50.0, t0), Duration::from_secs(3));
        // Two seconds later 20 points more are back.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(p.available(t2), Some(40.0));
        assert_eq!(p.wait_for(50.0, t2), Duration::from_secs(1));
        // The bucket never holds more than its maximum; a call dearer than
        // the bucket waits only for a full one.
        assert_eq!(p.available(t0 + Duration::from_secs(60)), Some(100.0));
        assert_eq!(p.wait_for(500.0, t0), Duration::from_secs(8));
    }
}
