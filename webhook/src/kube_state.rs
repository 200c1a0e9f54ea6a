//! Cluster state from the API server: watches on Namespaces, NetworkPolicies and EgressIntents
//! (and, when the config names them, the other policy layers' kinds the cluster serves) feed an
//! [`Index`] with the reflector's semantics, and denials are confirmed with a direct list of the
//! namespace's policies and layer objects.
//!
//! kube-runtime's `Store` has no namespace index and a review needs one namespace's policies
//! out of thousands, so the watch events go into our own [`Index`] (same relist buffering as
//! `reflector::store::Writer::apply_watcher_event`). The watches are [`crate::listwatch`]'s:
//! kube-runtime's watcher semantics, with the list read from the watch cache as it arrives.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use portcullis_linter::config::PolicyLayer;
use portcullis_linter::model::{Labels, NAMESPACE_NAME_LABEL};
use serde_json::Value;

use crate::listwatch;
use crate::state::{
    ClusterState, Fresh, Index, IndexEvent, NamespaceInfo, Sizes, Snapshot, StateError, StoredObject, write,
};
use crate::watched::WatchedPolicy;

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
    layers: Vec<PolicyLayer>,
    /// The layer kinds being watched (served by the cluster), for the fresh read.
    watched: Arc<std::sync::Mutex<Vec<(ApiResource, bool)>>>,
}

/// How often a layer kind the cluster does not serve (its CRD absent) is looked for again.
const ABSENT_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for KubeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeState").field("sizes", &self.index.sizes()).finish_non_exhaustive()
    }
}

/// Maps a watcher event to an index event, converting each object once (taking it: the
/// conversion may leave out parts of it without copying the rest).
fn index_event<K, T>(event: Event<K>, key: impl Fn(&K) -> (String, String), value: impl Fn(K) -> T) -> IndexEvent<T> {
    match event {
        Event::Apply(o) => {
            let (namespace, name) = key(&o);
            IndexEvent::Apply { namespace, name, value: value(o) }
        }
        Event::Delete(o) => {
            let (namespace, name) = key(&o);
            IndexEvent::Delete { namespace, name }
        }
        Event::Init => IndexEvent::Init,
        Event::InitApply(o) => {
            let (namespace, name) = key(&o);
            IndexEvent::InitApply { namespace, name, value: value(o) }
        }
        Event::InitDone => IndexEvent::InitDone,
    }
}

fn namespaced<K: ResourceExt>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// An EgressIntent or layer object as JSON, without `managedFields` (large, and never read),
/// taken out before the object is written rather than written and removed. NetworkPolicies,
/// the kind clusters hold by the thousand, are read slimmer still ([`WatchedPolicy`]).
fn slim<K: serde::Serialize + kube::Resource>(mut o: K) -> Value {
    o.meta_mut().managed_fields = None;
    serde_json::to_value(&o).unwrap_or(Value::Null)
}

fn slim_object<K: serde::Serialize + kube::Resource>(o: K) -> StoredObject {
    StoredObject::new(slim(o))
}

/// A layer object as stored, with the `apiVersion` and `kind` it is served as (list items
/// leave them out).
fn slim_layer(o: DynamicObject, resource: &ApiResource) -> StoredObject {
    let mut value = slim(o);
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".to_owned(), Value::String(resource.api_version.clone()));
        map.insert("kind".to_owned(), Value::String(resource.kind.clone()));
    }
    StoredObject::new(value)
}

fn namespace_info(ns: &Namespace) -> Arc<NamespaceInfo> {
    let mut labels: Labels = ns.labels().clone();
    labels.entry(NAMESPACE_NAME_LABEL.to_owned()).or_insert_with(|| ns.name_any());
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    Arc::new(NamespaceInfo { labels: Arc::new(labels), terminating })
}

