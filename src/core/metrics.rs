//! The metrics the controller and standalone mode serve on `/metrics`, under the same names
//! in both, so one dashboard reads either.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use chrono::{DateTime, Utc};

use crate::run::{DeliveryStatus, ErrorCategory, FetchStatus, RunOutcome, RunPhase};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    pub namespace: String,
    pub report: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportPhaseLabels {
    pub namespace: String,
    pub report: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportStatusLabels {
    pub namespace: String,
    pub report: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: &'static str,
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
    report_runs: Family<ReportPhaseLabels, Counter>,
    deliveries: Family<ReportStatusLabels, Gauge>,
    fetches: Family<OutcomeLabel, Counter>,
    steps: Family<StepLabel, Histogram>,
    next_slot: Family<ReportLabels, Gauge>,
    from_database: FromDatabase,
    backups: Family<OutcomeLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportChannelLabels {
    pub namespace: String,
    pub report: String,
    pub channel: &'static str,
    pub status: &'static str,
}

/// Gauges read from PostgreSQL every minute by the controller and by standalone mode, so they
/// hold whichever process ran the report.
struct FromDatabase {
    last_delivered: Family<ReportLabels, Gauge>,
    last_slot: Family<ReportLabels, Gauge>,
    channel_deliveries: Family<ReportChannelLabels, Gauge>,
    health: Family<ReportHealthLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportHealthLabels {
    pub namespace: String,
    pub report: String,
    pub health: &'static str,
}

impl FromDatabase {
    fn register(registry: &mut Registry) -> Self {
        let me = Self {
            last_delivered: Family::default(),
            last_slot: Family::default(),
            channel_deliveries: Family::default(),
            health: Family::default(),
        };
        registry.register(
            "report_last_delivered_timestamp_seconds",
            "When each report's latest delivered run (Succeeded or PartiallyDelivered) ended (Unix time), from PostgreSQL",
            me.last_delivered.clone(),
        );
        registry.register(
            "report_last_slot_timestamp_seconds",
            "The slot of each report's latest attempted run (Unix time), from PostgreSQL",
            me.last_slot.clone(),
        );
        registry.register(
            "report_channel_deliveries",
            "Deliveries of each report's latest run by channel (email, wecom, dingtalk, feishu, lark) and status, from PostgreSQL",
            me.channel_deliveries.clone(),
        );
        registry.register(
            "report_health",
            "Each report's verdict on its latest slot, as the console's card says it (1 for the current one of ok, running, failed, missed, needs-check, never-run), from PostgreSQL",
            me.health.clone(),
        );
        me
    }
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
        let report_runs = Family::<ReportPhaseLabels, Counter>::default();
        let deliveries = Family::<ReportStatusLabels, Gauge>::default();
        let fetches = Family::<OutcomeLabel, Counter>::default();
        let steps = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            // 10 ms to ~20 min.
            Histogram::new(exponential_buckets(0.01, 2.0, 18))
        });
        let next_slot = Family::<ReportLabels, Gauge>::default();
        let backups = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "report_runs",
            "Runs that ended, by report and phase",
            report_runs.clone(),
        );
        registry.register(
            "report_deliveries",
            "Deliveries of each report's latest run, by status",
            deliveries.clone(),
        );
        registry.register(
            "fetches",
            "Source fetches by outcome (ok, not-modified or the error kind)",
            fetches.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time each pipeline step took",
            steps.clone(),
        );
        registry.register(
            "next_slot_timestamp_seconds",
            "The next scheduled slot of each report (Unix time)",
            next_slot.clone(),
        );
        registry.register("backups", "Backups by result", backups.clone());
        let from_database = FromDatabase::register(&mut registry);
        Arc::new(Self {
            registry,
            reconciles,
            errors,
            duration,
            runs,
            jobs_created,
            slots_missed,
            report_runs,
            deliveries,
            fetches,
            steps,
            next_slot,
            from_database,
            backups,
        })
    }

    /// A run's outcome: its phase, its deliveries, its sources and its steps.
    pub fn run_finished(&self, outcome: &RunOutcome) {
        self.run_ended(outcome.phase);
        let report = |phase| ReportPhaseLabels {
            namespace: outcome.namespace.clone(),
            report: outcome.report.clone(),
            phase,
        };
        self.report_runs
            .get_or_create(&report(outcome.phase.as_str()))
            .inc();
        if let Some(d) = &outcome.delivery {
            self.report_deliveries(
                &outcome.namespace,
                &outcome.report,
                &[
                    (DeliveryStatus::Pending, d.pending),
                    (DeliveryStatus::Sent, d.sent),
                    (DeliveryStatus::Deferred, d.deferred),
                    (DeliveryStatus::Failed, d.failed),
                    (DeliveryStatus::Bounced, d.bounced),
                    (DeliveryStatus::Uncertain, d.uncertain),
                ],
            );
        }
        for source in &outcome.sources {
            let outcome = match (source.status, source.error_kind) {
                (FetchStatus::Failed, Some(kind)) => kind.as_str(),
                (status, _) => status.as_str(),
            };
            self.fetches.get_or_create(&OutcomeLabel { outcome }).inc();
        }
        for step in &outcome.steps {
            let seconds = (step.finished - step.started).num_milliseconds().max(0) as f64 / 1000.0;
            self.steps
                .get_or_create(&StepLabel {
                    step: step.step.as_str(),
                })
                .observe(seconds);
        }
    }

    /// The deliveries of a report's latest run, by status.
    pub fn report_deliveries(
        &self,
        namespace: &str,
        report: &str,
        counts: &[(DeliveryStatus, i64)],
    ) {
        for (status, n) in counts {
            self.deliveries
                .get_or_create(&ReportStatusLabels {
                    namespace: namespace.to_string(),
                    report: report.to_string(),
                    status: status.as_str(),
                })
                .set(*n);
        }
    }

    /// A report's run that ended in phase `phase` without an outcome (missed, failed early).
    pub fn report_run_ended(&self, namespace: &str, report: &str, phase: RunPhase) {
        self.run_ended(phase);
        self.report_runs
            .get_or_create(&ReportPhaseLabels {
                namespace: namespace.to_string(),
                report: report.to_string(),
                phase: phase.as_str(),
            })
            .inc();
    }

    /// The next slot of a report; `None` removes it (suspended or removed report).
    pub fn next_slot(&self, namespace: &str, report: &str, at: Option<DateTime<Utc>>) {
        let labels = ReportLabels {
            namespace: namespace.to_string(),
            report: report.to_string(),
        };
        match at {
            Some(t) => {
                self.next_slot.get_or_create(&labels).set(t.timestamp());
            }
            None => {
                self.next_slot.remove(&labels);
            }
        }
    }

    /// Each report's last delivery and last attempted slot, as PostgreSQL has them: one alert
    /// rule per report sees a report that stopped delivering, whatever the others do.
    pub fn report_freshness(&self, rows: &[crate::store::ReportFreshness]) {
        for r in rows {
            let labels = ReportLabels {
                namespace: r.namespace.clone(),
                report: r.report.clone(),
            };
            // A report that never delivered reads 0: "delivered at the epoch" is as stale as
            // it gets, and the rule still fires for it.
            self.from_database
                .last_delivered
                .get_or_create(&labels)
                .set(r.last_delivered_at.map_or(0, |t| t.timestamp()));
            if let Some(t) = r.last_slot {
                self.from_database
                    .last_slot
                    .get_or_create(&labels)
                    .set(t.timestamp());
            }
        }
    }

    /// The deliveries of each report's latest run by channel and status, as PostgreSQL has
    /// them (a state no longer counted reads 0).
    pub fn channel_deliveries(&self, rows: &[crate::store::ChannelDeliveries]) {
        let gauges = &self.from_database.channel_deliveries;
        gauges.clear();
        for r in rows {
            gauges
                .get_or_create(&ReportChannelLabels {
                    namespace: r.namespace.clone(),
                    report: r.report.clone(),
                    channel: r.channel.as_str(),
                    status: r.status.as_str(),
                })
                .set(r.count);
        }
    }

    /// Each report's verdict, one series per state (1 for the current one, 0 for the others)
    /// so an alert sees a report recover; a report gone from the records is dropped.
    pub fn report_health(&self, cards: &[crate::glance::Card]) {
        let gauges = &self.from_database.health;
        gauges.clear();
        for card in cards {
            for health in crate::overview::Health::ALL {
                gauges
                    .get_or_create(&ReportHealthLabels {
                        namespace: card.namespace.clone(),
                        report: card.report.clone(),
                        health: health.as_str(),
                    })
                    .set(i64::from(card.health == health));
            }
        }
    }

    pub fn backup_done(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.backups.get_or_create(&OutcomeLabel { outcome }).inc();
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
