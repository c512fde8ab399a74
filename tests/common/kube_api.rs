//! A small in-memory Kubernetes API server on loopback, for the controller's tests and the W2
//! benchmark. It speaks the API's HTTP and JSON, so the controller talks to it through the
//! real `kube::Client`, watchers and all:
//!
//! - get, list (label and `metadata.name` field selectors, `limit`/`continue` pages), watch (backlog from a
//!   resourceVersion, then live changes, ended at `timeoutSeconds`);
//! - create (409 AlreadyExists), replace (409 Conflict on a stale resourceVersion), delete;
//! - patch: server-side apply with per-manager field ownership (fields a manager stops
//!   applying are removed; a field another manager owns with another value is a 409
//!   Conflict unless forced), JSON merge and strategic merge (as JSON merge);
//! - the `status` subresource (main writes leave status alone, status writes touch only it);
//! - `resourceVersion` and `generation` that move only when something changed;
//! - metadata-only reads (`as=PartialObjectMetadata`), a log of every request as an RBAC verb,
//!   and injected failures.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

type Body = BoxBody<Bytes, Infallible>;

/// On a Pod: the file its log is read from (`pods/NAME/log`).
pub const POD_LOG_ANNOTATION: &str = "test.finrep.io/log-file";

/// One request, as the RBAC verb and resource it needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub verb: &'static str,
    pub group: String,
    /// `plural` or `plural/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Clone, Debug)]
struct Change {
    collection: String,
    namespace: String,
    rv: u64,
    kind: &'static str,
    object: Value,
}

struct Fault {
    verb: &'static str,
    resource: String,
    code: u16,
    reason: &'static str,
}

type Key = (String, String, String);

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    /// Last applied configuration per object, subresource and field manager.
    applied: HashMap<(Key, bool), BTreeMap<String, Value>>,
    history: Vec<Change>,
    log: Vec<Call>,
    /// Each request with the User-Agent that made it.
    agents: Vec<(String, Call)>,
    faults: Vec<Fault>,
}

struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
}

/// The server; it stops when dropped.
pub struct FakeApi {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    status: bool,
    /// `pods/NAME/log`.
    log: bool,
}

impl Target {
    fn collection(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    fn key(&self) -> Option<Key> {
        Some((
            self.collection(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone()?,
        ))
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

fn parse_path(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match *seg.first()? {
        "api" => ("", *seg.get(1)?, &seg[2..]),
        "apis" => (*seg.get(1)?, *seg.get(2)?, &seg[3..]),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: rest.first()?.to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        status: rest.get(2) == Some(&"status"),
        log: rest.get(2) == Some(&"log"),
    })
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    r
}

fn status_error(code: u16, reason: &str, message: String) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.and_then(|l| l.get(k)).and_then(Value::as_str) != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            let v = v.trim_start_matches('=');
            labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v)
        } else {
            labels.is_some_and(|l| l.contains_key(term))
        }
    })
}

fn fields_match(obj: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => {
                obj.pointer("/metadata/name").and_then(Value::as_str) == Some(v)
            }
            Some(("metadata.namespace", v)) => {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(v)
            }
            _ => true,
        })
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    merge_patch(t.get_mut(k).unwrap(), v);
                } else {
                    let mut fresh = Value::Object(Map::new());
                    if v.is_object() {
                        merge_patch(&mut fresh, v);
                        t.insert(k.clone(), fresh);
                    } else {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Removes from `target` the fields `before` applied and `after` no longer does.
fn remove_unapplied(target: &mut Value, before: &Value, after: &Value) {
    let (Some(t), Some(b)) = (target.as_object_mut(), before.as_object()) else {
        return;
    };
    for (k, bv) in b {
        match after.get(k) {
            None => {
                t.remove(k);
            }
            Some(av) if bv.is_object() && av.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    remove_unapplied(tv, bv, av);
                }
            }
            Some(_) => {}
        }
    }
}

