//! The scheduler loop: one pass over every report (resume what a stop interrupted, record
//! missed slots, claim and start due ones), then sleep until the next slot, a finished task,
//! a configuration change, SIGHUP or SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::StandaloneError;
use super::config::{ConfigSource, Reload};
use super::runner::{Finish, Runner};
use super::slots::{self, Handled};
use crate::admin::{self, AdminState};
use crate::api::DailyReport;
use crate::run::{RunPhase, SlotState, SlotTask};
use crate::schedule::{Missed, SlotDecision};
use crate::signals::Hangups;
use crate::store::{LastHandled, RunKey, SlotKey};
use crate::validation::ResourceSet;

/// How the scheduler behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Most runs and backups at once.
    pub max_concurrent: usize,
    /// How often (wall clock) the configuration and the database are looked at again even
    /// when no slot is due.
    pub poll: Duration,
    /// How long a shutdown waits for work in flight before abandoning it (its slot stays
    /// started and is resumed at the next start).
    pub shutdown_grace: Duration,
    /// Interrupted slots older than this are not resumed.
    pub resume_within: chrono::Duration,
    pub admin_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            poll: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(25),
            resume_within: chrono::Duration::days(2),
            admin_listen: None,
        }
    }
}

/// Whose slots a decision is about: a report's, or the installation's backup.
struct Owner<'a> {
    namespace: &'a str,
    name: &'a str,
    /// The zone the slots' local dates are in.
    time_zone: &'a str,
}

/// First wait after a transient failure, doubled per attempt up to `MAX_RETRY_WAIT`.
const FIRST_RETRY_WAIT: chrono::Duration = chrono::Duration::minutes(1);
const MAX_RETRY_WAIT: chrono::Duration = chrono::Duration::minutes(10);

type Joined = Result<(tokio::task::Id, (SlotKey, Result<Finish, StandaloneError>)), JoinError>;

/// What woke the loop.
enum Wake {
    Tick,
    Hangup,
    Done(Joined),
    Stop,
}

pub struct Scheduler {
    config: ConfigSource,
    runner: Arc<Runner>,
    settings: Settings,
    admin: Arc<AdminState>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<(SlotKey, Result<Finish, StandaloneError>)>,
    /// Slots of tasks in `tasks`, by task id (a panicked task still frees its slot).
    running: HashMap<tokio::task::Id, SlotKey>,
    /// Slots whose last attempt failed transiently: when to try again, and how often tried.
    retry: HashMap<SlotKey, (DateTime<Utc>, u32)>,
}

impl Scheduler {
    pub fn new(config: ConfigSource, runner: Arc<Runner>, settings: Settings) -> Self {
        let admin = AdminState::new(runner.metrics.clone());
        Self {
            config,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            runner,
            settings,
            admin,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            retry: HashMap::new(),
        }
    }

