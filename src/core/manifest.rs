//! Reading Source / Recipient / DailyReport manifests from files, the way `finrep validate`,
//! `finrep run` and standalone mode see them: multi-document YAML (or JSON), checked against
//! the generated CRD schema, its CEL rules (evaluated offline by the same expressions the API
//! server runs), unknown fields, metadata, and then the code-only rules of `validation`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{API_VERSION, GROUP, ResourceKind, selector};
use crate::validation::{self, FieldProblem, ResourceSet, Severity};

/// Where a document came from: a file and its 1-based position among the file's documents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub document: usize,
}

/// One problem found in one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: Origin,
    /// `Kind/name` when the document got far enough to have them.
    pub resource: Option<String>,
    pub problem: FieldProblem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}: {} (document {})",
            self.origin.file.display(),
            self.origin.document
        )?;
        if let Some(r) = &self.resource {
            write!(f, " {r}")?;
        }
        if !self.problem.field.is_empty() {
            write!(f, " {}", self.problem.field)?;
        }
        write!(f, ": {}", self.problem.message)
    }
}

/// Failures that stop loading altogether (as opposed to problems in a document).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the generated schema of {kind} does not compile: {reason}")]
    Schema { kind: ResourceKind, reason: String },
    #[error("the configuration has {errors} error(s):\n{listing}")]
    Invalid { errors: usize, listing: String },
}

/// What loading a set of paths produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub set: ResourceSet,
    pub diagnostics: Vec<Diagnostic>,
    /// Documents read, including ones that were not finrep resources.
    pub documents: usize,
}

impl Loaded {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.problem.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Options of a load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Namespace of documents that name none (kubectl's current namespace).
    pub default_namespace: String,
    /// Run the cross-resource rules that assume the set is complete (selectors select
    /// something). `None` decides from the paths: on when any of them is a directory.
    pub complete: Option<bool>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_string(),
            complete: None,
        }
    }
}

/// Reads and checks every manifest under `paths`, collecting every problem.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, ManifestError> {
    let checker = SchemaChecker::new()?;
    let mut loaded = Loaded::default();
    let files = manifest_files(paths)?;
    let complete = opts
        .complete
        .unwrap_or_else(|| paths.iter().any(|p| p.is_dir()));
    let mut origins = Vec::new();
    for file in files {
        load_file(&checker, &file, opts, &mut loaded, &mut origins)?;
    }

    for finding in validation::check_set(&loaded.set, complete) {
        let key = (
            finding.kind,
            finding.namespace.clone(),
            finding.name.clone(),
        );
        let origin = origins
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| o.clone())
            .unwrap_or(Origin {
                file: PathBuf::new(),
                document: 0,
            });
        loaded.diagnostics.push(Diagnostic {
            origin,
            resource: Some(format!("{}/{}", finding.kind, finding.name)),
            problem: finding.problem,
        });
    }
    loaded.diagnostics.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(loaded)
}

/// Reads one file's documents into `loaded`, remembering where each resource came from.
fn load_file(
    checker: &SchemaChecker,
    file: &Path,
    opts: &LoadOptions,
    loaded: &mut Loaded,
    origins: &mut Vec<((ResourceKind, String, String), Origin)>,
) -> Result<(), ManifestError> {
    let bytes = std::fs::read(file).map_err(|source| ManifestError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    // A file that is not text is that file's error; the others are still checked.
    let Ok(text) = String::from_utf8(bytes) else {
        loaded.documents += 1;
        loaded.diagnostics.push(Diagnostic {
            origin: Origin {
                file: file.to_path_buf(),
                document: 1,
            },
            resource: None,
            problem: FieldProblem::error("", "not UTF-8 text; manifests are YAML or JSON in UTF-8"),
        });
        return Ok(());
    };
    for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let origin = Origin {
            file: file.to_path_buf(),
            document: i + 1,
        };
        loaded.documents += 1;
        let value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                loaded.diagnostics.push(Diagnostic {
                    origin,
                    resource: None,
                    problem: FieldProblem::error("", format!("not valid YAML: {e}")),
                });
                // A syntax error ends the stream: later documents cannot be located.
                break;
            }
        };
        if let Some(key) = checker.load_document(
            value,
            &origin,
            opts,
            &mut loaded.set,
            &mut loaded.diagnostics,
        ) {
            origins.push((key, origin));
        }
    }
    Ok(())
}

