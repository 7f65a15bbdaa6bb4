//! Liveness and readiness facts, set by the parts of the pipeline that know them and read by
//! `/readyz`.
//!
//! Broker reachability comes from the Kafka clients' callbacks (`kafka::PipelineContext`):
//! librdkafka's all-brokers-down error and its periodic statistics. An instance that cannot
//! reach any broker is alive but not ready, so a load balancer or operator sees the outage.

use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` reports: ready once the models are loaded and partitions are assigned, and
/// while at least one broker is reachable.
#[derive(Debug, Default)]
pub struct Health {
    models_loaded: AtomicBool,
    partitions_assigned: AtomicBool,
    shutting_down: AtomicBool,
    /// Set when events are routed by stage 2 (`pipeline.route_after_detection`): then an
    /// instance routes nothing until its detection consumer holds partitions too.
    detection_required: AtomicBool,
    detection_assigned: AtomicBool,
    /// Negative so the default (nothing heard yet) does not block readiness on its own: until
    /// a client reports otherwise, the partition assignment is what proves the broker is there.
    brokers_unreachable: AtomicBool,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set_models_loaded(&self, value: bool) {
        self.models_loaded.store(value, Ordering::Relaxed);
    }
    pub fn set_partitions_assigned(&self, value: bool) {
        self.partitions_assigned.store(value, Ordering::Relaxed);
    }
    /// Routing waits on stage 2, so readiness needs its partitions as well.
    pub fn require_detection_partitions(&self) {
        self.detection_required.store(true, Ordering::Relaxed);
    }
    pub fn set_detection_assigned(&self, value: bool) {
        self.detection_assigned.store(value, Ordering::Relaxed);
    }
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
    /// Whether any Kafka broker answers (from librdkafka's error and statistics callbacks).
    pub fn set_brokers_reachable(&self, value: bool) {
        self.brokers_unreachable.store(!value, Ordering::Relaxed);
    }

    /// `None` when ready, else every reason it is not.
    pub fn not_ready_reasons(&self) -> Option<Vec<&'static str>> {
        let mut reasons = Vec::new();
        if !self.models_loaded.load(Ordering::Relaxed) {
            reasons.push("models not loaded");
        }
        if !self.partitions_assigned.load(Ordering::Relaxed) {
            reasons.push("no input partitions assigned");
        }
        if self.detection_required.load(Ordering::Relaxed)
            && !self.detection_assigned.load(Ordering::Relaxed)
        {
            reasons.push("no detection partitions assigned (routing waits on them)");
        }
        if self.brokers_unreachable.load(Ordering::Relaxed) {
            reasons.push("no Kafka broker reachable");
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            reasons.push("shutting down");
        }
        (!reasons.is_empty()).then_some(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_after_detection_is_ready_only_with_detection_partitions() {
        let health = Health::new();
        health.set_models_loaded(true);
        health.set_partitions_assigned(true);
        assert_eq!(health.not_ready_reasons(), None, "not required: ready");
        health.require_detection_partitions();
        assert_eq!(
            health.not_ready_reasons(),
            Some(vec![
                "no detection partitions assigned (routing waits on them)"
            ])
        );
        health.set_detection_assigned(true);
        assert_eq!(health.not_ready_reasons(), None);
        health.set_detection_assigned(false);
        assert!(health.not_ready_reasons().is_some());
    }

    #[test]
    fn unreachable_brokers_make_a_loaded_assigned_instance_not_ready_until_they_return() {
        let health = Health::new();
        health.set_models_loaded(true);
        health.set_partitions_assigned(true);
        assert_eq!(health.not_ready_reasons(), None);
        health.set_brokers_reachable(false);
        assert_eq!(
            health.not_ready_reasons(),
            Some(vec!["no Kafka broker reachable"])
        );
        health.set_brokers_reachable(true);
        assert_eq!(health.not_ready_reasons(), None);
    }
}
