//! The compose deployment (deploy/compose.yml) and its image (deploy/Dockerfile): the compose
//! file against the Compose Specification's schema (check-jsonschema), each profile resolved
//! by a compose implementation (podman-compose config), the dev profile's configuration
//! through `finrep validate`, the Dockerfile through hadolint, and the builder's Rust against
//! the lock file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the test script installs into its venv, beside the Python it exports.
fn venv_tool(name: &str) -> PathBuf {
    let python = PathBuf::from(common::smtp::python());
    let tool = python.parent().expect("venv bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: scripts/test.sh installs it into its venv",
        tool.display()
    );
    tool
}

/// The services `docker compose --profile <profile> config` resolves, by a compose
/// implementation (podman-compose, which interpolates and filters profiles as docker compose
/// does), from an environment holding only the settings that profile's users set: compose
/// interpolates every service before it applies the profile, so a variable only one profile
/// needs must not be required of the other.
fn resolved(profile: &str) -> BTreeMap<String, Value> {
    let setting = match profile {
        "dev" => ("POSTGRES_PASSWORD", "test-only"),
        "prod" => ("DATABASE_URL", "postgres://finrep@db.internal:5432/finrep"),
        other => panic!("no profile {other}"),
    };
    let out = Command::new(venv_tool("podman-compose"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(setting.0, setting.1)
        // --dry-run: nothing is started and no container engine is asked.
        .args(["--dry-run", "--env-file", "/dev/null", "-f"])
        .arg(root().join("deploy/compose.yml"))
        .args(["--profile", profile, "config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "profile {profile} with only {} set: {}",
        setting.0,
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_norway::from_slice(&out.stdout).unwrap();
    config["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn memory_mib(limit: &str) -> u64 {
    let (n, unit) = limit.split_at(limit.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "M" | "m" => n,
        "G" | "g" => n * 1024,
        other => panic!("unexpected unit {other} in {limit}"),
    }
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let out = Command::new(venv_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(root().join("deploy/compose.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_profile_resolves_to_a_healthy_start_order() {
    for (profile, expected) in [
        (
            "dev",
            vec![
                "finrep-dev",
                "mailpit",
                "migrate-dev",
                "postgres",
                "web-dev",
            ],
        ),
        ("prod", vec!["finrep", "migrate", "web"]),
    ] {
        let services = resolved(profile);
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        assert_eq!(names, expected, "profile {profile}");
        let mut total_mib = 0;
        for (name, s) in &services {
            let one_shot = name.starts_with("migrate");
            // Every dependency is started by the same profile and waited for properly.
            if let Some(deps) = s.get("depends_on").and_then(Value::as_mapping) {
                for (dep, how) in deps {
                    let dep = dep.as_str().unwrap();
                    let target = services.get(dep).unwrap_or_else(|| {
                        panic!("{profile}: {name} depends on {dep}, not in the profile")
                    });
                    let condition = how["condition"].as_str().unwrap();
                    match condition {
                        "service_healthy" => assert!(
                            target.get("healthcheck").is_some(),
                            "{profile}: {name} waits for {dep} to be healthy but it has no healthcheck"
                        ),
                        "service_completed_successfully" => {
                            assert!(dep.starts_with("migrate"), "{name} → {dep}")
                        }
                        other => panic!("{profile}: {name} → {dep}: condition {other}"),
                    }
                }
            }
            if one_shot {
                assert_eq!(s["restart"].as_str(), Some("no"), "{name}");
                assert_eq!(s["command"][0].as_str(), Some("migrate"));
            } else {
                assert_eq!(s["restart"].as_str(), Some("unless-stopped"), "{name}");
                assert!(s.get("healthcheck").is_some(), "{name} has a health check");
            }
            let limit = s["deploy"]["resources"]["limits"]["memory"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has a memory limit"));
            // A one-shot migration has exited before anything that waits for it starts.
            if !one_shot {
                total_mib += memory_mib(limit);
            }
            assert_eq!(
                s["logging"]["options"]["max-size"].as_str(),
                Some("10m"),
                "{name} rotates its logs"
            );
            let env = &s["environment"];
            assert!(env.get("TZ").is_some(), "{name} sets TZ");
        }
        // k3s is not running in this mode; compose on a 2 GB host leaves room for the OS.
        assert!(total_mib <= 768, "{profile}: {total_mib} MiB of limits");
        // The scheduler: the standalone command, its admin port probed, config read-only.
        let finrep = services
            .iter()
            .find(|(n, _)| n.starts_with("finrep"))
            .map(|(_, s)| s)
            .unwrap();
        let command = strings(&finrep["command"]);
        assert_eq!(command[0], "standalone");
        assert!(command.contains(&"--config") && command.contains(&"--backup-dir"));
        let probe = strings(&finrep["healthcheck"]["test"]);
        assert_eq!(&probe[..3], ["CMD", "finrep", "probe"]);
        assert_eq!(finrep["read_only"].as_bool(), Some(true));
        // The web: published on this host only, probed, read-only.
        let web = services
            .iter()
            .find(|(n, _)| n.starts_with("web"))
            .map(|(_, s)| s)
            .unwrap();
        assert_eq!(strings(&web["command"])[0], "web");
        assert_eq!(web["read_only"].as_bool(), Some(true));
        for port in web["ports"].as_sequence().unwrap() {
            let host_ip = port["host_ip"]
                .as_str()
                .or_else(|| port.as_str().and_then(|p| p.split(':').next()));
            assert_eq!(host_ip, Some("127.0.0.1"), "{port:?}");
        }
        assert_eq!(
            &strings(&web["healthcheck"]["test"])[..3],
            ["CMD", "finrep", "probe"]
        );
        // Secrets come from deploy/.env, optional so that `config` works on a fresh clone.
        let env_file = &finrep["env_file"][0];
        assert_eq!(env_file["path"].as_str(), Some(".env"));
        assert_eq!(env_file["required"].as_bool(), Some(false));
        let volumes = strings(&finrep["volumes"]);
        assert!(volumes.iter().any(|v| v.starts_with("backups:/backups")));
        assert!(
            volumes
                .iter()
                .filter(|v| v.contains(":/config"))
                .all(|v| v.ends_with(":ro")),
            "{volumes:?}"
        );
    }
}

#[test]
fn no_secret_has_a_value_in_the_repository() {
    let text = std::fs::read_to_string(root().join("deploy/compose.yml")).unwrap();
    for line in text.lines().filter(|l| {
        let l = l.to_ascii_uppercase();
        l.contains("PASSWORD") || l.contains("SECRET") || l.contains("KEY:")
    }) {
        assert!(
            line.trim_start().starts_with('#') || line.contains("${"),
            "a secret value in compose.yml: {line}"
        );
    }
    let example = std::fs::read_to_string(root().join("deploy/.env.example")).unwrap();
    for line in example
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
    {
        let (name, value) = line.split_once('=').unwrap();
        assert!(value.is_empty(), "{name} has a value in .env.example");
    }
    let ignored = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "deploy/.env"),
        ".gitignore keeps deploy/.env out"
    );
}

/// The files the dev profile mounts into /config make a valid configuration.
#[test]
fn the_dev_configuration_validates() {
    let dev = &resolved("dev")["finrep-dev"];
    let mut files: Vec<PathBuf> = Vec::new();
    for v in strings(&dev["volumes"]) {
        let host = v.split(':').next().unwrap();
        if v.contains(":/config/") {
            files.push(root().join("deploy").join(host));
        }
    }
    assert_eq!(files.len(), 3, "{files:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .arg("validate")
        .arg("-f")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_copies_what_the_build_needs() {
    let dockerfile = root().join("deploy/Dockerfile");
    let out = Command::new(venv_tool("hadolint"))
        .arg(&dockerfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let ignored: BTreeSet<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        // prebuilt/ is the context of a BINARIES=prebuilt build, made by its caller.
        for src in parts[1..parts.len() - 1]
            .iter()
            .filter(|s| !s.starts_with("prebuilt/"))
        {
            assert!(Path::new(&root().join(src)).exists(), "COPY {src}: missing");
            assert!(
                !ignored.contains(*src),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
    // Every binary the image ships is a target of the crate, built in the profile asked for
    // (release unless CARGO_PROFILE names another of Cargo.toml's; the controller in its own).
    for (bin, profile) in [
        ("finrep", "CARGO_PROFILE"),
        ("finrep-controller", "CONTROLLER_PROFILE"),
        ("finrep-pipeline", "CARGO_PROFILE"),
    ] {
        assert!(
            text.contains(&format!("target/${{{profile}}}/{bin}")),
            "{bin}"
        );
    }
    assert!(text.contains("ARG CARGO_PROFILE=release"));
    assert!(text.contains("ARG CONTROLLER_PROFILE=controller"));
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[profile.small-host]"));
    assert!(manifest.contains("[profile.controller]"));
    assert!(
        text.contains("USER 10001:10001"),
        "the runtime runs as non-root"
    );
}

/// `1.94` and `1.94.0` alike, comparable.
fn version(v: &str) -> [u32; 3] {
    let mut out = [0; 3];
    for (slot, n) in out.iter_mut().zip(v.split('.')) {
        *slot = n.parse().unwrap();
    }
    out
}

/// The image builds with `cargo build --locked`: its Rust is at least the crate's declared
/// rust-version, which is at least every locked dependency's.
#[test]
fn the_image_builds_with_a_rust_new_enough_for_the_lock_file() {
    // Not --offline: the lock file names crates of every platform (android_system_properties
    // …), and a build for this host downloads only its own; metadata fetches the rest.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut declared = None;
    let mut needed = ([0; 3], String::new());
    for package in metadata["packages"].as_array().unwrap() {
        let Some(rust) = package["rust_version"].as_str() else {
            continue;
        };
        if package["name"] == "finrep" {
            declared = Some(version(rust));
        } else if version(rust) > needed.0 {
            needed = (version(rust), package["name"].as_str().unwrap().to_string());
        }
    }
    let declared = declared.expect("Cargo.toml declares a rust-version");
    assert!(
        declared >= needed.0,
        "{} needs Rust {:?}, Cargo.toml declares {declared:?}",
        needed.1,
        needed.0
    );
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let builder = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG BUILDER_IMAGE=rust:"))
        .expect("a rust builder image");
    let tag = builder.split(['-', ' ', '@']).next().unwrap();
    assert!(
        version(tag) >= declared,
        "the builder's Rust {tag} is older than rust-version {declared:?}"
    );
}

/// The k3s installer runs nothing unpinned as root: versions are fixed, no download is piped
/// into a shell, and Helm's archive is checked against its published SHA-256 before use.
/// Without the install script's checksum the installer refuses before it downloads anything
/// (where k3s is not installed yet; tests run as root, like the installer).
#[test]
fn the_k3s_installer_refuses_to_run_unchecked() {
    if Command::new("sh")
        .args(["-c", "command -v k3s"])
        .status()
        .unwrap()
        .success()
        || !Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout
            .starts_with(b"0")
    {
        eprintln!("k3s is installed here or this is not root: the refusal is not reachable");
        return;
    }
    for value in ["", "not-a-checksum"] {
        let out = Command::new("bash")
            .arg(root().join("deploy/k3s/install.sh"))
            .env("K3S_INSTALL_SHA256", value)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("K3S_INSTALL_SHA256 is required"), "{err}");
    }
}

#[test]
fn the_k3s_installer_pins_what_it_runs() {
    let script = std::fs::read_to_string(root().join("deploy/k3s/install.sh")).unwrap();
    let code: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for line in &code {
        assert!(
            !(line.contains("curl") && (line.contains("| sh") || line.contains("| bash"))),
            "a download piped into a shell: {line}"
        );
        assert!(
            !line.contains("get.k3s.io"),
            "the unpinned installer: {line}"
        );
        assert!(
            !line.contains("/main/"),
            "a branch instead of a tag: {line}"
        );
    }
    assert!(
        script.contains("K3S_VERSION=${K3S_VERSION:-v1."),
        "k3s pinned"
    );
    assert!(
        script.contains("HELM_VERSION=${HELM_VERSION:-v3."),
        "Helm pinned"
    );
    assert!(script.contains("sha256sum -c"), "checksums verified");
    assert!(script.contains("--proto '=https'"), "HTTPS only");
}

/// Third-party images are pinned by digest, with the tag beside it for people.
#[test]
fn third_party_images_are_pinned_by_digest() {
    let compose = std::fs::read_to_string(root().join("deploy/compose.yml")).unwrap();
    let values = std::fs::read_to_string(root().join("charts/finrep/values.yaml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .chain(values.lines())
        .filter_map(|l| l.trim().strip_prefix("image: "))
        // finrep's own image is built by the user (compose) or named by repository and tag.
        .filter(|i| !i.contains("FINREP_IMAGE") && !i.is_empty() && !i.starts_with('"'))
        .collect();
    assert!(images.len() >= 3, "{images:?}");
    for image in images {
        let (name, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{image} is not pinned by digest"));
        assert!(name.contains(':'), "{image}: the tag beside the digest");
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{image}"
        );
    }
}
