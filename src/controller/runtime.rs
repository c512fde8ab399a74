//! `finrep controller`: waits for the CRDs, takes the leader lease, runs one Controller per
//! kind over shared caches, serves the admin port and stops cleanly on SIGTERM (or when the
//! lease is lost, so a standby takes over).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{Config, Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::context::{Catalog, Context};
use super::health_loop::HealthLoop;
use super::health_reconciler as health;
use super::objects::{Settings, labels};
use super::report_reconciler as reports;
use crate::admin::{self, AdminState};
use crate::api::{CatalogEntry, DailyReport, Recipient, Source, lean, selector};
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Leader election on a Lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease is valid after its last renewal: how long a standby waits at most.
    pub duration_seconds: u64,
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub settings: Settings,
    /// Watch one namespace only (a Role suffices), or all.
    pub namespace: Option<String>,
    pub admin_listen: Option<SocketAddr>,
    pub lease: Option<LeaseOptions>,
    /// Reconciles at once per kind.
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("the leader lease was lost; exiting so that a standby takes over")]
    LeaseLost,
    #[error("admin port {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The CRDs the controller needs established before it watches.
pub const CRD_NAMES: [&str; 3] = [
    "sources.finrep.io",
    "recipients.finrep.io",
    "dailyreports.finrep.io",
];

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` fires (or the lease is lost).
pub async fn run(
    client: Client,
    store: crate::store::Store,
    opts: ControllerOptions,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down: finishing reconciles in flight");
        on_signal.cancel();
    });
    let metrics = Metrics::new();
    let admin = AdminState::new(metrics.clone());
    let _admin = AbortOnDrop(serve_admin(opts.admin_listen, admin.clone()).await?);
    admin.set_database(false);
    let _database = AbortOnDrop(Some(tokio::spawn(watch_database(
        store.clone(),
        admin.clone(),
    ))));
    let _freshness = AbortOnDrop(Some(tokio::spawn(crate::admin::refresh_report_freshness(
        store.clone(),
        metrics.clone(),
    ))));
    wait_for_crds(&client, &stop).await?;
    let lease = match &opts.lease {
        Some(l) => match lead(&client, l, &stop).await? {
            Some(lease) => Some(lease),
            None => return Ok(()),
        },
        None => None,
    };
    let lost = lease
        .as_ref()
        .map(|l| watch_lease(l.0.clone(), stop.clone()));
    let catalog_feeds = catalog();
    let ctx = Arc::new(Context::new(
        client.clone(),
        store,
        opts.settings.clone(),
        clock,
        catalog_feeds.catalog.clone(),
        metrics,
    ));
    run_controllers(&client, &opts, ctx, catalog_feeds, &admin, &stop).await;
    admin.set_ready(false);
    if let Some((rx, task)) = lease {
        drop(rx);
        release(task).await;
    }
    match lost {
        Some(lost) if lost.is_cancelled() => Err(RuntimeError::LeaseLost),
        _ => Ok(()),
    }
}

/// How often the controller asks whether the database answers.
const DATABASE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps `/readyz` honest about the database: not ready while it does not answer (reconciles
/// meanwhile fail as transient and are retried), ready again once it does.
async fn watch_database(store: crate::store::Store, admin: Arc<AdminState>) {
    let mut answered = None;
    loop {
        let answers = store.ping().await;
        admin.set_database(answers);
        if answered != Some(answers) {
            if answers {
                info!("the database answers");
            } else {
                warn!("the database does not answer; not ready until it does");
            }
            answered = Some(answers);
        }
        tokio::time::sleep(DATABASE_CHECK).await;
    }
}

/// Stops a task (the admin port, the database watch) when `run` returns, however it returns.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

async fn serve_admin(
    addr: Option<SocketAddr>,
    state: Arc<AdminState>,
) -> Result<Option<tokio::task::JoinHandle<()>>, RuntimeError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Admin { addr, source })?;
    info!(%addr, "admin port: /metrics /healthz /readyz");
    Ok(Some(tokio::spawn(admin::serve(listener, state))))
}

/// Waits until every CRD is established (installed by Helm or kubectl before the controller
/// can watch), saying what it waits for.
async fn wait_for_crds(client: &Client, stop: &CancellationToken) -> Result<(), RuntimeError> {
    // Read untyped: only the conditions matter, and the typed CRD (its whole OpenAPI schema
    // type) would link a deserializer bigger than the rest of this check into the binary.
    let kind = ApiResource::erase::<CustomResourceDefinition>(&());
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &kind);
    for name in CRD_NAMES {
        loop {
            let established = crds
                .get_opt(name)
                .await?
                .is_some_and(|crd| is_established(&crd.data));
            if established {
                break;
            }
            warn!(
                crd = name,
                "waiting for the CRD to be established (kubectl apply -f crds/)"
            );
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
    Ok(())
}

/// Whether a CRD's status says `Established: True`.
fn is_established(crd: &serde_json::Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

type LeaseTask = tokio::task::JoinHandle<
    Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
>;

/// Becomes the leader, or returns `None` when told to stop first.
async fn lead(
    client: &Client,
    l: &LeaseOptions,
    stop: &CancellationToken,
) -> Result<Option<(tokio::sync::watch::Receiver<bool>, LeaseTask)>, RuntimeError> {
    let manager = LeaseManagerBuilder::new(client.clone(), &l.name)
        .with_namespace(&l.namespace)
        .with_identity(&l.identity)
        .with_duration(l.duration_seconds)
        .with_grace((l.duration_seconds / 3).max(1))
        .with_field_manager(super::cluster::FIELD_MANAGER)
        .build()
        .await?;
    let (mut rx, task) = manager.watch().await;
    info!(lease = %l.name, identity = %l.identity, "waiting for the leader lease");
    let held = tokio::select! {
        () = stop.cancelled() => false,
        held = rx.wait_for(|held| *held) => held.is_ok(),
    };
    if !held {
        drop(rx);
        release(task).await;
        return if stop.is_cancelled() {
            Ok(None)
        } else {
            Err(RuntimeError::LeaseLost)
        };
    }
    info!(lease = %l.name, "leading");
    Ok(Some((rx, task)))
}

/// Cancels `stop` when the lease is lost; the returned token tells whether that happened.
fn watch_lease(
    mut rx: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) -> CancellationToken {
    let lost = CancellationToken::new();
    let flag = lost.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            _ = rx.wait_for(|held| !*held) => {
                warn!("the leader lease was lost");
                flag.cancel();
                stop.cancel();
            }
        }
    });
    lost
}

async fn release(task: LeaseTask) {
    match task.await {
        Ok(Ok(manager)) => {
            if let Err(e) = manager.release().await {
                warn!(error = %e, "could not release the leader lease; a standby takes it when it expires");
            }
        }
        Ok(Err(e)) => warn!(error = %e, "leader election ended with an error"),
        Err(e) => warn!(error = %e, "leader election task failed"),
    }
}

/// The shared caches of Sources and Recipients and the streams that feed them.
struct CatalogFeeds {
    catalog: Catalog,
    source_writer: reflector::store::Writer<CatalogEntry<Source>>,
    recipient_writer: reflector::store::Writer<CatalogEntry<Recipient>>,
}

const SUBSCRIBE_BUFFER: usize = 1024;

/// How long a report's reconcile waits for the changes that triggered it to stop coming.
const REPORT_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Objects per page of the initial lists of Sources, Recipients and DailyReports.
const TENANT_PAGE_SIZE: u32 = 50;

fn catalog() -> CatalogFeeds {
    let (sources, source_writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
    let (recipients, recipient_writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
    CatalogFeeds {
        catalog: Catalog {
            sources,
            recipients,
        },
        source_writer,
        recipient_writer,
    }
}

/// Reports of the object's namespace whose selector (of `pick`) selects its labels.
fn selecting<K>(
    reports: &Store<DailyReport>,
    entry: &CatalogEntry<K>,
    pick: fn(&DailyReport) -> Option<&crate::api::LabelSelector>,
) -> Vec<ObjectRef<DailyReport>>
where
    K: crate::api::StatusMemory,
{
    let ns = entry.namespace();
    reports
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref().unwrap_or("default") == ns)
        .filter(|r| selector::selects(pick(r), entry))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn log_errors<T, E: std::fmt::Display>(
    kind: &'static str,
) -> impl Fn(Result<T, E>) -> std::future::Ready<()> {
    move |r| {
        if let Err(e) = r {
            warn!(kind, error = %e, "controller");
        }
        std::future::ready(())
    }
}

/// The changes of a kind tenants write, as they enter the caches: without what finrep never
/// reads (`api::lean`), the initial list read `TENANT_PAGE_SIZE` objects a page — a page is
/// read whole before `lean` sees it, so a small one bounds what objects bloated to the API
/// server's limit cost at once.
fn tenant_objects<K>(
    client: &Client,
    namespace: Option<&str>,
    trim: fn(&mut K),
) -> impl futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let config = watcher::Config::default().page_size(TENANT_PAGE_SIZE);
    watcher(api::<K>(client, namespace), config)
        .default_backoff()
        .modify(trim)
}

/// The Jobs or ConfigMaps the controller made (by their label), as one stream of changes: one
/// watch per served report namespace when it serves a list (its Roles are granted there only),
/// otherwise one watch of its namespace (or of all). Only their metadata is read: the owner
/// reference is all that maps a change to its report, and a plan's ConfigMap holds up to
/// 1 MiB that the report's reconcile reads itself when it needs it.
fn owned_objects<K>(
    client: &Client,
    opts: &ControllerOptions,
) -> futures_util::stream::BoxStream<'static, Result<PartialObjectMeta<K>, watcher::Error>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::WatchStreamExt;
    let owned =
        watcher::Config::default().labels(&format!("{}=finrep-controller", labels::MANAGED_BY));
    let report_namespaces = &opts.settings.report_namespaces;
    if report_namespaces.is_empty() {
        return watcher(
            api::<PartialObjectMeta<K>>(client, opts.namespace.as_deref()),
            owned,
        )
        .default_backoff()
        .touched_objects()
        .boxed();
    }
    futures_util::stream::select_all(report_namespaces.iter().map(|ns| {
        watcher(
            Api::<PartialObjectMeta<K>>::namespaced(client.clone(), ns),
            owned.clone(),
        )
        .default_backoff()
        .touched_objects()
        .boxed()
    }))
    .boxed()
}

/// The DailyReport controller: its own watch, the Jobs and ConfigMaps it owns, and the
/// Sources and Recipients its reports select.
fn report_loop(
    client: &Client,
    opts: &ControllerOptions,
    ctx: Arc<Context>,
    (report_store, report_writer): (Store<DailyReport>, reflector::store::Writer<DailyReport>),
    (sources, recipients): (
        ReflectHandle<CatalogEntry<Source>>,
        ReflectHandle<CatalogEntry<Recipient>>,
    ),
    stop: &CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let report_feed = tenant_objects::<DailyReport>(client, opts.namespace.as_deref(), lean::lean)
        .reflect(report_writer)
        .applied_objects();
    // A report reads every Source and Recipient of its namespace: a burst of their changes (an
    // apply of thousands, their first statuses) is one reconcile, not one per change.
    let config = Config::default()
        .concurrency(opts.concurrency)
        .debounce(REPORT_DEBOUNCE);
    let (for_sources, for_recipients) = (report_store.clone(), report_store.clone());
    Controller::for_stream(report_feed, report_store)
        .with_config(config)
        .owns_stream(owned_objects::<Job>(client, opts))
        .owns_stream(owned_objects::<ConfigMap>(client, opts))
        .watches_shared_stream(sources, move |s: Arc<CatalogEntry<Source>>| {
            selecting(&for_sources, s.as_ref(), |r| {
                r.spec.source_selector.as_ref()
            })
        })
        .watches_shared_stream(recipients, move |r: Arc<CatalogEntry<Recipient>>| {
            selecting(&for_recipients, r.as_ref(), |d| {
                d.spec.recipient_selector.as_ref()
            })
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reports::reconcile, reports::error_policy, ctx)
        .for_each(log_errors("DailyReport"))
}

/// Says ready on the admin port once every cache has synced.
async fn ready_when_synced(reports: &Store<DailyReport>, catalog: &Catalog, admin: &AdminState) {
    let (a, b, c) = futures_util::future::join3(
        reports.wait_until_ready(),
        catalog.sources.wait_until_ready(),
        catalog.recipients.wait_until_ready(),
    )
    .await;
    if a.is_ok() && b.is_ok() && c.is_ok() {
        info!("caches synced; ready");
        admin.set_ready(true);
    }
}

async fn run_controllers(
    client: &Client,
    opts: &ControllerOptions,
    ctx: Arc<Context>,
    feeds: CatalogFeeds,
    admin: &AdminState,
    stop: &CancellationToken,
) {
    let ns = opts.namespace.as_deref();
    let subscribe_sources = feeds.source_writer.subscribe();
    let subscribe_recipients = feeds.recipient_writer.subscribe();
    let (
        Some(sources_for_reports),
        Some(sources_for_self),
        Some(recipients_for_reports),
        Some(recipients_for_self),
    ) = (
        subscribe_sources.clone(),
        subscribe_sources,
        subscribe_recipients.clone(),
        subscribe_recipients,
    )
    else {
        warn!("shared caches cannot be subscribed to");
        return;
    };
    let source_feed = tenant_objects::<CatalogEntry<Source>>(client, ns, CatalogEntry::compact)
        .reflect_shared(feeds.source_writer)
        .for_each(log_errors("Source watch"));
    let recipient_feed =
        tenant_objects::<CatalogEntry<Recipient>>(client, ns, CatalogEntry::compact)
            .reflect_shared(feeds.recipient_writer)
            .for_each(log_errors("Recipient watch"));

    let (report_store, report_writer) = reflector::store();
    let report_loop = report_loop(
        client,
        opts,
        ctx.clone(),
        (report_store.clone(), report_writer),
        (sources_for_reports, recipients_for_reports),
        stop,
    );
    let source_loop = HealthLoop {
        store: ctx.catalog.sources.clone(),
        refresh: health::REFRESH,
        concurrency: opts.concurrency,
        reconcile: |source| health::reconcile_source(source, ctx.clone()),
        retry_after: |source, error: &_| health::source_error_policy(source, error, ctx.clone()),
        refresh_namespaces: ctx.runs_ended.subscribe(),
    }
    .run(sources_for_self, stop.clone());
    let recipient_loop = HealthLoop {
        store: ctx.catalog.recipients.clone(),
        refresh: health::REFRESH,
        concurrency: opts.concurrency,
        reconcile: |recipient| health::reconcile_recipient(recipient, ctx.clone()),
        retry_after: |recipient, error: &_| {
            health::recipient_error_policy(recipient, error, ctx.clone())
        },
        refresh_namespaces: ctx.runs_ended.subscribe(),
    }
    .run(recipients_for_self, stop.clone());

    let ready = ready_when_synced(&report_store, &ctx.catalog, admin);
    let loops = futures_util::future::join4(report_loop, source_loop, recipient_loop, ready);
    // The feeds never end on their own: they stop when the controllers have.
    tokio::select! {
        _ = loops => {}
        () = async { futures_util::future::join(source_feed, recipient_feed).await; } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::is_established;
    use serde_json::json;

    #[test]
    fn a_crd_is_established_only_when_its_condition_says_true() {
        let with =
            |conditions| json!({"metadata": {"name": "x"}, "status": {"conditions": conditions}});
        assert!(is_established(&with(json!([
            {"type": "NamesAccepted", "status": "True"},
            {"type": "Established", "status": "True"},
        ]))));
        assert!(!is_established(&with(
            json!([{"type": "Established", "status": "False"}])
        )));
        assert!(!is_established(&with(json!([]))));
        assert!(!is_established(&json!({"metadata": {"name": "x"}})));
        assert!(!is_established(&with(json!("not a list"))));
    }
}
