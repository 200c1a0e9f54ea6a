//! Prometheus metrics, served as text on the plain-HTTP port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::Sizes;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub endpoint: &'static str,
    /// From [`kind_label`]: a fixed set, never the request's own text.
    pub kind: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
}

/// Kinds a review's `kind` label may take; anything else is `other`. A client controls
/// `request.kind.kind`: a label taken from it let 150 requests with 1 MB kinds hold 242 MB.
const KIND_LABELS: [&str; 22] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "NetworkPolicy",
    "EgressIntent",
    "Namespace",
    "Service",
    "Ingress",
    "ClusterNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "CiliumNetworkPolicy",
    "CiliumClusterwideNetworkPolicy",
    "GlobalNetworkPolicy",
    "Tier",
    "NetworkSet",
    "GlobalNetworkSet",
];

/// The metrics label for a request's kind.
pub fn kind_label(kind: &str) -> &'static str {
    KIND_LABELS.iter().find(|k| **k == kind).copied().unwrap_or("other")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// [`portcullis_linter::egress::Refusal::label`].
    pub reason: &'static str,
    /// `resolver` or `sensor`.
    pub source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// Every metric the webhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    pub bad_requests: Family<EndpointLabels, Counter>,
    pub fresh_reads: Family<ResultLabels, Counter>,
    pub cache_objects: Family<ObjectLabels, Gauge>,
    pub cert_expiry: Gauge,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub observations: Family<ResultLabels, Counter>,
    pub observation_requests: Family<ResultLabels, Counter>,
    pub observation_intent_updates: Counter,
    pub guard_refusals: Family<RefusalLabels, Counter>,
    /// Reviews answered 503 at once because the review budget was spent.
    pub shed: Counter,
    /// Reviews answered 503 at their deadline.
    pub timeouts: Counter,
    /// Review answers found in the decision memo (`crate::memo`), and not found.
    pub memo_hits: Counter,
    pub memo_misses: Counter,
    /// Connection starts of `POST /v1/flows`, by what the aggregator did with them.
    pub traffic_flows: Family<ResultLabels, Counter>,
    pub traffic_requests: Family<ResultLabels, Counter>,
    pub traffic_edges: Gauge,
    pub traffic_edges_evicted: Counter,
    pub traffic_edges_expired: Counter,
    pub traffic_writes: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A decision memo of `budget_bytes` counting into these metrics.
    pub fn decision_memo(&self, budget_bytes: usize) -> crate::memo::DecisionMemo {
        crate::memo::DecisionMemo::new(budget_bytes, self.memo_hits.clone(), self.memo_misses.clone())
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register("reviews", "Admission reviews by endpoint, kind, operation and decision", reviews.clone());
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("review_duration_seconds", "Time to decide one admission review", latency.clone());
        let bad_requests = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "Bodies that were not AdmissionReview v1 requests (HTTP 400)",
            bad_requests.clone(),
        );
        let fresh_reads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "fresh_reads",
            "Direct reads of a namespace's policies before a denial, by result",
            fresh_reads.clone(),
        );
        let cache_objects = Family::<ObjectLabels, Gauge>::default();
        registry.register("cache_objects", "Objects in the cluster-state cache, by kind", cache_objects.clone());
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix timestamp",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads from disk, by result",
            cert_reloads.clone(),
        );
        let observations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "observations",
            "Sensor observations received: accepted (fed to the controller) or unattributed (no pod)",
            observations.clone(),
        );
        let observation_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "observation_requests_refused",
            "POST /v1/observations requests refused, by reason",
            observation_requests.clone(),
        );
        let observation_intent_updates = Counter::default();
        registry.register(
            "observation_intent_updates",
            "EgressIntents whose addresses changed because of an observation",
            observation_intent_updates.clone(),
        );
        let guard_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "address_guard_refusals",
            "Addresses DNS or a sensor gave for an EgressIntent that the address guard kept out, by reason and source",
            guard_refusals.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "reviews_shed",
            "Reviews answered 503 at once because the webhook was at its review budget (concurrency or body bytes)",
            shed.clone(),
        );
        let timeouts = Counter::default();
        registry.register("review_timeouts", "Reviews answered 503 at --review-timeout-ms", timeouts.clone());
        let memo_hits = Counter::default();
        registry.register(
            "decision_memo_hits",
            "Reviews answered from the decision memo: the same question about the same object in the same cached state",
            memo_hits.clone(),
        );
        let memo_misses = Counter::default();
        registry.register(
            "decision_memo_misses",
            "Reviews decided because the decision memo held no answer for them",
            memo_misses.clone(),
        );
        let traffic_flows = Family::<ResultLabels, Counter>::default();
        registry.register(
            "traffic_flows",
            "Connection starts received by the traffic aggregator: counted, skipped (the other end's node counts it, a SYN-ACK or a reply), dropped (edge limit)",
            traffic_flows.clone(),
        );
        let traffic_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "traffic_batches",
            "POST /v1/flows batches: durable, pending (not yet written, or not the aggregator), duplicate, or refused by reason",
            traffic_requests.clone(),
        );
        let traffic_edges = Gauge::default();
        registry.register(
            "traffic_edges",
            "Edges the traffic history keeps (on the aggregating replica)",
            traffic_edges.clone(),
        );
        let traffic_edges_evicted = Counter::default();
        registry.register(
            "traffic_edges_evicted",
            "Least recently seen edges forgotten to keep a node's history object under the API server's size limit",
            traffic_edges_evicted.clone(),
        );
        let traffic_edges_expired = Counter::default();
        registry.register(
            "traffic_edges_expired",
            "Edges forgotten because nothing of them was left in the history window",
            traffic_edges_expired.clone(),
        );
        let traffic_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "traffic_history_writes",
            "Writes of a node's traffic history object, by result (ok, conflict, failed)",
            traffic_writes.clone(),
        );
        Metrics {
            traffic_flows,
            traffic_requests,
            traffic_edges,
            traffic_edges_evicted,
            traffic_edges_expired,
            traffic_writes,
            registry,
            shed,
            timeouts,
            memo_hits,
            memo_misses,
            guard_refusals,
            reviews,
            latency,
            bad_requests,
            fresh_reads,
            cache_objects,
            cert_expiry,
            cert_reloads,
            observations,
            observation_requests,
            observation_intent_updates,
        }
    }

    /// The metrics in Prometheus text format, cache sizes as of now.
    pub fn render(&self, sizes: Sizes) -> String {
        for (kind, n) in [
            ("Namespace", sizes.namespaces),
            ("NetworkPolicy", sizes.policies),
            ("EgressIntent", sizes.intents),
            ("PolicyLayerObject", sizes.layer_objects),
        ] {
            self.cache_objects.get_or_create(&ObjectLabels { kind }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 16, class 3): `request.kind.kind` became a label verbatim; 150 requests
    /// with 1 MB kinds kept 242 MB and made `/metrics` 172 MB.
    #[test]
    fn review_labels_come_from_a_fixed_set() {
        assert_eq!(kind_label("Deployment"), "Deployment");
        assert_eq!(kind_label(&"K".repeat(1 << 20)), "other");
        assert_eq!(kind_label("deployment"), "other");
        let metrics = Metrics::new();
        for i in 0..200 {
            let kind = format!("Kind{i}{}", "x".repeat(10_000));
            metrics
                .reviews
                .get_or_create(&ReviewLabels {
                    endpoint: "validate",
                    kind: kind_label(&kind),
                    operation: "CREATE",
                    decision: "skip",
                })
                .inc();
        }
        let text = metrics.render(Sizes::default());
        assert!(text.len() < 10_000, "{} bytes of metrics", text.len());
        assert!(text.contains("kind=\"other\""));
    }
}