    /// Runs until `stop` is cancelled (SIGTERM), then lets work in flight finish its current
    /// message within the grace period.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), StandaloneError> {
        let admin = self.serve_admin().await?;
        let freshness = tokio::spawn(crate::admin::refresh_report_freshness(
            self.runner.store.clone(),
            self.runner.metrics.clone(),
        ));
        let mut hangups = Hangups::new();
        info!(
            reports = self.config.current().reports.len(),
            "standalone scheduler started"
        );
        self.warn_if_nothing_scheduled();
        loop {
            let wake_at = self.pass().await;
            let wake = tokio::select! {
                () = self.runner.clock.sleep_until(wake_at) => Wake::Tick,
                () = tokio::time::sleep(self.settings.poll) => Wake::Tick,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Wake::Done(done),
                () = hangups.next() => Wake::Hangup,
                () = stop.cancelled() => Wake::Stop,
            };
            match wake {
                Wake::Tick => self.reload(false),
                Wake::Hangup => self.reload(true),
                Wake::Done(done) => self.task_done(done),
                Wake::Stop => break,
            }
        }
        self.drain().await;
        freshness.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        info!("standalone scheduler stopped");
        Ok(())
    }

    async fn serve_admin(&self) -> Result<Option<tokio::task::JoinHandle<()>>, StandaloneError> {
        let Some(addr) = self.settings.admin_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StandaloneError::Admin { addr, source })?;
        info!(%addr, "admin port: /metrics /healthz /readyz");
        Ok(Some(tokio::spawn(admin::serve(
            listener,
            self.admin.clone(),
        ))))
    }

    /// One scheduling pass; returns when to look again. Ready while the database answers.
    async fn pass(&mut self) -> DateTime<Utc> {
        let now = self.runner.clock.now();
        match self.schedule_all(now).await {
            Ok(wake) => {
                self.admin.set_ready(true);
                wake
            }
            Err(e) => {
                warn!(error = %e, category = %e.category(), "scheduling pass failed; trying again");
                self.admin.set_ready(false);
                now + chrono::Duration::seconds(5)
            }
        }
    }

    async fn schedule_all(&mut self, now: DateTime<Utc>) -> Result<DateTime<Utc>, StandaloneError> {
        let set = self.config.current();
        self.resume_interrupted(&set, now).await?;
        let handled = self.runner.store.last_handled_slots().await?;
        // Retries already due are running or start in this pass; only later ones wake us.
        let mut wake = self
            .retry
            .values()
            .map(|(at, _)| *at)
            .filter(|at| *at > now)
            .min();
        for report in &set.reports {
            if let Some(at) = self.schedule_report(&set, report, &handled, now).await? {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        if let Some(at) = self.schedule_backup(&set, &handled, now).await? {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        Ok(wake.unwrap_or(now + chrono::Duration::days(1)))
    }

    /// Restarts slots a stop or a transient failure left started.
    async fn resume_interrupted(
        &mut self,
        set: &Arc<ResourceSet>,
        now: DateTime<Utc>,
    ) -> Result<(), StandaloneError> {
        let since = now - self.settings.resume_within;
        for key in self.runner.store.unfinished_slots(since).await? {
            let busy = self.running.values().any(|k| *k == key);
            let waiting = self.retry.get(&key).is_some_and(|(at, _)| *at > now);
            if !busy && !waiting {
                info!(namespace = %key.namespace, report = %key.report, task = %key.task, slot = %key.slot, "resuming a started slot");
                self.spawn(key, set.clone());
            }
        }
        Ok(())
    }

    async fn schedule_report(
        &mut self,
        set: &Arc<ResourceSet>,
        report: &DailyReport,
        handled: &LastHandled,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StandaloneError> {
        let namespace = report.namespace().unwrap_or_else(|| "default".to_string());
        let name = report.name_any();
        let store = &self.runner.store;
        let active_since = store
            .active_since(&namespace, &name, report.spec.suspend, now)
            .await?;
        let last = |task| {
            handled
                .get(&(namespace.clone(), name.clone(), task))
                .copied()
        };
        let state = Handled {
            active_since,
            last_run: last(SlotTask::Run),
        };
        let due = match slots::due(report, &state, now) {
            Ok(due) => due,
            Err(e) => {
                // Validation refuses such a report before it gets here.
                error!(namespace = %namespace, report = %name, error = %e, "cannot schedule");
                return Ok(None);
            }
        };
        let next = due.next_run.map(|t| t.to_utc());
        self.runner.metrics.next_slot(&namespace, &name, next);
        if let Err(e) = self
            .runner
            .store
            .record_next_slot(&namespace, &name, next)
            .await
        {
            warn!(namespace = %namespace, report = %name, error = %e, "could not record the next slot");
        }
        let owner = Owner {
            namespace: &namespace,
            name: &name,
            time_zone: &report.spec.time_zone,
        };
        let started = self.act(set, &owner, SlotTask::Run, &due.run).await?;
        // Due while the report's previous run still goes on: the end of that run wakes the
        // loop, not the clock (which would spin).
        if !started && matches!(due.run, SlotDecision::Start { .. }) {
            return Ok(None);
        }
        Ok(due.wake_at)
    }

    /// The installation's one backup of the database (`--backup-schedule`), whatever the
    /// number of reports.
    async fn schedule_backup(
        &mut self,
        set: &Arc<ResourceSet>,
        handled: &LastHandled,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StandaloneError> {
        let Some(backup) = self.runner.backup.schedule.clone() else {
            return Ok(None);
        };
        let (namespace, name) = (slots::INSTALLATION, slots::BACKUP_REPORT);
        let active_since = self
            .runner
            .store
            .active_since(namespace, name, false, now)
            .await?;
        let last = handled
            .get(&(namespace.to_string(), name.to_string(), SlotTask::Backup))
            .copied();
        let decision = match slots::backup_due(&backup, active_since, last, now) {
            Ok(d) => d,
            Err(e) => {
                // The command line is checked at start; this is a bug if it happens.
                error!(error = %e, "cannot schedule the backup");
                return Ok(None);
            }
        };
        let owner = Owner {
            namespace,
            name,
            time_zone: &backup.time_zone,
        };
        let started = self.act(set, &owner, SlotTask::Backup, &decision).await?;
        if !started && matches!(decision, SlotDecision::Start { .. }) {
            return Ok(None);
        }
        Ok(slots::wake(&decision, now))
    }

    /// Carries out one decision: record what was missed, claim and start what is due.
    /// True when a due slot was started or found already claimed.
    async fn act(
        &mut self,
        set: &Arc<ResourceSet>,
        owner: &Owner<'_>,
        task: SlotTask,
        decision: &SlotDecision,
    ) -> Result<bool, StandaloneError> {
        let (namespace, name) = (owner.namespace, owner.name);
        let key = |slot: DateTime<Utc>| SlotKey {
            namespace: namespace.to_string(),
            report: name.to_string(),
            task,
            slot,
        };
        match decision {
            SlotDecision::Start { slot, missed } => {
                self.record_missed(owner, task, missed).await?;
                // One run of a report at a time, as with the operator's Jobs.
                let busy = self
                    .running
                    .values()
                    .any(|k| k.namespace == namespace && k.report == name && k.task == task);
                if busy {
                    return Ok(false);
                }
                let key = key(slot.to_utc());
                if self
                    .runner
                    .store
                    .claim_slot(&key, SlotState::Started)
                    .await?
                {
                    info!(namespace = %namespace, report = %name, task = %task, slot = %slot.fixed_offset(), "slot started");
                    self.spawn(key, set.clone());
                }
                return Ok(true);
            }
            SlotDecision::Skip { missed, .. } => self.record_missed(owner, task, missed).await?,
            SlotDecision::Wait { .. } | SlotDecision::Suspended => {}
        }
        Ok(false)
    }

    /// Records slots that passed unrun: a run's as that day's run in phase Missed (so
    /// `finrep status` and its exit code see it), a backup's in the log only.
    async fn record_missed(
        &self,
        owner: &Owner<'_>,
        task: SlotTask,
        missed: &Missed,
    ) -> Result<(), StandaloneError> {
        let (namespace, name) = (owner.namespace, owner.name);
        let store = &self.runner.store;
        for slot in &missed.listed {
            let key = SlotKey {
                namespace: namespace.to_string(),
                report: name.to_string(),
                task,
                slot: slot.to_utc(),
            };
            if !store.claim_slot(&key, SlotState::Missed).await? {
                continue;
            }
            warn!(namespace = %namespace, report = %name, task = %task, slot = %slot.fixed_offset(), "slot missed: it passed beyond its deadline while finrep was not running");
            if task == SlotTask::Run {
                let run = RunKey {
                    namespace,
                    report: name,
                    date: slot.date_naive(),
                };
                store
                    .record_missed_run(&run, owner.time_zone, slot.to_utc())
                    .await?;
                self.runner.metrics.slots_missed(1);
                self.runner
                    .metrics
                    .report_run_ended(namespace, name, RunPhase::Missed);
            }
        }
        let unlisted = missed.total.saturating_sub(missed.listed.len());
        if task == SlotTask::Run && unlisted > 0 {
            self.runner.metrics.slots_missed(unlisted as u64);
        }
        Ok(())
    }

    fn spawn(&mut self, key: SlotKey, set: Arc<ResourceSet>) {
        let runner = self.runner.clone();
        let permits = self.permits.clone();
        let task_key = key.clone();
        let handle = self.tasks.spawn(async move {
            let result = match permits.acquire_owned().await {
                Ok(_permit) => runner.execute(&set, &task_key).await,
                // The semaphore is never closed; were it, the slot is resumed later.
                Err(_) => Ok(Finish::Interrupted),
            };
            (task_key, result)
        });
        self.running.insert(handle.id(), key);
    }

    fn task_done(&mut self, done: Joined) {
        let now = self.runner.clock.now();
        let (key, result) = match done {
            Ok((id, (key, result))) => {
                self.running.remove(&id);
                (key, result)
            }
            Err(e) => {
                let key = self.running.remove(&e.id());
                // A panic is a bug; the slot stays started and is retried like a transient
                // failure, so nobody loses their copy to it.
                error!(error = %e, slot = ?key, "a slot's task panicked");
                if let Some(key) = key {
                    self.back_off(key, now);
                }
                return;
            }
        };
        match result {
            Ok(_) => {
                self.retry.remove(&key);
            }
            Err(e) if e.is_transient() => {
                warn!(namespace = %key.namespace, report = %key.report, task = %key.task, error = %e, "slot failed; will try again");
                self.back_off(key, now);
            }
            Err(e) => {
                error!(namespace = %key.namespace, report = %key.report, task = %key.task, error = %e, category = %e.category(), "slot failed");
                self.retry.remove(&key);
            }
        }
    }

    fn back_off(&mut self, key: SlotKey, now: DateTime<Utc>) {
        let attempts = self.retry.get(&key).map_or(0, |(_, n)| *n);
        let wait = (FIRST_RETRY_WAIT * 2_i32.pow(attempts.min(8))).min(MAX_RETRY_WAIT);
        self.retry.insert(key, (now + wait, attempts + 1));
    }

    /// Re-reads the configuration; a refused edit keeps the last good set.
    fn reload(&mut self, force: bool) {
        match self.config.reload(force) {
            Reload::Unchanged => {}
            Reload::Loaded(set) => {
                info!(
                    sources = set.sources.len(),
                    recipients = set.recipients.len(),
                    reports = set.reports.len(),
                    "configuration loaded"
                );
                self.warn_if_nothing_scheduled();
            }
            Reload::Refused(e) => {
                error!(error = %e, "configuration refused; the last good one stays in force")
            }
        }
    }

    /// An empty directory is allowed (reports may be added later, without a restart), but
    /// a mount pointing at the wrong place must not look like a quiet success.
    fn warn_if_nothing_scheduled(&self) {
        if self.config.current().reports.is_empty() {
            warn!(
                dir = %self.config.dir().display(),
                "no DailyReport in the configuration directory: nothing is scheduled until one is added"
            );
        }
    }

    /// After SIGTERM: no new slot; work in flight finishes its current message (delivery
    /// stops between messages) or is abandoned after the grace period, its slot resumed at
    /// the next start.
    async fn drain(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        info!(
            tasks = self.tasks.len(),
            "stopping: waiting for work in flight"
        );
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = self.tasks.join_next_with_id() => match done {
                    Some(done) => self.task_done(done),
                    None => return,
                },
                () = &mut grace => {
                    warn!(tasks = self.tasks.len(), "grace period over; abandoning work in flight (resumed at the next start)");
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }
}
