//! Staged policies (issue 20): a NetworkPolicy kept in the cluster as a `StagedPolicy`, which
//! no CNI enforces, judged against the traffic the cluster really had before anyone enforces it.
//!
//! Everything here is pure: the controller passes the cluster's objects, the recorded traffic
//! and the time. [`evaluate`] answers which recorded connections the staged policy would deny
//! that the cluster allows today (edges the cluster already denies are not the staged policy's
//! doing); [`status`] turns that into the object's status with its `ReadyToPromote` condition;
//! [`promoted`] is the NetworkPolicy promotion creates (`portcullis promote`).
//!
//! A staged policy named like an existing NetworkPolicy of its namespace stands for a new
//! version of it: the evaluation replaces the stored one, and promotion updates it.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Map, Value, json};

use crate::load::{DocumentRef, SourceId};
use crate::model::Inventory;
use crate::replay::{TrafficLog, allowed_edges};

/// `apiVersion` of StagedPolicy.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";
/// `kind` of StagedPolicy.
pub const KIND: &str = "StagedPolicy";
/// Annotation promotion writes on the NetworkPolicy: the staged policy it came from.
pub const PROMOTED_FROM_ANNOTATION: &str = "portcullis.dev/promoted-from";
/// The condition that says whether the staged policy can be promoted.
pub const READY_TO_PROMOTE: &str = "ReadyToPromote";
/// Denied edges a status lists as examples (the counts cover them all).
pub const MAX_EXAMPLES: usize = 10;

/// A NetworkPolicy that is staged, not enforced: portcullis judges it against the traffic the
/// cluster records and reports what it would deny.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "portcullis.dev",
        version = "v1alpha1",
        kind = "StagedPolicy",
        namespaced,
        shortname = "sp",
        category = "portcullis",
        status = "StagedPolicyStatus",
        doc = "A NetworkPolicy staged, not enforced: portcullis replays the traffic the cluster recorded against it and reports in status what it would deny; `portcullis promote` turns it into the real policy.",
        printcolumn = r#"{"name":"Denied","type":"integer","jsonPath":".status.deniedConnections"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"ReadyToPromote\")].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    )
)]
pub struct StagedPolicySpec {
    /// The NetworkPolicy's spec, as it would be enforced once promoted (same name and
    /// namespace as this object; a NetworkPolicy of that name is the one it would replace).
    pub network_policy: NetworkPolicySpec,
    /// How long the recorded traffic must show no denial before the policy is ready to
    /// promote: `7d`, `36h`. Default and most: the traffic history's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(regex(pattern = r"^[1-9][0-9]{0,3}[hd]$")))]
    pub ready_after: Option<String>,
}

/// Written by the portcullis controller: what the staged policy would deny.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct StagedPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the recorded traffic was last replayed against the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<Time>,
    /// The earliest connection in the traffic history: what the verdict covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_since: Option<Time>,
    /// Recorded edges (source, destination, port) in the readiness window.
    #[serde(default)]
    pub edges: u64,
    /// Of those, the edges the cluster allows today and the staged policy would deny.
    #[serde(default)]
    pub denied_edges: u64,
    /// The connections those edges stand for.
    #[serde(default)]
    pub denied_connections: u64,
    /// When a connection it would deny was last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_denied: Option<Time>,
    /// The most frequent denied edges (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<StagedDenial>,
    /// `ReadyToPromote`: true once the readiness window of recorded traffic shows no denial.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One recorded edge the staged policy would deny.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct StagedDenial {
    /// `namespace/Kind/name` of a workload, or an address (with the name its pod resolved).
    pub source: String,
    pub destination: String,
    pub port: i32,
    pub protocol: String,
    /// Connections seen in the readiness window.
    pub connections: u64,
    pub last_seen: Time,
}

/// What replaying the traffic against a staged policy found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Edges judged.
    pub edges: usize,
    /// Edges allowed without the staged policy and denied with it, most connections first.
    pub denied: Vec<StagedDenial>,
    pub denied_connections: u64,
    pub last_denied: Option<Timestamp>,
}

