//! Cluster state from the API server: watches on Namespaces, NetworkPolicies and EgressIntents
//! feed an [`Index`] with the reflector's semantics, and denials are confirmed with a direct
//! list of the namespace's policies.
//!
//! kube-runtime's `Store` has no namespace index and a review needs one namespace's policies
//! out of thousands, so the watch events go into our own [`Index`] (same relist buffering as
//! `reflector::store::Writer::apply_watcher_event`).

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use portcullis_linter::model::{Labels, NAMESPACE_NAME_LABEL};
use serde_json::Value;

use crate::state::{
    ClusterState, Fresh, Index, IndexEvent, NamespaceInfo, Sizes, Snapshot, StateError, StoredObject, StoredPolicy,
    write,
};

/// The EgressIntent resource, watched untyped so the webhook does not need the CRD's types.
pub fn egress_intent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("portcullis.dev", "v1alpha1", "EgressIntent"),
        "egressintents",
    )
}

/// State backed by watches on the API server.
#[derive(Clone)]
pub struct KubeState {
    client: Client,
    index: Arc<Index>,
}

impl std::fmt::Debug for KubeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeState").field("sizes", &self.index.sizes()).finish_non_exhaustive()
    }
}

/// Maps a watcher event to an index event, converting each object once.
fn index_event<K, T>(event: &Event<K>, key: impl Fn(&K) -> (String, String), value: impl Fn(&K) -> T) -> IndexEvent<T> {
    match event {
        Event::Apply(o) => {
            let (namespace, name) = key(o);
            IndexEvent::Apply { namespace, name, value: value(o) }
        }
        Event::Delete(o) => {
            let (namespace, name) = key(o);
            IndexEvent::Delete { namespace, name }
        }
        Event::Init => IndexEvent::Init,
        Event::InitApply(o) => {
            let (namespace, name) = key(o);
            IndexEvent::InitApply { namespace, name, value: value(o) }
        }
        Event::InitDone => IndexEvent::InitDone,
    }
}

fn namespaced<K: ResourceExt>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// An object as compact JSON, without `managedFields` (large, and never read).
fn slim<K: serde::Serialize>(o: &K) -> Value {
    let mut value = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(Value::Object(meta)) = value.get_mut("metadata") {
        meta.remove("managedFields");
    }
    value
}

fn slim_policy(o: &NetworkPolicy) -> StoredPolicy {
    StoredPolicy::new(slim(o))
}

fn slim_object<K: serde::Serialize>(o: &K) -> StoredObject {
    StoredObject::new(slim(o))
}

fn namespace_info(ns: &Namespace) -> Arc<NamespaceInfo> {
    let mut labels: Labels = ns.labels().clone();
    labels.entry(NAMESPACE_NAME_LABEL.to_owned()).or_insert_with(|| ns.name_any());
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    Arc::new(NamespaceInfo { labels, terminating })
}

impl KubeState {
    pub fn new(client: Client) -> KubeState {
        KubeState { client, index: Arc::new(Index::default()) }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn apply_namespace_event(&self, event: &Event<Namespace>) {
        let e = index_event(event, |o| (String::new(), o.name_any()), namespace_info);
        write(&self.index.namespaces).apply(e);
    }

    pub fn apply_policy_event(&self, event: &Event<NetworkPolicy>) {
        let e = index_event(event, namespaced, slim_policy);
        write(&self.index.policies).apply(e);
    }

    pub fn apply_intent_event(&self, event: &Event<DynamicObject>) {
        let e = index_event(event, namespaced, slim_object);
        write(&self.index.intents).apply(e);
    }

    /// Runs the three watches until the process ends. Errors are retried with kube's default
    /// backoff; `/readyz` stays unready until each watch has listed once.
    pub async fn run(self) {
        let ns = watcher(Api::<Namespace>::all(self.client.clone()), "Namespace", |e| self.apply_namespace_event(e));
        let np =
            watcher(Api::<NetworkPolicy>::all(self.client.clone()), "NetworkPolicy", |e| self.apply_policy_event(e));
        let ei = watcher(
            Api::<DynamicObject>::all_with(self.client.clone(), &egress_intent_resource()),
            "EgressIntent",
            |e| self.apply_intent_event(e),
        );
        tokio::join!(ns, np, ei);
    }
}

async fn watcher<K>(api: Api<K>, kind: &'static str, apply: impl Fn(&Event<K>))
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => apply(&event),
            Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

impl ClusterState for KubeState {
    fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot {
        self.index.snapshot(namespace, dns_namespace)
    }

    fn fresh<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Fresh, StateError>> {
        Box::pin(async move {
            let error = |e: kube::Error| StateError { namespace: namespace.to_owned(), message: e.to_string() };
            let api = Api::<NetworkPolicy>::namespaced(self.client.clone(), namespace);
            let list = api.list(&ListParams::default()).await.map_err(error)?;
            let ns = Api::<Namespace>::all(self.client.clone()).get_opt(namespace).await.map_err(error)?;
            let terminating = ns.as_ref().is_some_and(|ns| namespace_info(ns).terminating);
            Ok(Fresh { policies: list.items.iter().map(slim_policy).collect(), terminating })
        })
    }

    fn ready(&self) -> bool {
        self.index.synced()
    }

    fn sizes(&self) -> Sizes {
        self.index.sizes()
    }
}
