//! One slot's work, in-process: a report's run (the plan the controller would mount in its
//! Job, run as the Job runs it) or a backup of the database.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use kube::ResourceExt;
use tracing::{info, warn};

use super::StandaloneError;
use crate::api::DailyReport;
use crate::backup::{self, BackupTarget};
use crate::clock::Clock;
use crate::delivery::DeliveryOptions;
use crate::metrics::Metrics;
use crate::pipeline::{self, PipelineOptions};
use crate::plan::{RunAt, find_report, plan_for};
use crate::run::{RunPhase, SlotState, SlotTask};
use crate::store::{SlotKey, Store};
use crate::validation::ResourceSet;

/// Where backups go and what writes them.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    pub dir: PathBuf,
    pub pg_dump: PathBuf,
    /// The database's URL as pg_dump needs it (never logged).
    pub database_url: String,
}

/// How an attempt at a slot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// Stopped by a shutdown with deliveries left: the slot stays started, and the next
    /// start resumes it.
    Interrupted,
}

/// What every slot's work shares.
pub struct Runner {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Options of every run (`now` is set at each start).
    pub pipeline: PipelineOptions,
    /// Delivery of every run; its `stop` is the scheduler's shutdown.
    pub delivery: DeliveryOptions,
    pub backup: BackupSettings,
}

impl Runner {
    /// Carries out `key`'s task and records how its slot ended. A transient failure leaves
    /// the slot started, for the scheduler to try again.
    pub async fn execute(
        &self,
        set: &ResourceSet,
        key: &SlotKey,
    ) -> Result<Finish, StandaloneError> {
        let result = self.attempt(set, key).await;
        match &result {
            Ok(Finish::Done) => {
                self.store
                    .finish_slot(key, SlotState::Finished, None)
                    .await?
            }
            Ok(Finish::Interrupted) => {}
            Err(e) if e.is_transient() => {}
            Err(e) => {
                self.store
                    .finish_slot(key, SlotState::Failed, Some(&e.to_string()))
                    .await?;
                if key.task == SlotTask::Run {
                    self.metrics
                        .report_run_ended(&key.namespace, &key.report, RunPhase::Failed);
                }
            }
        }
        result
    }

    async fn attempt(&self, set: &ResourceSet, key: &SlotKey) -> Result<Finish, StandaloneError> {
        let report = find_report(set, &key.namespace, &key.report)
            .map_err(|_| StandaloneError::Gone(format!("{}/{}", key.namespace, key.report)))?;
        match key.task {
            SlotTask::Run => self.run_report(set, key).await,
            SlotTask::Backup => self.back_up(report, key).await,
        }
    }

    async fn run_report(
        &self,
        set: &ResourceSet,
        key: &SlotKey,
    ) -> Result<Finish, StandaloneError> {
        let blacklist = self.store.blacklisted_emails(&key.namespace).await?;
        let plan = plan_for(
            set,
            &key.namespace,
            &key.report,
            RunAt::Slot(key.slot),
            &blacklist,
        )?;
        let opts = PipelineOptions {
            now: self.clock.now(),
            ..self.pipeline.clone()
        };
        let outcome = pipeline::run(&plan, &self.store, &opts, Some(&self.delivery)).await?;
        self.metrics.run_finished(&outcome);
        let delivery = outcome.delivery.clone().unwrap_or_default();
        info!(
            namespace = %key.namespace,
            report = %key.report,
            date = %outcome.date,
            phase = %outcome.phase,
            articles = outcome.articles,
            sent = delivery.sent,
            pending = delivery.pending,
            deferred = delivery.deferred,
            failed = delivery.failed + delivery.bounced,
            "run ended"
        );
        Ok(
            if delivery.pending > 0 && self.delivery.stop.is_cancelled() {
                Finish::Interrupted
            } else {
                Finish::Done
            },
        )
    }

    async fn back_up(
        &self,
        report: &DailyReport,
        key: &SlotKey,
    ) -> Result<Finish, StandaloneError> {
        let name = backup_name(&key.namespace, &report.name_any());
        let target = BackupTarget {
            dir: &self.backup.dir,
            name: &name,
            today: local_date(report, key.slot),
            retention_days: report.spec.backup.retention_days,
        };
        let result = backup::backup(
            &self.store,
            &self.backup.database_url,
            &self.backup.pg_dump,
            &target,
        )
        .await;
        self.metrics.backup_done(result.is_ok());
        match result {
            Ok(done) => {
                info!(file = %done.file.display(), bytes = done.bytes, pruned = done.pruned.len(), "backup written");
                Ok(Finish::Done)
            }
            Err(e) => {
                warn!(error = %e, report = %key.report, "backup failed");
                Err(e.into())
            }
        }
    }
}

/// The name in a report's dump files: the report's name, as the operator's backup CronJob
/// writes it, prefixed by its namespace outside `default` (one directory holds them all).
pub fn backup_name(namespace: &str, report: &str) -> String {
    if namespace == "default" {
        report.to_string()
    } else {
        format!("{namespace}-{report}")
    }
}

/// The local date of `at` in the report's time zone (UTC when the zone is invalid, which
/// validation refuses before anything is scheduled).
fn local_date(report: &DailyReport, at: DateTime<Utc>) -> NaiveDate {
    crate::plan::local_date(report, at).unwrap_or_else(|_| at.date_naive())
}
