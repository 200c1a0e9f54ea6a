//! Otterize `ClientIntents` interop: the `internet` targets of `k8s.otterize.com` v1alpha3
//! (`spec.service` + `spec.calls[].internet`) and v2 (`spec.workload` + `spec.targets[].internet`)
//! read as if they were EgressIntents, so `portcullis resolve` and `lint` understand them and
//! migrating is one command.
//!
//! Mapping:
//! - the client workload (`service.name` / `workload.name`, optional `kind`) must be in the
//!   input: its pod template labels become `podSelector.matchLabels` (every pod of the
//!   workload carries all of them, and pods of other workloads rarely do);
//! - `domains` become `fqdn` targets; a leading `*.` becomes a one-label `fqdnPattern` (the
//!   narrower reading; write `**.` in an EgressIntent for more);
//! - `ips` (addresses or CIDRs) become fixed `ipBlock`s;
//! - `ports` (numbers) apply to every domain and address of the target, over TCP; none means
//!   every port.
//!
//! ClientIntents without internet targets are about in-cluster calls and are ignored.

use std::collections::BTreeSet;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::intents::{CompiledIntent, IntentMeta, StaticBlock, compile_spec};
use super::{EgressIntentSpec, EgressTarget, IntentPort};
use crate::model::{Inventory, ObjectId, Protocol};

/// The API group of Otterize intents.
pub const GROUP: &str = "k8s.otterize.com";

/// An object of another tool read as an intent (a ClientIntents object with internet targets,
/// or an annotated Istio Gateway: [`super::istio`]), converted (or why it could not be).
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub object: ObjectId,
    pub meta: IntentMeta,
    /// The equivalent EgressIntent spec and fixed blocks, compiled.
    pub intent: Result<CompiledIntent, Problem>,
}

/// Why an object could not be converted, at a pointer relative to the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

fn problem(pointer: &str, message: String) -> Problem {
    Problem { pointer: pointer.to_owned(), message }
}

/// Whether an object is an Otterize ClientIntents.
pub fn is_client_intents(api_version: &str, kind: &str) -> bool {
    kind == "ClientIntents" && api_version.split_once('/').is_some_and(|(g, _)| g == GROUP)
}

/// Converts every ClientIntents object in the inventory that has internet targets.
pub fn convert_all(inventory: &Inventory) -> Vec<Converted> {
    let mut out = Vec::new();
    for (i, object) in inventory.objects.iter().enumerate() {
        if !is_client_intents(&object.id.api_version, &object.id.kind) {
            continue;
        }
        let Some(namespace) = object.id.namespace.clone() else { continue };
        let v2 = !object.id.api_version.ends_with("/v1alpha3");
        let (list_key, client_key) = if v2 { ("targets", "workload") } else { ("calls", "service") };
        let targets = object.value.pointer(&format!("/spec/{list_key}")).and_then(Value::as_array);
        let internet: Vec<(usize, &Value)> =
            targets.into_iter().flatten().enumerate().filter_map(|(i, t)| t.get("internet").map(|v| (i, v))).collect();
        if internet.is_empty() {
            continue;
        }
        let meta = IntentMeta { kind: "ClientIntents", ..IntentMeta::new(&namespace, &object.id.name) };
        let intent = convert(inventory, &object.value, &meta, client_key, list_key, &internet);
        out.push(Converted { object: ObjectId(i), meta, intent });
    }
    out
}

