//! The controller's edge to the Kubernetes API, behind a trait: the in-process tests use an
//! in-memory implementation, the binary uses [`KubeApi`] (kube-rs), whose requests are checked
//! against a mocked API server (tower-test).

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Error as KubeError};
use portcullis_linter::egress::{EgressIntent, EgressIntentStatus};
use serde_json::{Value, json};

/// Field manager of every write portcullis makes.
pub const FIELD_MANAGER: &str = "portcullis";

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Optimistic concurrency lost (HTTP 409): someone else wrote first.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl From<KubeError> for ApiError {
    fn from(e: KubeError) -> Self {
        match &e {
            KubeError::Api(status) if status.code == 409 => ApiError::Conflict(e.to_string()),
            _ => ApiError::Other(e.to_string()),
        }
    }
}

/// The writes and reads the controller makes.
pub trait ControllerApi: Send + Sync {
    /// Server-side apply of a NetworkPolicy (field manager `portcullis`, forced: the rendered
    /// policy is portcullis' alone).
    fn apply_policy<'a>(&'a self, namespace: &'a str, policy: &'a Value) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Merge-patches an EgressIntent's status subresource.
    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a EgressIntentStatus,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Reads a Lease.
    fn get_lease<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>, ApiError>>;
    /// Creates a Lease (409 when it exists).
    fn create_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>>;
    /// Replaces a Lease; its `resourceVersion` makes this fail with 409 if it changed meanwhile.
    fn replace_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>>;
}

/// [`ControllerApi`] over kube-rs.
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi").finish_non_exhaustive()
    }
}

impl KubeApi {
    pub fn new(client: Client) -> KubeApi {
        KubeApi { client }
    }
}

impl ControllerApi for KubeApi {
    fn apply_policy<'a>(&'a self, namespace: &'a str, policy: &'a Value) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let name = policy.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
            api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(policy)).await?;
            Ok(())
        })
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a EgressIntentStatus,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api: Api<EgressIntent> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": status});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
            api.patch_status(name, &params, &Patch::Merge(&patch)).await?;
            Ok(())
        })
    }

    fn get_lease<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>, ApiError>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
            Ok(api.get_opt(name).await?)
        })
    }

    fn create_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
            let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
            Ok(api.create(&params, lease).await?)
        })
    }

    fn replace_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
            let name = lease.metadata.name.clone().unwrap_or_default();
            let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
            Ok(api.replace(&name, &params, lease).await?)
        })
    }
}
