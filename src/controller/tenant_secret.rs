//! The `finrep-database` Secret of a report namespace, holding only that namespace's role
//! (`finrep tenant-role --apply`): created when absent, its URL replaced when it is the one
//! `finrep tenant-role` made before, and never written over when somebody else's Secret has
//! the name (it may hold the operator's own database URL, from an older install: say so).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

/// The label that marks a Secret as `finrep tenant-role`'s, with the role it holds.
pub const TENANT_ROLE_LABEL: &str = "finrep.io/tenant-role";

/// The Secret pipeline pods read `DATABASE_URL` from, and its key.
#[derive(Clone, Copy, Debug)]
pub struct SecretName<'a> {
    pub name: &'a str,
    pub key: &'a str,
}

impl Default for SecretName<'_> {
    fn default() -> Self {
        Self {
            name: "finrep-database",
            key: "url",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenantSecretError {
    #[error(
        "Secret {name} in namespace {namespace} was not made by finrep tenant-role (no {TENANT_ROLE_LABEL} label) and is left alone: it may hold the operator's database URL, which opens every namespace's rows. Delete it, then run finrep tenant-role again"
    )]
    NotOurs { namespace: String, name: String },
    #[error("writing Secret {name} in namespace {namespace}: {source}")]
    Kube {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// What `apply_database_secret` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretApplied {
    Created,
    Replaced,
}

/// The Secret as `finrep tenant-role` writes it.
pub fn database_secret(namespace: &str, secret: SecretName<'_>, role: &str, url: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "finrep".to_string(),
                ),
                (TENANT_ROLE_LABEL.to_string(), role.to_string()),
            ])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(secret.key.to_string(), url.to_string())])),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// Creates the namespace's `finrep-database` Secret, or replaces the one made before.
pub async fn apply_database_secret(
    client: kube::Client,
    namespace: &str,
    secret: SecretName<'_>,
    role: &str,
    url: &str,
) -> Result<SecretApplied, TenantSecretError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let kube_err = |source| TenantSecretError::Kube {
        namespace: namespace.to_string(),
        name: secret.name.to_string(),
        source,
    };
    let mut desired = database_secret(namespace, secret, role, url);
    match api.get_opt(secret.name).await.map_err(kube_err)? {
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(kube_err)?;
            Ok(SecretApplied::Created)
        }
        Some(found) if is_ours(&found) => {
            // Replace under the found version: a concurrent writer makes this fail, not win.
            desired.metadata.resource_version = found.metadata.resource_version;
            api.replace(secret.name, &PostParams::default(), &desired)
                .await
                .map_err(kube_err)?;
            Ok(SecretApplied::Replaced)
        }
        Some(_) => Err(TenantSecretError::NotOurs {
            namespace: namespace.to_string(),
            name: secret.name.to_string(),
        }),
    }
}

fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(TENANT_ROLE_LABEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_names_its_role_and_holds_only_the_url() {
        let s = database_secret(
            "desk-a",
            SecretName::default(),
            "finrep_ab_desk_a",
            "postgres://r:p@db/finrep",
        );
        assert!(is_ours(&s));
        assert_eq!(s.string_data.as_ref().map(BTreeMap::len), Some(1));
        let mut stranger = s.clone();
        stranger.metadata.labels = None;
        assert!(!is_ours(&stranger));
    }
}