/// Leaf paths of a configuration (lists are leaves).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, c) in m {
                leaves(c, &format!("{prefix}/{k}"), out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn remove_path(v: &mut Value, path: &str) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let parent = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    if let Some(Value::Object(m)) = parent {
        m.remove(last);
    }
}

/// A write naming a resourceVersion other than the stored one is stale.
fn stale(write: &Value, stored: &Value) -> bool {
    let rv = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    rv(write).is_some_and(|w| Some(w) != rv(stored))
}

const IDENTITY: [&str; 4] = [
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
];

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(
        &mut self,
        changes: &broadcast::Sender<Change>,
        key: &Key,
        kind: &'static str,
        object: Value,
    ) {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.rv);
        let change = Change {
            collection: key.0.clone(),
            namespace: key.1.clone(),
            rv,
            kind,
            object,
        };
        self.history.push(change.clone());
        let _ = changes.send(change);
    }

    /// Stores `new` for `key` if it differs from what is there, moving resourceVersion (and
    /// generation, when more than metadata and status changed).
    fn store(&mut self, changes: &broadcast::Sender<Change>, key: &Key, mut new: Value) -> Value {
        let old = self.objects.get(key).cloned();
        if let Some(old) = &old {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                    m.remove("status");
                }
                v
            };
            let mut same_meta = new.clone();
            same_meta["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            same_meta["metadata"]["generation"] = old["metadata"]["generation"].clone();
            if &same_meta == old {
                return old.clone();
            }
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1)
                + i64::from(strip(old) != strip(&new));
            new["metadata"]["generation"] = json!(generation);
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), new.clone());
        self.record(
            changes,
            key,
            if old.is_some() { "MODIFIED" } else { "ADDED" },
            new.clone(),
        );
        new
    }

    fn fresh(&mut self, target: &Target, mut obj: Value, now: &str) -> Value {
        self.uid += 1;
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
        meta["creationTimestamp"] = json!(now);
        meta["generation"] = json!(1);
        if let Some(ns) = &target.namespace {
            meta["namespace"] = json!(ns);
        }
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = json!(target.api_version());
        }
        obj
    }
}

