//! Each command: what it reads and writes through the API, and what it prints. The verbs each
//! one uses are listed in docs/operator.md ("kubectl finrep") and granted by the chart's
//! `finrep-editor` Role.

use std::io::Read as _;

use anyhow::Context as _;
use finrep_core::api::{
    DailyReport, PreviewPhase, PreviewStatus, Recipient, Source, TestSendPhase, TestSendStatus,
    annotations,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{ListParams, LogParams};
use serde::Serialize;

use crate::client::{Cluster, Progress, request_value, wait_for};
use crate::summary::{self, ReportSummary, Verdict};
use crate::{Cli, Command, Exit, Output, WaitArgs};

/// The label the Job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "job-name";
/// The labels finrep's controller puts on a run's Job (`objects::labels`).
const REPORT_LABEL: &str = "finrep.io/report";
const RUN_DATE_LABEL: &str = "finrep.io/run-date";
const PURPOSE_LABEL: &str = "finrep.io/purpose";

pub async fn run(cli: &Cli) -> anyhow::Result<Exit> {
    let cluster = Cluster::connect(cli).await?;
    let out = cli.output;
    match &cli.command {
        Command::Status { report } => status(&cluster, out, report.as_deref()).await,
        Command::Preview {
            report,
            date,
            as_recipient,
            html,
            wait,
        } => {
            let asked = PreviewAsk {
                report,
                date: date.as_deref(),
                recipient: as_recipient.as_deref(),
                html: html.as_deref(),
            };
            preview(&cluster, out, &asked, *wait).await
        }
        Command::TestSend { report, to, wait } => test_send(&cluster, out, report, to, *wait).await,
        Command::Logs {
            report,
            date,
            preview,
            test_send,
        } => {
            let which = match (preview, test_send, date) {
                (true, _, _) => LogsOf::Preview,
                (_, true, _) => LogsOf::TestSend,
                (_, _, Some(d)) => LogsOf::Date(d.clone()),
                _ => LogsOf::LastRun,
            };
            logs(&cluster, report, &which).await
        }
        Command::RunNow { report, wait } => run_now(&cluster, out, report, *wait).await,
        Command::Unblock { recipient, wait } => unblock(&cluster, out, recipient, *wait).await,
    }
}

/// Prints data as the output format asks (text is the caller's).
fn print_data<T: Serialize>(out: Output, data: &T) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(data)?),
        Output::Yaml => print!("{}", serde_norway::to_string(data)?),
        Output::Text => {}
    }
    Ok(())
}

async fn status(cluster: &Cluster, out: Output, report: Option<&str>) -> anyhow::Result<Exit> {
    let reports: Vec<DailyReport> = match report {
        Some(name) => vec![cluster.get::<DailyReport>("DailyReport", name).await?],
        None => {
            cluster
                .api::<DailyReport>()
                .list(&ListParams::default())
                .await?
                .items
        }
    };
    let sources = cluster
        .api::<Source>()
        .list(&ListParams::default())
        .await?
        .items;
    let recipients = cluster
        .api::<Recipient>()
        .list(&ListParams::default())
        .await?
        .items;
    let events = match cluster.api::<Event>().list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!("note: Events not read ({e}); warnings are left out");
            Vec::new()
        }
    };
    let mut summaries: Vec<ReportSummary> = Vec::new();
    for r in &reports {
        let job = r
            .status
            .as_ref()
            .and_then(|s| s.last_run.as_ref())
            .and_then(|l| l.job.as_deref());
        let pods = match job {
            // The pods say why a run is stuck; without them the rest still stands.
            Some(job) => pods_of(cluster, job).await.unwrap_or_else(|e| {
                eprintln!("note: the pods of Job {job} not read ({e:#})");
                Vec::new()
            }),
            None => Vec::new(),
        };
        summaries.push(summary::summarise(r, &sources, &recipients, &pods, &events));
    }
    match out {
        Output::Text if summaries.is_empty() => {
            println!("no DailyReport in namespace {}", cluster.namespace);
        }
        Output::Text => print!("{}", summary::render_text(&summaries)),
        _ => print_data(out, &summaries)?,
    }
    let attention = summaries
        .iter()
        .any(|s| s.verdict == Verdict::NeedsAttention);
    Ok(if attention {
        Exit::NeedsAttention
    } else {
        Exit::Done
    })
}