impl KubeState {
    pub fn new(client: Client) -> KubeState {
        KubeState {
            client,
            index: Arc::new(Index::default()),
            layers: Vec::new(),
            watched: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    /// Also watches these policy layers' kinds, where the cluster serves them.
    pub fn with_layers(mut self, layers: &[PolicyLayer]) -> KubeState {
        self.layers = layers.to_vec();
        self
    }

    /// Applies a watch event of a layer kind served as `resource`.
    pub fn apply_layer_event(&self, resource: &ApiResource, event: Event<DynamicObject>) {
        let key = crate::state::layer_key(&resource.api_version, &resource.kind);
        let e = index_event(event, namespaced, |o| slim_layer(o, resource));
        write(&self.index.layers).entry(key).or_default().apply(e);
    }

    /// Finds where the cluster serves a layer kind (the first of its group-versions whose
    /// discovery lists it); `Ok(None)` when none does (its CRD is not installed).
    async fn discover(
        &self,
        resource: &portcullis_linter::config::LayerResource,
    ) -> Result<Option<ApiResource>, kube::Error> {
        for (group, version) in resource.served_at {
            let api_version = format!("{group}/{version}");
            match self.client.list_api_group_resources(&api_version).await {
                Ok(list) if list.resources.iter().any(|r| r.name == resource.plural) => {
                    let gvk = GroupVersionKind::gvk(group, version, resource.kind);
                    return Ok(Some(ApiResource::from_gvk_with_plural(&gvk, resource.plural)));
                }
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Watches one layer kind: waits until the cluster serves it (looking again every minute;
    /// readiness does not wait for an absent kind), then keeps its index.
    async fn watch_layer(self, resource: portcullis_linter::config::LayerResource) {
        let found = loop {
            match self.discover(&resource).await {
                Ok(Some(found)) => break found,
                Ok(None) => tracing::info!(
                    kind = resource.kind,
                    group = resource.served_at.first().map_or("", |g| g.0),
                    "policy layer kind not served by this cluster (CRD absent); looking again in 60 s"
                ),
                Err(e) => tracing::warn!(kind = resource.kind, error = %e, "discovery failed; retrying in 60 s"),
            }
            tokio::time::sleep(ABSENT_RECHECK).await;
        };
        let key = crate::state::layer_key(&found.api_version, &found.kind);
        // Registered before the first list: readiness waits for it from now on.
        write(&self.index.layers).entry(key.clone()).or_default();
        if let Ok(mut watched) = self.watched.lock() {
            watched.push((found.clone(), resource.namespaced));
        }
        tracing::info!(kind = resource.kind, api_version = %found.api_version, "watching policy layer kind");
        let api = Api::<DynamicObject>::all_with(self.client.clone(), &found);
        listwatch::run(api, resource.kind, Arc::new(move |e| self.apply_layer_event(&found, e))).await;
    }

    /// `apply` on a handle to this state, for a watch to call with each event.
    fn applying<K: 'static>(&self, apply: fn(&KubeState, Event<K>)) -> listwatch::Apply<K> {
        let state = self.clone();
        Arc::new(move |e| apply(&state, e))
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn apply_namespace_event(&self, event: Event<Namespace>) {
        let e = index_event(event, |o| (String::new(), o.name_any()), |o| namespace_info(&o));
        write(&self.index.namespaces).apply(e);
    }

    pub fn apply_policy_event(&self, event: Event<WatchedPolicy>) {
        let e = index_event(event, namespaced, WatchedPolicy::into_stored);
        write(&self.index.policies).apply(e);
    }

    pub fn apply_intent_event(&self, event: Event<DynamicObject>) {
        let e = index_event(event, namespaced, slim_object);
        write(&self.index.intents).apply(e);
    }

    /// Runs the watches ([`listwatch::run`]) until the process ends. Errors are retried with
    /// backoff; `/readyz` stays unready until each watch has listed once.
    pub async fn run(self) {
        let ns = listwatch::run(
            Api::<Namespace>::all(self.client.clone()),
            "Namespace",
            self.applying(KubeState::apply_namespace_event),
        );
        let np = listwatch::run(
            Api::<WatchedPolicy>::all(self.client.clone()),
            "NetworkPolicy",
            self.applying(KubeState::apply_policy_event),
        );
        let ei = listwatch::run(
            Api::<DynamicObject>::all_with(self.client.clone(), &egress_intent_resource()),
            "EgressIntent",
            self.applying(KubeState::apply_intent_event),
        );
        let layers = self.layers.iter().flat_map(|l| l.resources()).map(|r| self.clone().watch_layer(*r));
        let layers = futures::future::join_all(layers);
        tokio::join!(ns, np, ei, layers);
    }

    /// The layer objects of [`crate::state::Snapshot::layers`] for `namespace`, listed fresh;
    /// `None` when no layer kind is watched.
    async fn fresh_layers(&self, namespace: &str) -> Result<Option<Vec<StoredObject>>, kube::Error> {
        let watched = self.watched.lock().map(|w| w.clone()).unwrap_or_default();
        if watched.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (resource, namespaced) in watched {
            let api = if namespaced {
                Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &resource)
            } else {
                Api::<DynamicObject>::all_with(self.client.clone(), &resource)
            };
            let list = api.list(&ListParams::default()).await?;
            out.extend(list.items.into_iter().map(|o| slim_layer(o, &resource)));
        }
        Ok(Some(out))
    }
}

impl ClusterState for KubeState {
    fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot {
        self.index.snapshot(namespace, dns_namespace)
    }

    fn cluster_view(&self) -> crate::state::ClusterView {
        self.index.cluster_view()
    }

    fn objects(&self) -> Vec<serde_json::Value> {
        self.index.objects()
    }

    fn fresh<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Fresh, StateError>> {
        Box::pin(async move {
            let error = |e: kube::Error| StateError { namespace: namespace.to_owned(), message: e.to_string() };
            let api = Api::<WatchedPolicy>::namespaced(self.client.clone(), namespace);
            let list = api.list(&ListParams::default()).await.map_err(error)?;
            let ns = Api::<Namespace>::all(self.client.clone()).get_opt(namespace).await.map_err(error)?;
            let terminating = ns.as_ref().is_some_and(|ns| namespace_info(ns).terminating);
            let layers = self.fresh_layers(namespace).await.map_err(error)?;
            Ok(Fresh {
                policies: list.items.into_iter().map(WatchedPolicy::into_stored).collect(),
                layers,
                terminating,
            })
        })
    }

    fn ready(&self) -> bool {
        self.index.synced()
    }

    fn sizes(&self) -> Sizes {
        self.index.sizes()
    }
}