impl Inner {
    fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn handle(
        &self,
        method: &Method,
        target: &Target,
        q: &HashMap<String, String>,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let verb = verb_of(method, target, q);
        let call = Call {
            verb,
            group: target.group.clone(),
            resource: if target.status {
                format!("{}/status", target.plural)
            } else if target.log {
                format!("{}/log", target.plural)
            } else {
                target.plural.clone()
            },
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        };
        let mut st = self.state.lock().unwrap();
        st.log.push(call.clone());
        let agent = headers
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        st.agents.push((agent, call.clone()));
        if let Some(i) = st
            .faults
            .iter()
            .position(|f| f.verb == verb && f.resource == call.resource)
        {
            let f = st.faults.remove(i);
            return status_error(f.code, f.reason, format!("injected {} failure", f.code));
        }
        let content_type = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status_error(400, "BadRequest", format!("body is not JSON: {e}")),
            }
        };
        let partial = headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        match verb {
            "get" if target.log => Self::pod_log(&st, target),
            "get" => self.get(&st, target, partial),
            "list" => self.list(&st, target, q, partial),
            "create" => self.create(&mut st, target, body),
            "update" => self.replace(&mut st, target, body),
            "patch" => self.patch(&mut st, target, q, content_type, body),
            "delete" => self.delete(&mut st, target),
            _ => status_error(405, "MethodNotAllowed", format!("{verb} is not served")),
        }
    }

    /// A pod's log: the file its annotation `test.finrep.io/log-file` names (the Job runner
    /// writes it), as text.
    fn pod_log(st: &State, target: &Target) -> Response<Body> {
        let Some(pod) = target.key().and_then(|k| st.objects.get(&k)) else {
            return Self::not_found(target);
        };
        let text = pod["metadata"]["annotations"][POD_LOG_ANNOTATION]
            .as_str()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        r
    }

    fn not_found(target: &Target) -> Response<Body> {
        status_error(
            404,
            "NotFound",
            format!(
                "{} {:?} not found",
                target.plural,
                target.name.as_deref().unwrap_or("")
            ),
        )
    }

    fn partial(obj: &Value) -> Value {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
    }

    fn get(&self, st: &State, target: &Target, partial: bool) -> Response<Body> {
        match target.key().and_then(|k| st.objects.get(&k)) {
            Some(o) if partial => full(StatusCode::OK, Self::partial(o)),
            Some(o) => full(StatusCode::OK, o.clone()),
            None => Self::not_found(target),
        }
    }

    fn select<'a>(st: &'a State, target: &Target, q: &HashMap<String, String>) -> Vec<&'a Value> {
        let collection = target.collection();
        st.objects
            .iter()
            .filter(|((c, ns, _), _)| {
                *c == collection && target.namespace.as_ref().is_none_or(|t| t == ns)
            })
            .map(|(_, o)| o)
            .filter(|o| q.get("labelSelector").is_none_or(|s| labels_match(o, s)))
            .filter(|o| q.get("fieldSelector").is_none_or(|s| fields_match(o, s)))
            .collect()
    }

    fn list(
        &self,
        st: &State,
        target: &Target,
        q: &HashMap<String, String>,
        partial: bool,
    ) -> Response<Body> {
        // Pages as the API server cuts them (`limit`, `continue`): the token carries the
        // list's resourceVersion and the offset of the next page.
        let (rv, offset) = q
            .get("continue")
            .and_then(|c| c.split_once(':'))
            .and_then(|(rv, off)| Some((rv.parse::<u64>().ok()?, off.parse::<usize>().ok()?)))
            .unwrap_or((st.rv, 0));
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let selected = Self::select(st, target, q);
        let items: Vec<Value> = selected
            .iter()
            .skip(offset)
            .take(limit)
            .map(|o| {
                if partial {
                    Self::partial(o)
                } else {
                    (*o).clone()
                }
            })
            .collect();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if offset.saturating_add(limit) < selected.len() {
            metadata["continue"] = json!(format!("{rv}:{}", offset + limit));
        }
        full(
            StatusCode::OK,
            json!({"apiVersion": target.api_version(), "kind": "List",
                   "metadata": metadata, "items": items}),
        )
    }

    fn create(&self, st: &mut State, target: &Target, mut body: Value) -> Response<Body> {
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = match name {
            Some(n) => n,
            None => match body
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) => format!("{prefix}{:05}", st.uid + 1),
                None => return status_error(422, "Invalid", "metadata.name is required".into()),
            },
        };
        body["metadata"]["name"] = json!(name);
        let key = (
            target.collection(),
            target.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        if st.objects.contains_key(&key) {
            return status_error(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", target.plural),
            );
        }
        let obj = st.fresh(target, body, &Self::now());
        let stored = st.store(&self.changes, &key, obj);
        full(StatusCode::CREATED, stored)
    }

    fn replace(&self, st: &mut State, target: &Target, body: Value) -> Response<Body> {
        let Some(key) = target.key() else {
            return Self::not_found(target);
        };
        let Some(old) = st.objects.get(&key).cloned() else {
            return Self::not_found(target);
        };
        if stale(&body, &old) {
            return status_error(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again".into());
        }
        let mut new = old.clone();
        if target.status {
            new["status"] = body["status"].clone();
        } else {
            let keep_status = old.get("status").cloned();
            let keep_meta = old["metadata"].clone();
            new = body;
            for f in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                new["metadata"][f] = keep_meta[f].clone();
            }
            match keep_status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        full(StatusCode::OK, st.store(&self.changes, &key, new))
    }

    fn patch(
        &self,
        st: &mut State,
        target: &Target,
        q: &HashMap<String, String>,
        content_type: &str,
        body: Value,
    ) -> Response<Body> {
        let Some(key) = target.key() else {
            return Self::not_found(target);
        };
        let manager = q.get("fieldManager").cloned().unwrap_or_default();
        let force = q.get("force").is_some_and(|f| f == "true");
        let existing = st.objects.get(&key).cloned();
        let scope = |v: &Value| -> Value {
            if target.status {
                json!({"status": v.get("status").cloned().unwrap_or(json!({}))})
            } else {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("status");
                }
                v
            }
        };
        let mut obj = match existing.clone() {
            Some(o) => o,
            None if content_type.starts_with("application/apply-patch") && !target.status => {
                st.fresh(target, json!({"metadata": {"name": key.2}}), &Self::now())
            }
            None => return Self::not_found(target),
        };
        let patch = scope(&body);
        let applied_key = (key.clone(), target.status);
        if content_type.starts_with("application/apply-patch") {
            let owners = st.applied.entry(applied_key).or_default();
            let mut new_leaves = Vec::new();
            leaves(&patch, "", &mut new_leaves);
            for (other, config) in owners.iter_mut().filter(|(m, _)| **m != manager) {
                for (path, value) in &new_leaves {
                    if IDENTITY.contains(&path.as_str()) {
                        continue;
                    }
                    if let Some(theirs) = config.pointer(path) {
                        if theirs != value && !force {
                            return status_error(
                                409,
                                "Conflict",
                                format!(
                                    "Apply failed with 1 conflict: conflict with \"{other}\": {path}"
                                ),
                            );
                        }
                        if theirs != value {
                            remove_path(config, path);
                        }
                    }
                }
            }
            if let Some(before) = owners.get(&manager) {
                remove_unapplied(&mut obj, before, &patch);
            }
            merge_patch(&mut obj, &patch);
            owners.insert(manager, patch);
        } else if content_type.starts_with("application/merge-patch")
            || content_type.starts_with("application/strategic-merge-patch")
        {
            if stale(&patch, &obj) {
                return status_error(409, "Conflict", "the object has been modified".into());
            }
            let owners = st.applied.entry(applied_key).or_default();
            let mut touched = Vec::new();
            leaves(&patch, "", &mut touched);
            for (_, config) in owners.iter_mut() {
                for (path, _) in &touched {
                    if !IDENTITY.contains(&path.as_str()) {
                        remove_path(config, path);
                    }
                }
            }
            merge_patch(&mut obj, &patch);
        } else {
            return status_error(
                415,
                "UnsupportedMediaType",
                format!("{content_type} is not served"),
            );
        }
        if existing.is_none() {
            obj["metadata"]["creationTimestamp"] = json!(Self::now());
        }
        let stored = st.store(&self.changes, &key, obj);
        full(StatusCode::OK, stored)
    }

    fn delete(&self, st: &mut State, target: &Target) -> Response<Body> {
        let Some(key) = target.key() else {
            return Self::not_found(target);
        };
        match st.objects.remove(&key) {
            Some(mut obj) => {
                st.applied.retain(|(k, _), _| *k != key);
                let rv = st.next_rv();
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                st.record(&self.changes, &key, "DELETED", obj.clone());
                full(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "details": {"name": key.2, "kind": target.plural}}),
                )
            }
            None => Self::not_found(target),
        }
    }

    fn watch(
        self: &Arc<Self>,
        target: &Target,
        q: &HashMap<String, String>,
        partial: bool,
    ) -> Response<Body> {
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290u64);
        let collection = target.collection();
        let namespace = target.namespace.clone();
        let labels = q.get("labelSelector").cloned();
        let fields = q.get("fieldSelector").cloned();
        let wanted = move |c: &Change| {
            c.collection == collection
                && namespace.as_ref().is_none_or(|n| *n == c.namespace)
                && labels.as_ref().is_none_or(|s| labels_match(&c.object, s))
                && fields.as_ref().is_none_or(|s| fields_match(&c.object, s))
        };
        let (backlog, rx) = {
            let st = self.state.lock().unwrap();
            let backlog: Vec<Change> = st
                .history
                .iter()
                .filter(|c| c.rv > from && wanted(c))
                .cloned()
                .collect();
            (backlog, self.changes.subscribe())
        };
        // A metadata-only watch sees PartialObjectMetadata, as the API server sends it.
        let event = move |c: &Change| {
            let object = if partial {
                Self::partial(&c.object)
            } else {
                c.object.clone()
            };
            format!("{}\n", json!({"type": c.kind, "object": object}))
        };
        let line = |c: &Change| Ok::<_, Infallible>(Frame::data(Bytes::from(event(c))));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let live = futures_util::stream::unfold((rx, wanted), move |(mut rx, wanted)| async move {
            loop {
                let next = tokio::time::timeout_at(deadline, rx.recv()).await;
                match next {
                    Ok(Ok(c)) if wanted(&c) => {
                        return Some((Ok(Frame::data(Bytes::from(event(&c)))), (rx, wanted)));
                    }
                    Ok(Ok(_)) => {}
                    // Lagged, closed or timed out: end the watch; the client watches again.
                    _ => return None,
                }
            }
        });
        let first: Vec<_> = backlog.iter().map(line).collect();
        let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), live);
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        r
    }
}

