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
    /// The write was not sent: this replica's Lease may have expired in another's view.
    #[error("not sent: this replica is not the leader (its lease fence is closed)")]
    Fenced,
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
    /// policy is portcullis' alone). A `metadata.resourceVersion` in `policy` is a precondition
    /// (409 when the stored policy changed since). Returns the stored policy's resourceVersion.
    fn apply_policy<'a>(
        &'a self,
        namespace: &'a str,
        policy: &'a Value,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>>;
    /// Merge-patches an EgressIntent's status subresource; `resource_version`, when given, is a
    /// precondition (409 when the intent changed since it was read).
    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a EgressIntentStatus,
        resource_version: Option<&'a str>,
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

    /// The client, for the other resources' writes ([`super::staged::StagedApi`]).
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

impl ControllerApi for KubeApi {
    fn apply_policy<'a>(
        &'a self,
        namespace: &'a str,
        policy: &'a Value,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async move {
            let name = policy.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
            let stored = api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(policy)).await?;
            Ok(stored.metadata.resource_version)
        })
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a EgressIntentStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api: Api<EgressIntent> = Api::namespaced(self.client.clone(), namespace);
            let mut patch = json!({"status": status});
            if let Some(rv) = resource_version {
                patch["metadata"] = json!({"resourceVersion": rv});
            }
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

/// A [`ControllerApi`] whose writes pass the Lease [`Fence`](super::lease::Fence) first: a
/// replica that may have lost the Lease sends nothing. Reads and Lease calls go through.
#[derive(Debug, Clone)]
pub struct Fenced<A> {
    inner: A,
    fence: super::lease::Fence,
}

impl<A> Fenced<A> {
    pub fn new(inner: A, fence: super::lease::Fence) -> Fenced<A> {
        Fenced { inner, fence }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Whether writes may be sent now.
    pub fn is_open(&self) -> bool {
        self.fence.is_open()
    }
}

impl<A: ControllerApi> ControllerApi for Fenced<A> {
    fn apply_policy<'a>(
        &'a self,
        namespace: &'a str,
        policy: &'a Value,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        if !self.fence.is_open() {
            return Box::pin(async { Err(ApiError::Fenced) });
        }
        self.inner.apply_policy(namespace, policy)
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a EgressIntentStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        if !self.fence.is_open() {
            return Box::pin(async { Err(ApiError::Fenced) });
        }
        self.inner.patch_status(namespace, name, status, resource_version)
    }

    fn get_lease<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>, ApiError>> {
        self.inner.get_lease(namespace, name)
    }

    fn create_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        self.inner.create_lease(namespace, lease)
    }

    fn replace_lease<'a>(&'a self, namespace: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        self.inner.replace_lease(namespace, lease)
    }
}
