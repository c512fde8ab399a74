//! The controller's writes to the API server, each made safe to repeat: a create that finds
//! the object already there (another controller, an earlier pass) succeeds, a delete of
//! something gone succeeds, and every apply goes through one field manager.
//!
//! Names are not ownership: an object found under a name the controller derives is used,
//! patched or deleted only when its controller owner reference is the report's uid; anybody
//! else's is a `NameConflict` and is left alone.

use std::fmt::Debug;

use kube::api::{
    Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The one field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "finrep-controller";

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// An object under a name the controller derives that is not the report's own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} {name} exists in namespace {namespace} but is not this report's (it has no owner reference to it); finrep never adopts an object by name: delete or rename it"
)]
pub struct NameConflict {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// Whether `meta`'s controller owner is the object with `owner_uid`.
pub fn owned_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references.as_deref().is_some_and(|refs| {
        refs.iter()
            .any(|o| o.uid == owner_uid && o.controller == Some(true))
    })
}

fn conflict<K: Resource<DynamicType = ()>>(api_ns: &str, name: &str) -> NameConflict {
    NameConflict {
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        namespace: api_ns.to_string(),
    }
}

/// Why an owned write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OwnedWriteError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Conflict(#[from] NameConflict),
}

/// Creates `obj` (owned by `owner_uid`); true when this call made it, false when the owner's
/// object was there already (another controller, an earlier pass). Somebody else's object of
/// that name is a `NameConflict`.
pub async fn create_owned<K>(
    api: &Api<K>,
    obj: &K,
    owner_uid: &str,
) -> Result<bool, OwnedWriteError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let name = obj.name_any();
            match api.get_metadata_opt(&name).await? {
                Some(found) if owned_by(&found.metadata, owner_uid) => Ok(false),
                // Gone again in between: the next pass creates it.
                None => Ok(false),
                Some(_) => Err(conflict::<K>(&obj.namespace().unwrap_or_default(), &name).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts `obj` in place of the owner's object of that name (deleted, then created: the verbs
/// the controller has anyway, no `update`); somebody else's object of that name is a
/// `NameConflict` and is left alone.
pub async fn replace_owned<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> Result<(), OwnedWriteError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.name_any();
    delete_owned(api, &obj.namespace().unwrap_or_default(), &name, owner_uid).await?;
    // A delete in the foreground may still be under way: the next pass creates it then.
    create_owned(api, obj, owner_uid).await?;
    Ok(())
}

/// Deletes `name` (and, in the background, what it owns) when it is `owner_uid`'s: the delete
/// carries the object's uid as a precondition, so an object made again under that name in
/// between is not touched. True when it deleted.
pub async fn delete_owned<K>(
    api: &Api<K>,
    namespace: &str,
    name: &str,
    owner_uid: &str,
) -> Result<bool, OwnedWriteError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let Some(found) = api.get_metadata_opt(name).await? else {
        return Ok(false);
    };
    if !owned_by(&found.metadata, owner_uid) {
        return Err(conflict::<K>(namespace, name).into());
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: found.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Server-side applies the status of `name`.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &apply_params(), &Patch::Apply(body))
        .await
        .map(|_| ())
}