/// The NetworkPolicy a staged policy stands for: its spec under the staged object's name and
/// namespace. `spec` is the staged object's `spec.networkPolicy`.
pub fn network_policy(namespace: &str, name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// Why a staged object cannot be promoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    #[error("not a StagedPolicy (apiVersion {API_VERSION}, kind {KIND})")]
    NotStaged,
    #[error("the StagedPolicy has no metadata.name")]
    NoName,
    #[error("StagedPolicy {0} has no spec.networkPolicy object")]
    NoSpec(String),
    #[error(
        "StagedPolicy {0} has no status: read it from the cluster (kubectl get stagedpolicy NAME -o yaml), or pass --ignore-verdict to promote without one"
    )]
    NoStatus(String),
    #[error("StagedPolicy {name} is not ready to promote: {message} (pass --ignore-verdict to promote anyway)")]
    NotReady { name: String, message: String },
}

/// The NetworkPolicy promoting `staged` (a StagedPolicy object as read from the cluster or a
/// file) creates: the staged spec, the staged object's labels, and an annotation naming where it
/// came from. Unless `force`, only a staged policy whose status says `ReadyToPromote` is promoted.
pub fn promoted(staged: &Value, default_namespace: &str, force: bool) -> Result<Value, PromoteError> {
    let str_at = |pointer: &str| staged.pointer(pointer).and_then(Value::as_str);
    if str_at("/apiVersion") != Some(API_VERSION) || str_at("/kind") != Some(KIND) {
        return Err(PromoteError::NotStaged);
    }
    let name = str_at("/metadata/name").filter(|n| !n.is_empty()).ok_or(PromoteError::NoName)?;
    let namespace = str_at("/metadata/namespace").unwrap_or(default_namespace);
    let qualified = format!("{namespace}/{name}");
    let spec = match staged.pointer("/spec/networkPolicy") {
        Some(spec @ Value::Object(_)) => spec,
        _ => return Err(PromoteError::NoSpec(qualified)),
    };
    if !force {
        let ready = staged
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(READY_TO_PROMOTE)));
        match ready {
            None => return Err(PromoteError::NoStatus(qualified)),
            Some(c) if c.get("status").and_then(Value::as_str) != Some("True") => {
                let message = c.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned();
                return Err(PromoteError::NotReady { name: qualified, message });
            }
            Some(_) => {}
        }
        // A verdict about an older spec says nothing about this one.
        let generation = staged.pointer("/metadata/generation").and_then(Value::as_i64);
        let observed = staged.pointer("/status/observedGeneration").and_then(Value::as_i64);
        if generation.is_some() && generation != observed {
            return Err(PromoteError::NotReady {
                name: qualified,
                message: "its status describes an earlier spec; wait for the controller to judge this one".to_owned(),
            });
        }
    }
    let mut policy = network_policy(namespace, name, spec);
    let mut metadata = Map::new();
    metadata.insert("name".to_owned(), json!(name));
    metadata.insert("namespace".to_owned(), json!(namespace));
    if let Some(labels @ Value::Object(_)) = staged.pointer("/metadata/labels") {
        metadata.insert("labels".to_owned(), labels.clone());
    }
    metadata.insert("annotations".to_owned(), json!({ PROMOTED_FROM_ANNOTATION: format!("{KIND}/{name}") }));
    policy["metadata"] = Value::Object(metadata);
    Ok(policy)
}