async fn pods_of(cluster: &Cluster, job: &str) -> anyhow::Result<Vec<Pod>> {
    let selector = format!("{JOB_NAME_LABEL}={job}");
    let mut pods = cluster
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
        .context("listing the Job's pods")?
        .items;
    pods.sort_by_key(|p| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
    });
    Ok(pods)
}

struct PreviewAsk<'a> {
    report: &'a str,
    date: Option<&'a str>,
    recipient: Option<&'a str>,
    html: Option<&'a std::path::Path>,
}

async fn preview(
    cluster: &Cluster,
    out: Output,
    asked: &PreviewAsk<'_>,
    wait: WaitArgs,
) -> anyhow::Result<Exit> {
    if let Some(d) = asked.date {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .with_context(|| format!("--date {d:?} is not a date YYYY-MM-DD"))?;
    }
    cluster
        .get::<DailyReport>("DailyReport", asked.report)
        .await?;
    let value = request_value();
    cluster
        .annotate::<DailyReport>(
            asked.report,
            &[
                (annotations::PREVIEW, Some(&value)),
                (annotations::PREVIEW_DATE, asked.date),
                (annotations::PREVIEW_AS, asked.recipient),
            ],
        )
        .await?;
    if wait.no_wait {
        println!("asked for preview {value} of DailyReport {}", asked.report);
        return Ok(Exit::Done);
    }
    let done = wait_for(wait.timeout(), || async {
        let r = cluster
            .get::<DailyReport>("DailyReport", asked.report)
            .await?;
        Ok(
            match r
                .status
                .and_then(|s| s.preview)
                .filter(|p| p.request == value)
            {
                Some(p) if p.phase.is_final() => Progress::Done(p),
                Some(p) => Progress::Waiting(summary::preview_words(&p)),
                None => Progress::Waiting("waiting for the controller to take the request".into()),
            },
        )
    })
    .await?;
    let Some(p) = done else {
        eprintln!(
            "timed out after {}s; the preview may still come: kubectl finrep status {}",
            wait.timeout, asked.report
        );
        return Ok(Exit::TimedOut);
    };
    if p.phase != PreviewPhase::Ready {
        print_data(out, &p)?;
        eprintln!("preview {}", summary::preview_words(&p));
        return Ok(Exit::Failed);
    }
    show_preview(cluster, out, &p, asked.html).await
}

/// The preview's copy from its ConfigMap: the HTML to a file when asked, the text (or a chat
/// group's message) on stdout.
async fn show_preview(
    cluster: &Cluster,
    out: Output,
    p: &PreviewStatus,
    html: Option<&std::path::Path>,
) -> anyhow::Result<Exit> {
    let name = p
        .config_map
        .as_deref()
        .context("the preview names no ConfigMap")?;
    let map = cluster.get::<ConfigMap>("ConfigMap", name).await?;
    if let Some(path) = html {
        let body = config_map_text(&map, "report.html")
            .context("the preview holds no HTML (a chat group's preview is message.md)")?;
        std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("preview {}", summary::preview_words(p));
    for f in &p.sources_failing {
        eprintln!("  source {} failed: {}", f.source, f.error);
    }
    match out {
        Output::Text => {
            let text = config_map_text(&map, "report.txt")
                .or_else(|| config_map_text(&map, "message.md"))
                .unwrap_or_default();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        _ => print_data(out, p)?,
    }
    Ok(Exit::Done)
}

/// A key of the preview's ConfigMap, from `data` or gunzipped from `binaryData` (`KEY.gz`).
fn config_map_text(map: &ConfigMap, key: &str) -> Option<String> {
    if let Some(text) = map.data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.clone());
    }
    let gz = map.binary_data.as_ref()?.get(&format!("{key}.gz"))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.0.as_slice())
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

