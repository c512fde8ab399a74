//! Which images a report's `spec.job.image` may name. A pipeline pod carries the database URL
//! in its environment, so the image it runs is the operator's choice, never a tenant's: only
//! repositories the controller is told to allow (by default its own image's repository).

/// The repository of an image reference: without its digest (`@sha256:…`) and tag (`:1.2`),
/// keeping a registry's port (`registry.local:5000/finrep`).
pub fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    }
}

/// Whether `image` may run as a pipeline: its repository is one of `allowed`, or falls under
/// an allowed prefix written `registry.example.com/team/*`.
pub fn image_allowed(image: &str, allowed: &[String]) -> bool {
    let repo = repository(image);
    !repo.is_empty()
        && allowed.iter().any(|a| match a.strip_suffix("/*") {
            Some(prefix) => repo
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
            None => repository(a) == repo,
        })
}

/// The message of a refused image, naming what is allowed.
pub fn refusal(image: &str, allowed: &[String]) -> String {
    format!(
        "image {image:?} is not one the operator allows for pipeline Jobs ({}); remove spec.job.image to use finrep's own, or ask the operator to allow it (controller flag --allowed-image, chart value controller.allowedImages)",
        allowed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_tags_and_digests_but_keep_ports() {
        assert_eq!(
            repository("ghcr.io/finrep/finrep:0.1.0"),
            "ghcr.io/finrep/finrep"
        );
        assert_eq!(
            repository("ghcr.io/finrep/finrep:0.1@sha256:abcd"),
            "ghcr.io/finrep/finrep"
        );
        assert_eq!(
            repository("registry.local:5000/finrep"),
            "registry.local:5000/finrep"
        );
        assert_eq!(
            repository("registry.local:5000/finrep:2"),
            "registry.local:5000/finrep"
        );
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn only_allowed_repositories_run() {
        let allowed = vec![
            "ghcr.io/finrep/finrep".to_string(),
            "registry.local:5000/desk/*".to_string(),
        ];
        assert!(image_allowed("ghcr.io/finrep/finrep:0.2.0", &allowed));
        assert!(image_allowed("ghcr.io/finrep/finrep@sha256:00", &allowed));
        assert!(image_allowed("registry.local:5000/desk/finrep:1", &allowed));
        for refused in [
            "ghcr.io/finrep/finrep-evil:1",
            "ghcr.io/finrep/finrep/../x:1",
            "ghcr.io/attacker/finrep:1",
            "registry.local:5000/desk:1",
            "registry.local:5000/desk/",
            "registry.local:5000/desktop/finrep:1",
            "docker.io/library/busybox",
            "",
        ] {
            assert!(!image_allowed(refused, &allowed), "{refused}");
        }
    }
}