/// Replays `log` against the cluster's objects (`cluster`: Namespaces, NetworkPolicies and the
/// other layers' objects the engine reads) with and without the staged `policy` (a
/// NetworkPolicy value from [`network_policy`]), counting connections from `since` on. A stored policy of the same name and namespace
/// is replaced by the staged one. Only edges with an end in the policy's namespace are judged
/// (no other edge's verdict can change), with only the objects of their ends' namespaces and
/// the cluster-scoped ones (no other object can select their ends): the cost follows the staged
/// policy's traffic, not the cluster's size.
pub fn evaluate(cluster: &[Value], policy: &Value, log: &TrafficLog, since: Option<Timestamp>) -> Evaluation {
    let str_at = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let namespace = str_at(policy, "/metadata/namespace").unwrap_or_default();
    let name = str_at(policy, "/metadata/name");
    let replaced = |v: &Value| {
        str_at(v, "/kind").as_deref() == Some("NetworkPolicy")
            && str_at(v, "/metadata/namespace").as_deref() == Some(namespace.as_str())
            && str_at(v, "/metadata/name") == name
    };
    let in_namespace =
        |p: &crate::replay::Peer| matches!(p, crate::replay::Peer::Workload(w) if w.namespace == namespace);
    // The namespace's edges first, then the window: only they are copied (the history holds the
    // whole cluster's).
    let judged = TrafficLog {
        edges: log.edges.iter().filter(|e| in_namespace(&e.source) || in_namespace(&e.destination)).cloned().collect(),
    };
    let judged = match since {
        Some(since) => judged.since(since),
        None => judged,
    };
    // Only the namespaces of the judged edges' ends can hold a namespaced policy that selects
    // one of them; cluster-scoped objects (Namespaces, cluster-wide layers) all stay.
    let mut namespaces: std::collections::BTreeSet<&str> = [namespace.as_str()].into();
    for edge in &judged.edges {
        for peer in [&edge.source, &edge.destination] {
            if let crate::replay::Peer::Workload(w) = peer {
                namespaces.insert(&w.namespace);
            }
        }
    }
    let relevant = |v: &Value| {
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none_or(|ns| ns.is_empty() || namespaces.contains(ns))
    };
    let inventory = |with: Option<&Value>| {
        let mut inv = Inventory::new(&namespace);
        let objects = cluster.iter().filter(|v| relevant(v) && (with.is_none() || !replaced(v))).chain(with);
        for (i, value) in objects.enumerate() {
            inv.add_object(DocumentRef::detached(SourceId(0), i), String::new(), value.clone());
        }
        inv
    };
    let before = allowed_edges(&inventory(None), &judged);
    let after = allowed_edges(&inventory(Some(policy)), &judged);
    let mut out = Evaluation { edges: judged.edges.len(), ..Evaluation::default() };
    for ((edge, before), after) in judged.edges.iter().zip(before).zip(after) {
        if !before || after {
            continue;
        }
        out.denied_connections = out.denied_connections.saturating_add(edge.count);
        out.last_denied = out.last_denied.max(Some(edge.last_seen));
        out.denied.push(StagedDenial {
            source: edge.source.label(),
            destination: edge.destination.label(),
            port: edge.port,
            protocol: edge.protocol.to_string(),
            connections: edge.count,
            last_seen: Time(edge.last_seen),
        });
    }
    out.denied.sort_by(|a, b| {
        b.connections
            .cmp(&a.connections)
            .then_with(|| (&a.source, &a.destination, a.port).cmp(&(&b.source, &b.destination, b.port)))
    });
    out
}

/// Parses `ready_after` (`7d`, `36h`), capped at `window`; absent: `window`.
pub fn ready_after(raw: Option<&str>, window: SignedDuration) -> Result<SignedDuration, String> {
    let Some(raw) = raw else { return Ok(window) };
    let bad = || format!("readyAfter {raw:?}: expected hours or days such as 36h or 7d");
    let (number, hours_per) = match (raw.strip_suffix('h'), raw.strip_suffix('d')) {
        (Some(n), _) => (n, 1),
        (_, Some(n)) => (n, 24),
        _ => return Err(bad()),
    };
    // Digits only, as the CRD's pattern (`parse` would take a sign).
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = number.parse().ok().filter(|n| (1..=9_999).contains(n)).ok_or_else(bad)?;
    Ok(SignedDuration::from_hours(n.saturating_mul(hours_per)).min(window))
}

/// What the controller knows when it judges a staged policy.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    pub now: Timestamp,
    /// The staged object's generation.
    pub generation: Option<i64>,
    /// How long the traffic must show no denial ([`ready_after`]).
    pub ready_after: SignedDuration,
    /// The earliest connection in the whole history (`None`: nothing recorded yet).
    pub history_since: Option<Timestamp>,
    /// The last status written, for the condition's transition time.
    pub previous: Option<&'a StagedPolicyStatus>,
}