async fn test_send(
    cluster: &Cluster,
    out: Output,
    report: &str,
    to: &str,
    wait: WaitArgs,
) -> anyhow::Result<Exit> {
    cluster.get::<DailyReport>("DailyReport", report).await?;
    let value = format!("{to}#{}", request_value());
    cluster
        .annotate::<DailyReport>(report, &[(annotations::TEST_SEND, Some(&value))])
        .await?;
    if wait.no_wait {
        println!("asked for a test copy to {to} ({value})");
        return Ok(Exit::Done);
    }
    let done = wait_for(wait.timeout(), || async {
        let r = cluster.get::<DailyReport>("DailyReport", report).await?;
        Ok(
            match r
                .status
                .and_then(|s| s.test_send)
                .filter(|t| t.request == value)
            {
                Some(t) if t.phase.is_final() => Progress::Done(t),
                Some(t) => Progress::Waiting(summary::test_send_words(&t)),
                None => Progress::Waiting("waiting for the controller to take the request".into()),
            },
        )
    })
    .await?;
    let Some(t) = done else {
        eprintln!(
            "timed out after {}s: kubectl finrep status {report}",
            wait.timeout
        );
        return Ok(Exit::TimedOut);
    };
    report_test_send(out, &t)
}

fn report_test_send(out: Output, t: &TestSendStatus) -> anyhow::Result<Exit> {
    match out {
        Output::Text => println!("test copy {}", summary::test_send_words(t)),
        _ => print_data(out, t)?,
    }
    Ok(if t.phase == TestSendPhase::Sent {
        Exit::Done
    } else {
        Exit::Failed
    })
}

enum LogsOf {
    LastRun,
    Date(String),
    Preview,
    TestSend,
}

async fn logs(cluster: &Cluster, report: &str, which: &LogsOf) -> anyhow::Result<Exit> {
    let r = cluster.get::<DailyReport>("DailyReport", report).await?;
    let status = r.status.clone().unwrap_or_default();
    let history = &r.spec.history;
    let job = match which {
        LogsOf::LastRun => status.last_run.as_ref().and_then(|l| l.job.clone()),
        LogsOf::Preview => status.preview.as_ref().and_then(|p| p.job.clone()),
        LogsOf::TestSend => status.test_send.as_ref().and_then(|t| t.job.clone()),
        LogsOf::Date(date) => run_job_of(cluster, report, date).await?,
    };
    let what = match which {
        LogsOf::LastRun => "the last run".to_string(),
        LogsOf::Date(d) => format!("the run of {d}"),
        LogsOf::Preview => "the last preview".to_string(),
        LogsOf::TestSend => "the last test send".to_string(),
    };
    let Some(job) = job else {
        eprintln!("{what} of {report} has no Job on record (kubectl finrep status {report})");
        return Ok(Exit::Failed);
    };
    if cluster.api::<Job>().get_opt(&job).await?.is_none() {
        eprintln!(
            "the Job {job} of {what} is no longer kept: spec.history keeps the Jobs of the last {} succeeded and {} failed runs (raise it to keep more); what the run recorded: kubectl finrep status {report}",
            history.succeeded, history.failed
        );
        return Ok(Exit::Failed);
    }
    let pods = pods_of(cluster, &job).await?;
    if pods.is_empty() {
        eprintln!("the Job {job} has no pod yet (kubectl describe job {job})");
        return Ok(Exit::Failed);
    }
    for pod in &pods {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        println!("==> pod {} ({phase}) of Job {job} <==", pod.name_any());
        let text = cluster
            .api::<Pod>()
            .logs(&pod.name_any(), &LogParams::default())
            .await
            .with_context(|| format!("reading the log of pod {}", pod.name_any()))?;
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
    }
    Ok(Exit::Done)
}

/// The newest run Job of `date` (never a preview's or test send's).
async fn run_job_of(cluster: &Cluster, report: &str, date: &str) -> anyhow::Result<Option<String>> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .with_context(|| format!("--date {date:?} is not a date YYYY-MM-DD"))?;
    let selector = format!("{REPORT_LABEL}={report},{RUN_DATE_LABEL}={date}");
    let jobs = cluster
        .api::<Job>()
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    Ok(jobs
        .into_iter()
        .filter(|j| !j.labels().contains_key(PURPOSE_LABEL))
        .max_by_key(|j| {
            j.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        })
        .map(|j| j.name_any()))
}