fn verb_of(method: &Method, target: &Target, q: &HashMap<String, String>) -> &'static str {
    match *method {
        Method::GET if target.name.is_some() => "get",
        Method::GET if q.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

async fn serve(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let Some(target) = parse_path(parts.uri.path()) else {
        return Ok(status_error(
            404,
            "NotFound",
            format!("no route {}", parts.uri.path()),
        ));
    };
    let q = query(&parts.uri);
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if verb_of(&parts.method, &target, &q) == "watch" {
        inner.state.lock().unwrap().log.push(Call {
            verb: "watch",
            group: target.group.clone(),
            resource: target.plural.clone(),
            namespace: target.namespace.clone(),
            name: None,
        });
        let partial = parts
            .headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        return Ok(inner.watch(&target, &q, partial));
    }
    Ok(inner.handle(&parts.method, &target, &q, &parts.headers, &bytes))
}

impl FakeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changes, _) = broadcast::channel(65536);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changes,
        });
        let served = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let inner = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(inner.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { inner, addr, task }
    }

    /// A client of this server, as the controller would build from a kubeconfig.
    pub fn client(&self) -> kube::Client {
        finrep::tls::install_crypto_provider();
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// A kubeconfig file pointing at this server (for a controller in another process).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\nusers:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n",
            self.addr
        )
    }

    /// Stores `obj` as it is (status included), as if another client had written it.
    pub fn put(&self, obj: &impl serde::Serialize) -> Value {
        let mut v = serde_json::to_value(obj).unwrap();
        let target = Self::target_of(&v);
        let key = target.key().unwrap();
        let mut st = self.inner.state.lock().unwrap();
        if let Some(old) = st.objects.get(&key) {
            for f in ["uid", "creationTimestamp", "generation"] {
                if v["metadata"].get(f).is_none() {
                    v["metadata"][f] = old["metadata"][f].clone();
                }
            }
        } else {
            let created = v["metadata"].get("creationTimestamp").cloned();
            v = st.fresh(&target, v, &Inner::now());
            if let Some(c) = created.filter(|c| !c.is_null()) {
                v["metadata"]["creationTimestamp"] = c;
            }
        }
        st.store(&self.inner.changes, &key, v)
    }

    fn target_of(v: &Value) -> Target {
        let api_version = v["apiVersion"].as_str().unwrap();
        let kind = v["kind"].as_str().unwrap();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let plural = match kind {
            "Secret" => "secrets",
            "ConfigMap" => "configmaps",
            "Job" => "jobs",
            "CronJob" => "cronjobs",
            "Lease" => "leases",
            "Pod" => "pods",
            "Event" => "events",
            "Source" => "sources",
            "Recipient" => "recipients",
            "DailyReport" => "dailyreports",
            "CustomResourceDefinition" => "customresourcedefinitions",
            other => panic!("FakeApi::put does not know kind {other}"),
        };
        let namespace = if kind == "CustomResourceDefinition" {
            None
        } else {
            Some(
                v.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string(),
            )
        };
        Target {
            group: group.to_string(),
            version: version.to_string(),
            namespace,
            plural: plural.to_string(),
            name: v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string),
            status: false,
            log: false,
        }
    }

    /// The stored object, if any.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.inner.state.lock().unwrap();
        st.objects
            .get(&(
                format!("{group}/{plural}"),
                namespace.to_string(),
                name.to_string(),
            ))
            .cloned()
    }

    /// Every stored object of a collection (`group/plural`) in a namespace.
    pub fn objects(&self, group: &str, plural: &str, namespace: &str) -> Vec<Value> {
        let st = self.inner.state.lock().unwrap();
        let c = format!("{group}/{plural}");
        st.objects
            .iter()
            .filter(|((col, ns, _), _)| *col == c && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets an object's status directly (what the Job controller or kubelet would do).
    pub fn set_status(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) {
        let key = (
            format!("{group}/{plural}"),
            namespace.to_string(),
            name.to_string(),
        );
        let mut st = self.inner.state.lock().unwrap();
        let mut obj = st
            .objects
            .get(&key)
            .cloned()
            .expect("object to set the status of");
        obj["status"] = status;
        st.store(&self.inner.changes, &key, obj);
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.state.lock().unwrap().log.clone()
    }

    /// The requests of clients whose User-Agent starts with `agent`.
    pub fn calls_from(&self, agent: &str) -> Vec<Call> {
        let st = self.inner.state.lock().unwrap();
        st.agents
            .iter()
            .filter(|(a, _)| a.starts_with(agent))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_calls(&self) {
        self.inner.state.lock().unwrap().log.clear();
    }

    /// Writes (create, update, patch, delete) so far.
    pub fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c.verb, "create" | "update" | "patch" | "delete"))
            .collect()
    }

    /// The next `verb` on `resource` (`plural` or `plural/status`) fails with `code`.
    pub fn fail_next(&self, verb: &'static str, resource: &str, code: u16, reason: &'static str) {
        self.inner.state.lock().unwrap().faults.push(Fault {
            verb,
            resource: resource.to_string(),
            code,
            reason,
        });
    }

    /// Stores every resource of a set (as `kubectl apply` would have).
    pub fn put_resources(&self, set: &finrep::validation::ResourceSet) {
        for s in &set.sources {
            self.put(s);
        }
        for r in &set.recipients {
            self.put(r);
        }
        for r in &set.reports {
            self.put(r);
        }
    }

    /// Stores a Secret holding `data` (what a pod's `secretKeyRef` reads).
    pub fn put_secret_data(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        use base64::Engine as _;
        let data: BTreeMap<&str, String> = data
            .iter()
            .map(|(k, v)| (*k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        self.put(&json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": name, "namespace": namespace}, "data": data}));
    }

    /// Stores an (empty) Secret: the controller only checks that it exists.
    pub fn put_secret(&self, namespace: &str, name: &str) {
        self.put(&json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": name, "namespace": namespace}}));
    }

    /// Installs finrep's CRDs, established.
    pub fn install_crds(&self) {
        for kind in finrep::api::ResourceKind::ALL {
            let mut crd = serde_json::to_value(kind.crd()).unwrap();
            crd["status"] = json!({"conditions": [
                {"type": "Established", "status": "True"},
                {"type": "NamesAccepted", "status": "True"}
            ]});
            self.put(&crd);
        }
    }
}