/// The status for an evaluation of the traffic in the readiness window.
pub fn status(evaluation: Evaluation, judged: Judged<'_>) -> StagedPolicyStatus {
    let Judged { now, generation, ready_after, history_since, previous } = judged;
    let window = human(ready_after);
    let (state, reason, message) = if let Some(first) = evaluation.denied.first() {
        (
            "False",
            "WouldDeny",
            format!(
                "would deny {} connection(s) on {} edge(s) seen in the last {window}, the last at {}; the most frequent: {} -> {} {}/{}",
                evaluation.denied_connections,
                evaluation.denied.len(),
                evaluation
                    .last_denied
                    .map_or_else(String::new, |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string()),
                first.source,
                first.destination,
                first.port,
                first.protocol
            ),
        )
    } else if let Some(since) = history_since {
        let covered = now.duration_since(since);
        if covered >= ready_after {
            ("True", "NothingDenied", format!("no connection recorded in the last {window} would be denied"))
        } else {
            let at = since.checked_add(ready_after).map_or_else(|_| String::new(), |t| format!(" (at {t})"));
            (
                "False",
                "Observing",
                format!(
                    "nothing denied in the {} of traffic recorded so far; ready once the history covers {window}{at}",
                    human(covered)
                ),
            )
        }
    } else {
        ("False", "NoTraffic", "no traffic recorded yet: is the traffic history enabled (traffic.enabled)?".to_owned())
    };
    let condition = ready_to_promote((state, reason, message), generation, previous, now);
    StagedPolicyStatus {
        observed_generation: generation,
        evaluated_at: Some(Time(now)),
        history_since: history_since.map(Time),
        edges: evaluation.edges as u64,
        denied_edges: evaluation.denied.len() as u64,
        denied_connections: evaluation.denied_connections,
        last_denied: evaluation.last_denied.map(Time),
        examples: evaluation.denied.into_iter().take(MAX_EXAMPLES).collect(),
        conditions: vec![condition],
    }
}

/// The status of a staged policy whose spec cannot be judged (`message` says why).
pub fn invalid(
    message: String,
    generation: Option<i64>,
    previous: Option<&StagedPolicyStatus>,
    now: Timestamp,
) -> StagedPolicyStatus {
    StagedPolicyStatus {
        observed_generation: generation,
        evaluated_at: Some(Time(now)),
        conditions: vec![ready_to_promote(("False", "InvalidSpec", message), generation, previous, now)],
        ..StagedPolicyStatus::default()
    }
}

