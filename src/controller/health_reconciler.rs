//! Reconciling Sources and Recipients: their status from what PostgreSQL recorded of their
//! fetches and deliveries (`health`), written only when it changed, and a Recipient's
//! `finrep.io/unblock` request carried out once per value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::cluster::apply_status;
use super::context::{Context, object_key};
use super::error::{ReconcileError, retry_after};
use super::health::{DeliveryRecord, FetchState, recipient_status, source_status, unblock_request};
use crate::api::selector::Selectable;
use crate::api::{CatalogEntry, CompactLabels, Recipient, Source, annotations};
use crate::validation::{FieldProblem, Severity, check_recipient, check_source};

pub const SOURCE_KIND: &str = "Source";
pub const RECIPIENT_KIND: &str = "Recipient";

/// Fetches and deliveries happen in runs no watch reports: statuses are refreshed this often.
pub const REFRESH_SECONDS: u64 = 600;
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(REFRESH_SECONDS);

/// The errors of a spec and of the cached object's labels.
fn problems(mut problems: Vec<FieldProblem>, labels: &CompactLabels) -> Vec<FieldProblem> {
    problems.retain(|p| p.severity == Severity::Error);
    problems.extend(crate::api::lean::label_problem(labels));
    problems
}

/// One reconcile of a Source; true when the status was written.
pub async fn reconcile_source_status(
    entry: &CatalogEntry<Source>,
    ctx: &Context,
) -> Result<bool, ReconcileError> {
    let (ns, name) = (entry.namespace(), entry.name());
    let fetched = ctx.snapshots.sources(&ctx.store, ns).await?;
    let status = source_status(
        entry.previous_status().as_ref(),
        entry.meta().generation,
        fetched.get(name).map(FetchState::from).as_ref(),
        &problems(check_source(entry.spec()), entry.labels()),
        ctx.clock.now(),
    );
    if entry.status_is(&status) {
        return Ok(false);
    }
    apply_status(
        &Api::<Source>::namespaced(ctx.client.clone(), ns),
        name,
        &status,
    )
    .await?;
    Ok(true)
}

/// One reconcile of a Recipient: a new unblock request first, then the status; true when the
/// status was written.
pub async fn reconcile_recipient_status(
    entry: &CatalogEntry<Recipient>,
    ctx: &Context,
) -> Result<bool, ReconcileError> {
    let (ns, name) = (entry.namespace(), entry.name());
    let spec = entry.spec();
    let email = spec.address(name);
    let previous = entry.previous_status();
    let request = unblock_request(
        entry
            .annotations()
            .get(annotations::UNBLOCK)
            .map(String::as_str),
        previous.as_ref(),
    );
    if let Some(value) = request {
        let lifted = ctx.store.unblock(ns, &email).await?;
        ctx.snapshots.forget_recipients(ns).await;
        info!(recipient = %name, namespace = %ns, value, lifted, "unblock requested");
    }
    let deliveries = ctx.snapshots.recipients(&ctx.store, ns).await?;
    let record = DeliveryRecord::of(&deliveries, &email);
    let mut status = recipient_status(
        previous.as_ref(),
        entry.meta().generation,
        spec.enabled,
        &record,
        &problems(check_recipient(spec), entry.labels()),
        ctx.clock.now(),
    );
    if let Some(value) = request {
        status.handled_unblock = Some(value.to_string());
    }
    if entry.status_is(&status) {
        return Ok(false);
    }
    apply_status(
        &Api::<Recipient>::namespaced(ctx.client.clone(), ns),
        name,
        &status,
    )
    .await?;
    Ok(true)
}

async fn timed<F>(
    kind: &'static str,
    key: String,
    ctx: &Context,
    work: F,
) -> Result<(), ReconcileError>
where
    F: std::future::Future<Output = Result<bool, ReconcileError>>,
{
    let started = Instant::now();
    let result = work.await;
    ctx.metrics
        .reconciled(kind, started.elapsed().as_secs_f64());
    result?;
    ctx.succeeded(&key);
    // Refreshed with every other object of its kind every `REFRESH_SECONDS`
    // (`health_loop`), not by a timer of its own: thousands of pending timers were a tenth
    // of the controller's memory.
    Ok(())
}

pub async fn reconcile_source(
    source: Arc<CatalogEntry<Source>>,
    ctx: Arc<Context>,
) -> Result<(), ReconcileError> {
    let key = object_key(SOURCE_KIND, source.as_ref());
    timed(
        SOURCE_KIND,
        key,
        &ctx,
        reconcile_source_status(&source, &ctx),
    )
    .await
}

pub async fn reconcile_recipient(
    recipient: Arc<CatalogEntry<Recipient>>,
    ctx: Arc<Context>,
) -> Result<(), ReconcileError> {
    let key = object_key(RECIPIENT_KIND, recipient.as_ref());
    timed(
        RECIPIENT_KIND,
        key,
        &ctx,
        reconcile_recipient_status(&recipient, &ctx),
    )
    .await
}

fn policy(kind: &'static str, key: String, error: &ReconcileError, ctx: &Context) -> Duration {
    let failures = ctx.failed(&key);
    ctx.metrics.failed(kind, error.category());
    warn!(object = %key, category = error.category().as_str(), failures, error = %error, "reconcile failed");
    retry_after(error.is_transient(), failures)
}

pub fn source_error_policy(
    source: Arc<CatalogEntry<Source>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Duration {
    policy(
        SOURCE_KIND,
        object_key(SOURCE_KIND, source.as_ref()),
        error,
        &ctx,
    )
}

pub fn recipient_error_policy(
    recipient: Arc<CatalogEntry<Recipient>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Duration {
    policy(
        RECIPIENT_KIND,
        object_key(RECIPIENT_KIND, recipient.as_ref()),
        error,
        &ctx,
    )
}
