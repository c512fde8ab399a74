//! One slot's work, in-process: a report's run (the plan the controller would mount in its
//! Job, run as the Job runs it) or a backup of the database.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use super::StandaloneError;
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
    /// The installation's backup schedule; `None`: no backups (`--no-backup`).
    pub schedule: Option<super::slots::BackupSchedule>,
}

/// The name in the installation's dump files, as the chart's backup CronJob writes it:
/// `finrep_database_<YYYYMMDD>.sql.gz`.
pub const BACKUP_NAME: &str = "database";

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
        match key.task {
            SlotTask::Run => {
                find_report(set, &key.namespace, &key.report).map_err(|_| {
                    StandaloneError::Gone(format!("{}/{}", key.namespace, key.report))
                })?;
                self.run_report(set, key).await
            }
            SlotTask::Backup if key.namespace == super::slots::INSTALLATION => {
                self.back_up(key).await
            }
            SlotTask::Backup => {
                // A report's own backup slot, left started by an earlier version: the
                // installation's backup has taken its place.
                info!(namespace = %key.namespace, report = %key.report, "a report's backup slot of an earlier version: superseded by the installation's backup");
                Ok(Finish::Done)
            }
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

    /// The installation's backup of its slot `key`: one dump of the whole database, pruned
    /// by the installation's retention.
    async fn back_up(&self, key: &SlotKey) -> Result<Finish, StandaloneError> {
        let Some(schedule) = &self.backup.schedule else {
            return Ok(Finish::Done);
        };
        let today = crate::schedule::parse_time_zone(&schedule.time_zone)
            .map_or(key.slot.date_naive(), |tz| {
                key.slot.with_timezone(&tz).date_naive()
            });
        let target = BackupTarget {
            dir: &self.backup.dir,
            name: BACKUP_NAME,
            today,
            retention_days: schedule.retention_days,
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
                warn!(error = %e, "backup failed");
                Err(e.into())
            }
        }
    }
}
