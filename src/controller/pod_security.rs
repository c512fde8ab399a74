//! The Kubernetes *restricted* Pod Security Standard, as a pure check over a pod spec: every
//! pod finrep creates (run Jobs, the backup CronJob) and every pod template of its manifests
//! is checked with it in the tests, so a pod that the API server of a `restricted` namespace
//! would refuse never ships. finrep adds one rule of its own: a read-only root filesystem.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

/// Volume types the restricted profile allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Everything in `spec` the restricted standard (version latest) refuses, one line each;
/// empty when the pod passes. `read_only_root` adds finrep's own rule.
pub fn violations(spec: &PodSpec, read_only_root: bool) -> Vec<String> {
    let mut out = Vec::new();
    let pod = spec.security_context.as_ref();
    for (flag, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            out.push(format!("{name} must not be set"));
        }
    }
    for v in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(v).unwrap_or_default();
        let kinds: Vec<&String> = value
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for kind in kinds {
            if !ALLOWED_VOLUMES.contains(&kind.as_str()) {
                out.push(format!(
                    "volume {} uses {kind}, which is not allowed",
                    v.name
                ));
            }
        }
    }
    let pod_non_root = pod.and_then(|p| p.run_as_non_root) == Some(true);
    let pod_seccomp = pod
        .and_then(|p| p.seccomp_profile.as_ref())
        .map(|s| s.type_.as_str());
    if pod.and_then(|p| p.run_as_user) == Some(0) {
        out.push("pod runAsUser must not be 0".to_string());
    }
    if matches!(pod_seccomp, Some(t) if t != "RuntimeDefault" && t != "Localhost") {
        out.push("pod seccompProfile must be RuntimeDefault or Localhost".to_string());
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        container_violations(
            c,
            pod_non_root,
            pod_seccomp.is_some(),
            read_only_root,
            &mut out,
        );
    }
    out
}

fn container_violations(
    c: &Container,
    pod_non_root: bool,
    pod_seccomp: bool,
    read_only_root: bool,
    out: &mut Vec<String>,
) {
    let name = &c.name;
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        out.push(format!("container {name} must not be privileged"));
    }
    if sc.allow_privilege_escalation != Some(false) {
        out.push(format!(
            "container {name} must set allowPrivilegeEscalation: false"
        ));
    }
    if !(pod_non_root || sc.run_as_non_root == Some(true)) || sc.run_as_non_root == Some(false) {
        out.push(format!(
            "container {name} must run as non-root (runAsNonRoot: true)"
        ));
    }
    if sc.run_as_user == Some(0) {
        out.push(format!("container {name} must not run as user 0"));
    }
    match sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()) {
        Some("RuntimeDefault" | "Localhost") => {}
        Some(_) => out.push(format!(
            "container {name} seccompProfile must be RuntimeDefault or Localhost"
        )),
        None if !pod_seccomp => out.push(format!(
            "container {name} needs a seccompProfile (RuntimeDefault)"
        )),
        None => {}
    }
    let caps = sc.capabilities.unwrap_or_default();
    if !caps.drop.iter().flatten().any(|d| d == "ALL") {
        out.push(format!("container {name} must drop ALL capabilities"));
    }
    for add in caps.add.iter().flatten() {
        if add != "NET_BIND_SERVICE" {
            out.push(format!("container {name} must not add capability {add}"));
        }
    }
    if c.ports
        .iter()
        .flatten()
        .any(|p| p.host_port.is_some_and(|h| h != 0))
    {
        out.push(format!("container {name} must not use host ports"));
    }
    if read_only_root && sc.read_only_root_filesystem != Some(true) {
        out.push(format!(
            "container {name} must have a read-only root filesystem"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pod_fails_for_every_reason() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true,
                "capabilities": {"add": ["SYS_ADMIN"]}}, "ports": [{"containerPort": 80, "hostPort": 80}]}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]
        }))
        .unwrap();
        let v = violations(&spec, true);
        for want in [
            "hostNetwork",
            "hostPath",
            "privileged",
            "allowPrivilegeEscalation",
            "non-root",
            "seccompProfile",
            "drop ALL",
            "SYS_ADMIN",
            "host ports",
            "read-only",
        ] {
            assert!(v.iter().any(|l| l.contains(want)), "{want}: {v:#?}");
        }
    }
}