fn convert(
    inventory: &Inventory,
    value: &Value,
    meta: &IntentMeta,
    client_key: &str,
    list_key: &str,
    internet: &[(usize, &Value)],
) -> Result<CompiledIntent, Problem> {
    let client_at = format!("/spec/{client_key}");
    let client = value.pointer(&client_at);
    let Some(name) = client.and_then(|c| c.get("name")).and_then(Value::as_str) else {
        return Err(problem("/spec", format!("ClientIntents {} names no client ({client_key}.name)", meta.name)));
    };
    let kind = client.and_then(|c| c.get("kind")).and_then(Value::as_str);
    let selector = pod_selector(inventory, &meta.namespace, name, kind)
        .map_err(|m| problem(&format!("{client_at}/name"), format!("ClientIntents {}: {m}", meta.name)))?;
    let mut egress = Vec::new();
    let mut statics = Vec::new();
    for (i, target) in internet {
        let at = format!("/spec/{list_key}/{i}/internet");
        let ports = ports(target.get("ports"), &at)?;
        for domain in strings(target.get("domains"), &format!("{at}/domains"))? {
            let (fqdn, fqdn_pattern) = if domain.starts_with("*.") {
                (None, Some(domain.to_owned()))
            } else {
                (Some(domain.to_owned()), None)
            };
            egress.push(EgressTarget {
                fqdn,
                fqdn_pattern,
                ports: ports
                    .iter()
                    .map(|p| IntentPort { port: i64::from(*p), protocol: Some("TCP".to_owned()) })
                    .collect(),
            });
        }
        for (n, ip) in strings(target.get("ips"), &format!("{at}/ips"))?.into_iter().enumerate() {
            let net = crate::semantics::ip_block::parse_cidr(ip)
                .or_else(|e| ip.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| e))
                .map_err(|e| problem(&format!("{at}/ips/{n}"), format!("ClientIntents {}: {e}", meta.name)))?;
            statics.push(StaticBlock { net, ports: ports.iter().map(|p| (*p, Protocol::Tcp)).collect() });
        }
    }
    let spec = EgressIntentSpec { pod_selector: Some(selector), egress };
    let mut compiled = compile_spec(meta.clone(), &spec, statics.is_empty()).map_err(|p| first(p, &meta.name))?;
    compiled.statics = statics;
    Ok(compiled)
}

/// The first problem of the converted spec; its pointer refers to the EgressIntent form, so
/// it is reported at the ClientIntents' spec.
fn first(problems: Vec<super::intents::SpecProblem>, name: &str) -> Problem {
    match problems.into_iter().next() {
        Some(p) => Problem { pointer: "/spec".to_owned(), message: p.message.replacen("intent ", "ClientIntents ", 1) },
        None => problem("/spec", format!("ClientIntents {name} is invalid")),
    }
}

fn strings<'v>(value: Option<&'v Value>, at: &str) -> Result<Vec<&'v str>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().ok_or_else(|| problem(&format!("{at}/{i}"), "expected a string".to_owned())))
            .collect(),
        Some(_) => Err(problem(at, "expected a list of strings".to_owned())),
    }
}

fn ports(value: Option<&Value>, at: &str) -> Result<Vec<u16>, Problem> {
    let mut out = BTreeSet::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let n = v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| *n >= 1);
                let n = n.ok_or_else(|| problem(&format!("{at}/ports/{i}"), format!("port {v} is outside 1-65535")))?;
                out.insert(n);
            }
        }
        Some(_) => return Err(problem(&format!("{at}/ports"), "expected a list of port numbers".to_owned())),
    }
    Ok(out.into_iter().collect())
}

/// The pods of workload `name` (of `kind`, if given) in `namespace`, as a selector.
fn pod_selector(
    inventory: &Inventory,
    namespace: &str,
    name: &str,
    kind: Option<&str>,
) -> Result<LabelSelector, String> {
    let found: Vec<_> = inventory
        .workloads_in(namespace)
        .filter(|(_, w)| w.name == name)
        .filter(|(_, w)| kind.is_none_or(|k| inventory.object(w.object).id.kind.eq_ignore_ascii_case(k)))
        .collect();
    let (_, workload) = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "workload {name:?} is not in the input; add its manifest (or pass it with --context) so its pods can be selected"
            ));
        }
        _ => return Err(format!("several workloads are named {name:?}; set kind")),
    };
    if workload.labels.is_empty() {
        return Err(format!("workload {name:?} has no pod labels to select its pods by"));
    }
    Ok(LabelSelector { match_labels: Some(workload.labels.clone()), ..LabelSelector::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    fn convert_text(text: &str) -> Vec<Converted> {
        let mut project = Project::new("default");
        project.add_text("input.yaml", text.to_owned(), true);
        convert_all(&project.inventory)
    }

    #[test]
    fn the_workload_pod_labels_become_the_pod_selector() {
        let converted = convert_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend, namespace: t}\nspec:\n  selector:\n    matchLabels: {app: backend}\n  template:\n    metadata:\n      labels: {app: backend, tier: api}\n---\napiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: backend, namespace: t}\nspec:\n  workload: {name: backend}\n  targets:\n  - internet: {domains: [api.example.com]}\n",
        );
        let intent = converted[0].intent.as_ref().unwrap();
        let labels = [("app".to_owned(), "backend".to_owned()), ("tier".to_owned(), "api".to_owned())];
        assert_eq!(intent.selector.match_labels, Some(labels.into()));
    }
}