/// Loads a configuration that must be valid (for `run` and standalone): any error fails.
pub fn load_valid(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, ManifestError> {
    let loaded = load(paths, opts)?;
    let errors = loaded.errors();
    if errors > 0 {
        let listing = loaded
            .diagnostics
            .iter()
            .filter(|d| d.problem.severity == Severity::Error)
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(ManifestError::Invalid { errors, listing });
    }
    Ok(loaded)
}

/// The manifest files `load` reads under `paths`, in the order it reads them (hidden entries
/// skipped, directories searched for .yaml, .yml and .json).
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    Ok(files)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// ObjectMeta fields a manifest may carry (including those `kubectl get -o yaml` prints).
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

struct KindSchema {
    kind: ResourceKind,
    /// The openAPIV3Schema exactly as the CRD carries it (CEL rules walk this).
    openapi: Value,
    /// The same schema in JSON Schema terms, for the structural checks.
    validator: jsonschema::Validator,
}

/// The generated CRD schemas, compiled once.
pub struct SchemaChecker {
    kinds: Vec<KindSchema>,
    cel: kube::core::cel::Validator,
}

impl SchemaChecker {
    pub fn new() -> Result<Self, ManifestError> {
        let mut kinds = Vec::new();
        for kind in ResourceKind::ALL {
            let openapi = crate::crd::openapi_schema(kind);
            let json_schema = to_json_schema(&openapi);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&json_schema)
                .map_err(|e| ManifestError::Schema {
                    kind,
                    reason: e.to_string(),
                })?;
            kinds.push(KindSchema {
                kind,
                openapi,
                validator,
            });
        }
        Ok(Self {
            kinds,
            cel: kube::core::cel::Validator::new(),
        })
    }

    /// Every schema-level problem of one object of `kind`: types, required fields, ranges,
    /// enums, unknown fields and CEL rules. Field paths start at the object root.
    pub fn check(&self, kind: ResourceKind, object: &Value) -> Vec<FieldProblem> {
        let Some(ks) = self.kinds.iter().find(|k| k.kind == kind) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        unknown_fields(&ks.openapi, object, "", &mut out);
        for err in ks.validator.iter_errors(object) {
            let mut field = pointer_to_field(err.instance_path().as_str());
            let message = match err.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let property = property.as_str().unwrap_or_default();
                    field = join_field(&field, property);
                    format!("{property} is required")
                }
                // Unknown fields are reported above with a suggestion.
                jsonschema::error::ValidationErrorKind::AdditionalProperties { .. } => continue,
                _ => err.to_string(),
            };
            out.push(FieldProblem::error(field, message));
        }
        let structural_ok = out.is_empty();
        if let Err(errors) = self.cel.validate(&ks.openapi, object, None) {
            for e in errors.into_vec() {
                // A rule over a value of the wrong type fails to evaluate; the type error
                // above already says what is wrong.
                if !structural_ok && e.kind != kube::core::cel::ErrorKind::ValidationFailure {
                    continue;
                }
                let field = cel_field(&e.field_path);
                out.push(FieldProblem::error(field, e.message.clone()));
            }
        }
        out
    }

    /// Checks one document and, when it is a valid finrep resource, adds it to `set`.
    /// Returns the resource's identity for locating cross-resource findings.
    fn load_document(
        &self,
        mut value: Value,
        origin: &Origin,
        opts: &LoadOptions,
        set: &mut ResourceSet,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<(ResourceKind, String, String)> {
        let mut push = |resource: Option<String>, problem: FieldProblem| {
            diagnostics.push(Diagnostic {
                origin: origin.clone(),
                resource,
                problem,
            })
        };
        let Some(obj) = value.as_object_mut() else {
            push(
                None,
                FieldProblem::error("", "a manifest must be a mapping with apiVersion and kind"),
            );
            return None;
        };
        let (kind, label, name) = match identify(obj) {
            Identified::Finrep { kind, label, name } => (kind, label, name),
            Identified::Other(problem) => {
                if let Some(problem) = problem {
                    push(None, problem);
                }
                return None;
            }
            Identified::Refused { label, problem } => {
                push(Some(label), problem);
                return None;
            }
        };
        if obj.remove("status").is_some() {
            push(
                Some(label.clone()),
                FieldProblem::warning(
                    "status",
                    "status is written by the controller; the one in the manifest is ignored",
                ),
            );
        }

        let mut problems = metadata_problems(obj.get("metadata"));
        let namespace = obj
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(&opts.default_namespace)
            .to_string();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace")
                .or_insert_with(|| Value::String(namespace.clone()));
        }
        problems.extend(self.check(kind, &value));
        if problems.iter().any(|p| p.severity == Severity::Error) {
            for p in problems {
                push(Some(label.clone()), p);
            }
            return None;
        }

        // The schema held, so the typed form exists; the code-only rules come last.
        admit(kind, value, set, &mut problems);
        let has_error = problems.iter().any(|p| p.severity == Severity::Error);
        for p in problems {
            push(Some(label.clone()), p);
        }
        if has_error {
            // Keep invalid resources out of the set, so a run never uses them.
            match kind {
                ResourceKind::Source => drop(set.sources.pop()),
                ResourceKind::Recipient => drop(set.recipients.pop()),
                ResourceKind::DailyReport => drop(set.reports.pop()),
            }
            return None;
        }
        Some((kind, namespace, name))
    }
}