/// The `ReadyToPromote` condition; its `lastTransitionTime` is kept from `previous` while the
/// status stays the same (it marks flips, not new reasons or messages).
fn ready_to_promote(
    (state, reason, message): (&str, &str, String),
    generation: Option<i64>,
    previous: Option<&StagedPolicyStatus>,
    now: Timestamp,
) -> Condition {
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == READY_TO_PROMOTE))
        .filter(|c| c.status == state)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: READY_TO_PROMOTE.to_owned(),
        status: state.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Whether two statuses say the same, apart from when they were computed (a status is written
/// only when this is false).
pub fn same_verdict(a: &StagedPolicyStatus, b: &StagedPolicyStatus) -> bool {
    let strip = |s: &StagedPolicyStatus| StagedPolicyStatus { evaluated_at: None, ..s.clone() };
    strip(a) == strip(b)
}

/// `36h`, `7d`, `2d 5h`.
fn human(d: SignedDuration) -> String {
    let hours = d.as_hours().max(0);
    match (hours / 24, hours % 24) {
        (0, h) => format!("{h}h"),
        (days, 0) => format!("{days}d"),
        (days, h) => format!("{days}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    //! Expected verdicts follow the NetworkPolicy API reference: a pod selected by a policy
    //! with `Egress` (`Ingress`) in `policyTypes` is isolated in that direction and allows only
    //! what some policy's rules allow; policies add up; a connection needs both its source's
    //! egress and its destination's ingress to allow it.

    use super::*;
    use crate::replay::traffic::{Bounds, parse};

    fn workload(namespace: &str, workload: &str, app: &str) -> Value {
        json!({"namespace": namespace, "workload": workload, "labels": {"app": app}})
    }

    fn edge(source: Value, destination: Value, port: i32, protocol: &str, count: u64, last: &str) -> Value {
        json!({"source": source, "destination": destination, "port": port, "protocol": protocol,
               "firstSeen": "2026-11-01T00:00:00Z", "lastSeen": last, "count": count})
    }

    fn log(edges: Vec<Value>) -> TrafficLog {
        let text = json!({"version": 1, "edges": edges}).to_string();
        parse(text.as_bytes(), Bounds::default()).unwrap()
    }

    fn namespaces() -> Vec<Value> {
        ["shop", "data", "kube-system"]
            .iter()
            .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .collect()
    }

    fn dns() -> Value {
        workload("kube-system", "Deployment/coredns", "kube-dns")
    }

    fn traffic() -> TrafficLog {
        let web = || workload("shop", "Deployment/web", "web");
        log(vec![
            edge(
                web(),
                json!({"address": "203.0.113.7", "name": "api.stripe.com"}),
                443,
                "TCP",
                40,
                "2026-11-20T10:00:00Z",
            ),
            edge(web(), dns(), 53, "UDP", 500, "2026-11-20T11:00:00Z"),
            edge(web(), workload("data", "StatefulSet/db", "db"), 5432, "TCP", 7, "2026-11-19T09:00:00Z"),
            edge(
                workload("data", "Deployment/api", "api"),
                workload("data", "StatefulSet/db", "db"),
                5432,
                "TCP",
                90,
                "2026-11-20T09:00:00Z",
            ),
            edge(workload("data", "Deployment/api", "api"), dns(), 53, "UDP", 30, "2026-11-20T09:00:00Z"),
        ])
    }

    /// Egress of app=web: DNS only.
    fn web_dns_only(name: &str) -> Value {
        network_policy(
            "shop",
            name,
            &json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "kube-dns"}}}],
                            "ports": [{"port": 53, "protocol": "UDP"}]}],
            }),
        )
    }

    fn denied(e: &Evaluation) -> Vec<(String, i32)> {
        e.denied.iter().map(|d| (d.destination.clone(), d.port)).collect()
    }

    #[test]
    fn an_egress_lockdown_denies_what_its_rules_leave_out() {
        let e = evaluate(&namespaces(), &web_dns_only("web-egress"), &traffic(), None);
        // Judged: the three edges of shop's pod; data's own edges cannot change.
        assert_eq!(e.edges, 3);
        assert_eq!(
            denied(&e),
            vec![("api.stripe.com (203.0.113.7)".to_owned(), 443), ("data/StatefulSet/db".to_owned(), 5432)]
        );
        assert_eq!(e.denied_connections, 47);
        assert_eq!(e.last_denied, Some("2026-11-20T10:00:00Z".parse().unwrap()));
        // From the 20th on, the 5432 edge (last seen on the 19th) is out of the window.
        let recent = evaluate(
            &namespaces(),
            &web_dns_only("web-egress"),
            &traffic(),
            Some("2026-11-20T00:00:00Z".parse().unwrap()),
        );
        assert_eq!(denied(&recent), vec![("api.stripe.com (203.0.113.7)".to_owned(), 443)]);
        assert_eq!(recent.edges, 2);
    }

    #[test]
    fn edges_the_cluster_already_denies_are_not_the_staged_policys_doing() {
        let mut cluster = namespaces();
        // Today: shop is egress default-deny with only DNS allowed.
        cluster.push(web_dns_only("existing"));
        let staged = network_policy(
            "shop",
            "web-egress",
            &json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}),
        );
        let e = evaluate(&cluster, &staged, &traffic(), None);
        assert_eq!(denied(&e), Vec::<(String, i32)>::new());
    }

    #[test]
    fn the_far_ends_namespace_counts_and_unrelated_ones_do_not() {
        let mut cluster = namespaces();
        // Today data's db admits nobody: web's 5432 edge is already denied there.
        cluster.push(network_policy(
            "data",
            "db-closed",
            &json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]}),
        ));
        let e = evaluate(&cluster, &web_dns_only("web-egress"), &traffic(), None);
        assert_eq!(denied(&e), vec![("api.stripe.com (203.0.113.7)".to_owned(), 443)]);
        // A namespace no judged edge touches changes nothing.
        cluster.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}));
        cluster.push(network_policy("other", "all", &json!({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]})));
        assert_eq!(evaluate(&cluster, &web_dns_only("web-egress"), &traffic(), None), e);
    }

    #[test]
    fn an_ingress_lockdown_denies_other_clients() {
        let staged = network_policy(
            "data",
            "db-ingress",
            &json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}],
            }),
        );
        let e = evaluate(&namespaces(), &staged, &traffic(), None);
        // The client in shop is not `app=api` of data (a bare podSelector names the policy's
        // own namespace); the api is allowed on every port.
        assert_eq!(e.edges, 3);
        assert_eq!(denied(&e), vec![("data/StatefulSet/db".to_owned(), 5432)]);
        assert_eq!(e.denied[0].source, "shop/Deployment/web");
    }

    #[test]
    fn a_staged_policy_named_like_a_stored_one_replaces_it() {
        let mut cluster = namespaces();
        let mut stored = web_dns_only("web-egress");
        stored["spec"]["egress"].as_array_mut().unwrap().push(json!({"ports": [{"port": 443}, {"port": 5432}]}));
        cluster.push(stored);
        // Without replacement, the stored rules would keep 443 and 5432 open.
        let e = evaluate(&cluster, &web_dns_only("web-egress"), &traffic(), None);
        assert_eq!(denied(&e).len(), 2);
        // Under another name, the policies add up: nothing more is denied.
        let e = evaluate(&cluster, &web_dns_only("other"), &traffic(), None);
        assert!(e.denied.is_empty());
    }

    fn judged(now: &str, since: Option<&str>) -> Judged<'static> {
        Judged {
            now: now.parse().unwrap(),
            generation: Some(3),
            ready_after: SignedDuration::from_hours(7 * 24),
            history_since: since.map(|s| s.parse().unwrap()),
            previous: None,
        }
    }

    fn ready(status: &StagedPolicyStatus) -> (&str, &str) {
        let c = &status.conditions[0];
        assert_eq!(c.type_, READY_TO_PROMOTE);
        assert_eq!(c.observed_generation, Some(3));
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn readiness_needs_no_denial_and_a_history_covering_the_window() {
        let denying = evaluate(&namespaces(), &web_dns_only("w"), &traffic(), None);
        let s = status(denying, judged("2026-11-21T00:00:00Z", Some("2026-11-01T00:00:00Z")));
        assert_eq!(ready(&s), ("False", "WouldDeny"));
        assert_eq!((s.denied_edges, s.denied_connections, s.examples.len()), (2, 47, 2));
        assert!(s.conditions[0].message.contains("47 connection(s) on 2 edge(s)"), "{}", s.conditions[0].message);

        let clean = Evaluation { edges: 3, ..Evaluation::default() };
        let s = status(clean.clone(), judged("2026-11-21T00:00:00Z", None));
        assert_eq!(ready(&s), ("False", "NoTraffic"));
        let s = status(clean.clone(), judged("2026-11-21T00:00:00Z", Some("2026-11-18T00:00:00Z")));
        assert_eq!(ready(&s), ("False", "Observing"));
        assert!(s.conditions[0].message.contains("3d of traffic"), "{}", s.conditions[0].message);
        assert!(s.conditions[0].message.contains("2026-11-25T00:00:00Z"), "{}", s.conditions[0].message);
        let s = status(clean, judged("2026-11-25T00:00:00Z", Some("2026-11-18T00:00:00Z")));
        assert_eq!(ready(&s), ("True", "NothingDenied"));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_condition_flips() {
        let clean = Evaluation::default;
        let first = status(clean(), judged("2026-11-20T00:00:00Z", Some("2026-11-18T00:00:00Z")));
        let later = Judged { previous: Some(&first), ..judged("2026-11-21T00:00:00Z", Some("2026-11-18T00:00:00Z")) };
        let second = status(clean(), later);
        assert_eq!(second.conditions[0].last_transition_time, first.conditions[0].last_transition_time);
        // Still observing, but the message says the history grew: a verdict to write.
        assert!(second.conditions[0].message.contains("3d of traffic"), "{}", second.conditions[0].message);
        assert!(!same_verdict(&first, &second));
        let flipped =
            Judged { previous: Some(&second), ..judged("2026-11-26T00:00:00Z", Some("2026-11-18T00:00:00Z")) };
        let third = status(clean(), flipped);
        assert_eq!(third.conditions[0].last_transition_time, Time("2026-11-26T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn same_verdict_ignores_only_the_evaluation_time() {
        let a = status(Evaluation::default(), judged("2026-11-20T00:00:00Z", None));
        let b = StagedPolicyStatus { evaluated_at: Some(Time("2026-11-20T00:05:00Z".parse().unwrap())), ..a.clone() };
        assert!(same_verdict(&a, &b));
        let c = StagedPolicyStatus { denied_edges: 1, ..a.clone() };
        assert!(!same_verdict(&a, &c));
    }

    #[test]
    fn ready_after_reads_hours_and_days_capped_at_the_window() {
        let window = SignedDuration::from_hours(14 * 24);
        assert_eq!(ready_after(None, window), Ok(window));
        assert_eq!(ready_after(Some("36h"), window), Ok(SignedDuration::from_hours(36)));
        assert_eq!(ready_after(Some("7d"), window), Ok(SignedDuration::from_hours(168)));
        assert_eq!(ready_after(Some("30d"), window), Ok(window));
        // A last character of several bytes once split inside it (a panic).
        for bad in ["", "d", "0d", "7", "7w", "-1d", "10000d", "1.5d", "٣d", "7é", "é", "+7d", " 7d"] {
            assert!(ready_after(Some(bad), window).is_err(), "{bad}");
        }
    }

    fn staged_object(status: Option<Value>) -> Value {
        let mut v = json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "web-egress", "namespace": "shop", "generation": 3, "labels": {"team": "shop"}},
            "spec": {"networkPolicy": {"podSelector": {}, "policyTypes": ["Egress"]}},
        });
        if let Some(s) = status {
            v["status"] = s;
        }
        v
    }

    fn condition(state: &str, generation: i64) -> Value {
        json!({"observedGeneration": generation, "conditions": [
            {"type": READY_TO_PROMOTE, "status": state, "reason": "X", "message": "would deny 3 connection(s)"}]})
    }

    #[test]
    fn promotion_needs_a_ready_verdict_about_the_current_spec() {
        let ok = promoted(&staged_object(Some(condition("True", 3))), "default", false).unwrap();
        assert_eq!(
            ok,
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "web-egress", "namespace": "shop", "labels": {"team": "shop"},
                             "annotations": {PROMOTED_FROM_ANNOTATION: "StagedPolicy/web-egress"}},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
            })
        );
        assert_eq!(
            promoted(&staged_object(None), "default", false),
            Err(PromoteError::NoStatus("shop/web-egress".to_owned()))
        );
        let not_ready = promoted(&staged_object(Some(condition("False", 3))), "default", false);
        assert!(matches!(&not_ready, Err(PromoteError::NotReady { message, .. }) if message.contains("would deny 3")));
        let stale = promoted(&staged_object(Some(condition("True", 2))), "default", false);
        assert!(matches!(&stale, Err(PromoteError::NotReady { message, .. }) if message.contains("earlier spec")));
        assert!(promoted(&staged_object(Some(condition("False", 2))), "default", true).is_ok());
        assert!(promoted(&staged_object(None), "default", true).is_ok());
    }

    #[test]
    fn promotion_refuses_what_is_not_a_staged_policy() {
        let mut np = staged_object(None);
        np["kind"] = json!("NetworkPolicy");
        assert_eq!(promoted(&np, "default", true), Err(PromoteError::NotStaged));
        let mut no_spec = staged_object(None);
        no_spec["spec"] = json!({"networkPolicy": "podSelector: {}"});
        assert_eq!(promoted(&no_spec, "default", true), Err(PromoteError::NoSpec("shop/web-egress".to_owned())));
        let mut no_name = staged_object(None);
        no_name["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(promoted(&no_name, "default", true), Err(PromoteError::NoName));
        let mut no_ns = staged_object(None);
        no_ns["metadata"].as_object_mut().unwrap().remove("namespace");
        let p = promoted(&no_ns, "team-a", true).unwrap();
        assert_eq!(p["metadata"]["namespace"], "team-a");
    }
}
