//! Liveness and readiness facts, set by the parts of the pipeline that know them and read by
//! `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` reports: ready once the models are loaded and partitions are assigned.
#[derive(Debug, Default)]
pub struct Health {
    models_loaded: AtomicBool,
    partitions_assigned: AtomicBool,
    shutting_down: AtomicBool,
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
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
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
        if self.shutting_down.load(Ordering::Relaxed) {
            reasons.push("shutting down");
        }
        (!reasons.is_empty()).then_some(reasons)
    }
}