/// What a document is, from its apiVersion and kind.
enum Identified {
    /// One of finrep's kinds, at the served version.
    Finrep {
        kind: ResourceKind,
        label: String,
        name: String,
    },
    /// Not finrep's (another Kubernetes object may share the directory), with a problem
    /// when it is not a manifest at all.
    Other(Option<FieldProblem>),
    /// finrep's group, but a kind or version it does not serve.
    Refused {
        label: String,
        problem: FieldProblem,
    },
}

fn identify(obj: &serde_json::Map<String, Value>) -> Identified {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let group = api_version.split_once('/').map(|(g, _)| g);
    if api_version.is_empty() && kind_name.is_empty() {
        return Identified::Other(Some(FieldProblem::warning(
            "",
            "not a Kubernetes manifest (no apiVersion or kind); ignored",
        )));
    }
    if group != Some(GROUP) {
        let missing = (api_version.is_empty() || kind_name.is_empty()).then(|| {
            FieldProblem::error(
                if api_version.is_empty() {
                    "apiVersion"
                } else {
                    "kind"
                },
                format!(
                    "missing; finrep manifests start with apiVersion: {API_VERSION} and kind: Source, Recipient or DailyReport"
                ),
            )
        });
        return Identified::Other(missing);
    }
    let label = format!(
        "{}/{}",
        if kind_name.is_empty() { "?" } else { kind_name },
        if name.is_empty() { "?" } else { name.as_str() }
    );
    let Some(kind) = ResourceKind::from_kind(kind_name) else {
        return Identified::Refused {
            label,
            problem: FieldProblem::error(
                "kind",
                format!(
                    "unknown kind {kind_name:?}; finrep.io defines Source, Recipient and DailyReport"
                ),
            ),
        };
    };
    if api_version != API_VERSION {
        return Identified::Refused {
            label,
            problem: FieldProblem::error(
                "apiVersion",
                format!("{api_version:?} is not served; use {API_VERSION}"),
            ),
        };
    }
    Identified::Finrep { kind, label, name }
}

/// Reads the typed resource into the set and adds the code-only rules' problems.
fn admit(
    kind: ResourceKind,
    value: Value,
    set: &mut ResourceSet,
    problems: &mut Vec<FieldProblem>,
) {
    let typed = match kind {
        ResourceKind::Source => serde_json::from_value(value).map(|s: crate::api::Source| {
            problems.extend(validation::check_source(&s.spec));
            set.sources.push(kept(s, problems));
        }),
        ResourceKind::Recipient => serde_json::from_value(value).map(|r: crate::api::Recipient| {
            problems.extend(validation::check_recipient(&r.spec));
            set.recipients.push(kept(r, problems));
        }),
        ResourceKind::DailyReport => {
            serde_json::from_value(value).map(|r: crate::api::DailyReport| {
                problems.extend(validation::check_daily_report(
                    &r.spec,
                    validation_reference(),
                ));
                set.reports.push(kept(r, problems));
            })
        }
    };
    if let Err(e) = typed {
        problems.push(FieldProblem::error("", format!("cannot be read: {e}")));
    }
}

/// What is kept of a loaded object (standalone mode holds its configuration for as long as it
/// runs): no annotation finrep does not read, and labels within the bound a report can select
/// by — more is an error.
fn kept<K: kube::Resource>(mut obj: K, problems: &mut Vec<FieldProblem>) -> K {
    crate::api::lean::lean(&mut obj);
    problems.extend(crate::api::lean::label_problem(kube::ResourceExt::labels(
        &obj,
    )));
    obj
}

/// The instant schedules are sampled from when validating: fixed, so validation does not
/// depend on the day it runs (cron rules have no year, so any year shows the pattern).
fn validation_reference() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default() // 2026-01-01T00:00Z
}