async fn run_now(
    cluster: &Cluster,
    out: Output,
    report: &str,
    wait: WaitArgs,
) -> anyhow::Result<Exit> {
    cluster.get::<DailyReport>("DailyReport", report).await?;
    let value = request_value();
    cluster
        .annotate::<DailyReport>(report, &[(annotations::RUN_NOW, Some(&value))])
        .await?;
    if wait.no_wait {
        println!("asked for a run of {report} now ({value})");
        return Ok(Exit::Done);
    }
    let done = wait_for(wait.timeout(), || async {
        let r = cluster.get::<DailyReport>("DailyReport", report).await?;
        let status = r.status.clone().unwrap_or_default();
        if status.handled_run_now.as_deref() == Some(value.as_str()) {
            return Ok(Progress::Done(Ok(status)));
        }
        let not_ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == finrep_core::api::conditions::READY && c.status == "False");
        if let Some(c) = not_ready {
            return Ok(Progress::Done(Err(c.message.clone())));
        }
        Ok(Progress::Waiting(
            match (&status.waiting, &status.active_run) {
                (Some(w), _) => w.clone(),
                (None, Some(job)) => {
                    format!("a run is in progress ({job}); the manual run starts after it")
                }
                _ => "waiting for the controller to take the request".to_string(),
            },
        ))
    })
    .await?;
    match done {
        None => {
            eprintln!(
                "timed out after {}s: kubectl finrep status {report}",
                wait.timeout
            );
            Ok(Exit::TimedOut)
        }
        Some(Err(why)) => {
            eprintln!("the run cannot start: {why}");
            Ok(Exit::Failed)
        }
        Some(Ok(status)) => {
            match out {
                Output::Text => println!(
                    "run started: Job {} (kubectl finrep status {report}; kubectl finrep logs {report})",
                    status
                        .active_run
                        .as_deref()
                        .or(status.last_run.as_ref().and_then(|l| l.job.as_deref()))
                        .unwrap_or("?")
                ),
                _ => print_data(out, &status.last_run)?,
            }
            Ok(Exit::Done)
        }
    }
}

async fn unblock(
    cluster: &Cluster,
    out: Output,
    name: &str,
    wait: WaitArgs,
) -> anyhow::Result<Exit> {
    cluster.get::<Recipient>("Recipient", name).await?;
    let value = request_value();
    cluster
        .annotate::<Recipient>(name, &[(annotations::UNBLOCK, Some(&value))])
        .await?;
    if wait.no_wait {
        println!("asked to unblock {name} ({value})");
        return Ok(Exit::Done);
    }
    let done = wait_for(wait.timeout(), || async {
        let r = cluster.get::<Recipient>("Recipient", name).await?;
        let status = r.status.clone().unwrap_or_default();
        Ok(
            if status.handled_unblock.as_deref() == Some(value.as_str()) {
                Progress::Done(status)
            } else {
                Progress::Waiting("waiting for the controller to act on the annotation".into())
            },
        )
    })
    .await?;
    let Some(status) = done else {
        eprintln!(
            "timed out after {}s: kubectl get recipient {name} -o yaml",
            wait.timeout
        );
        return Ok(Exit::TimedOut);
    };
    let deliverable = status
        .conditions
        .iter()
        .find(|c| c.type_ == finrep_core::api::conditions::DELIVERABLE);
    if out != Output::Text {
        print_data(out, &status)?;
    }
    match deliverable {
        Some(c) if c.status == "True" || !status.blacklisted => {
            if out == Output::Text {
                println!("{name} is mailed again from the next run");
            }
            Ok(Exit::Done)
        }
        Some(c) => {
            eprintln!("{name} is still not mailed: {}", c.message);
            Ok(Exit::Failed)
        }
        None => {
            if out == Output::Text {
                println!("{name}: the controller acted on the annotation");
            }
            Ok(Exit::Done)
        }
    }
}
