//! The metrics the controller and standalone mode serve on `/metrics`, under the same names
//! in both, so one dashboard reads either.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::run::{ErrorCategory, RunPhase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

/// Counters and histograms of reconciles and runs.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    runs: Family<PhaseLabel, Counter>,
    jobs_created: Counter,
    slots_missed: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("finrep");
        let reconciles = Family::<KindLabel, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            // 1 ms to ~16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let runs = Family::<PhaseLabel, Counter>::default();
        let jobs_created = Counter::default();
        let slots_missed = Counter::default();
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            duration.clone(),
        );
        registry.register("runs", "Runs that ended, by phase", runs.clone());
        registry.register("jobs_created", "Run Jobs created", jobs_created.clone());
        registry.register(
            "slots_missed",
            "Scheduled slots that passed without a run",
            slots_missed.clone(),
        );
        Arc::new(Self {
            registry,
            reconciles,
            errors,
            duration,
            runs,
            jobs_created,
            slots_missed,
        })
    }

    pub fn reconciled(&self, kind: &'static str, seconds: f64) {
        self.reconciles.get_or_create(&KindLabel { kind }).inc();
        self.duration
            .get_or_create(&KindLabel { kind })
            .observe(seconds);
    }

    pub fn failed(&self, kind: &'static str, category: ErrorCategory) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind,
                category: category.as_str(),
            })
            .inc();
    }

    pub fn run_ended(&self, phase: RunPhase) {
        self.runs
            .get_or_create(&PhaseLabel {
                phase: phase.as_str(),
            })
            .inc();
    }

    pub fn job_created(&self) {
        self.jobs_created.inc();
    }

    pub fn slots_missed(&self, n: u64) {
        self.slots_missed.inc_by(n);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