fn metadata_problems(meta: Option<&Value>) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    let Some(meta) = meta.and_then(Value::as_object) else {
        out.push(FieldProblem::error(
            "metadata.name",
            "metadata.name is required",
        ));
        return out;
    };
    for key in meta.keys() {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            out.push(FieldProblem::error(
                format!("metadata.{key}"),
                unknown_field_message(key, METADATA_FIELDS.iter().copied()),
            ));
        }
    }
    match meta.get("name").and_then(Value::as_str) {
        None => out.push(FieldProblem::error(
            "metadata.name",
            "metadata.name is required",
        )),
        Some(name) if !selector::is_dns_subdomain(name) => out.push(FieldProblem::error(
            "metadata.name",
            format!("{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        )),
        Some(_) => {}
    }
    if let Some(ns) = meta.get("namespace") {
        let ok = ns
            .as_str()
            .is_some_and(|n| n.len() <= 63 && !n.contains('.') && selector::is_dns_subdomain(n));
        if !ok {
            out.push(FieldProblem::error(
                "metadata.namespace",
                format!("{ns} is not a valid namespace name"),
            ));
        }
    }
    match meta.get("labels") {
        None => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                let field = format!("metadata.labels.{k}");
                if let Some(msg) = selector::label_key_problem(k) {
                    out.push(FieldProblem::error(field.clone(), msg));
                }
                match v.as_str() {
                    Some(v) => {
                        if let Some(msg) = selector::label_value_problem(v) {
                            out.push(FieldProblem::error(field, msg));
                        }
                    }
                    None => out.push(FieldProblem::error(
                        field,
                        format!("label values are strings; quote {v}"),
                    )),
                }
            }
        }
        Some(_) => out.push(FieldProblem::error(
            "metadata.labels",
            "labels must be a mapping of strings",
        )),
    }
    if let Some(a) = meta.get("annotations")
        && !a
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    {
        out.push(FieldProblem::error(
            "metadata.annotations",
            "annotations must be a mapping of strings (quote numbers and booleans)",
        ));
    }
    out
}

/// Reports fields the schema does not define, as strict field validation (kubectl's default)
/// does, with the closest known name as a hint.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldProblem>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                // The API server supplies these at the root of every object.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = join_field(path, key);
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    unknown_fields(child_schema, child, &child_path, out);
                } else if let Some(additional) = additional {
                    unknown_fields(additional, child, &child_path, out);
                } else if let Some(props) = props {
                    out.push(FieldProblem::error(
                        child_path,
                        unknown_field_message(key, props.keys().map(String::as_str)),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn unknown_field_message<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: BTreeSet<&str> = known.collect();
    let best = known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&key.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("unknown field {key:?}; did you mean {k:?}?"),
        None => format!(
            "unknown field {key:?}; known fields here: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Turns the CRD's OpenAPI v3 schema into JSON Schema draft 4: `nullable` becomes a `null`
/// type alternative; Kubernetes extensions are left for the code that understands them.
fn to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            let nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);
            for (k, v) in map {
                match k.as_str() {
                    "nullable" => {}
                    "type" if nullable => {
                        out.insert(k.clone(), Value::Array(vec![v.clone(), "null".into()]));
                    }
                    "properties" => {
                        let props = v
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(pk, pv)| (pk.clone(), to_json_schema(pv)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "enum" | "required" | "default" => {
                        out.insert(k.clone(), v.clone());
                    }
                    _ => {
                        out.insert(k.clone(), to_json_schema(v));
                    }
                }
            }
            if nullable && let Some(Value::Array(e)) = out.get_mut("enum") {
                e.push(Value::Null);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

fn join_field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `/spec/tags/0` → `spec.tags[0]`.
fn pointer_to_field(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            out = join_field(&out, &seg);
        }
    }
    out
}

/// kube-cel paths look like `spec.mailWindow` or `.spec.mailWindow.end`.
fn cel_field(path: &str) -> String {
    path.trim_start_matches('.').replace("..", ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_fields() {
        assert_eq!(pointer_to_field("/spec/tags/0"), "spec.tags[0]");
        assert_eq!(pointer_to_field(""), "");
        assert_eq!(
            pointer_to_field("/metadata/labels/app.kubernetes.io~1name"),
            "metadata.labels.app.kubernetes.io/name"
        );
    }

    #[test]
    fn unknown_field_suggests_the_closest_name() {
        let msg = unknown_field_message("mailwindow", ["mailWindow", "schedule"].into_iter());
        assert!(msg.contains("did you mean \"mailWindow\""), "{msg}");
    }
}
