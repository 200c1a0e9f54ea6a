//! The hosts Istio routes through an egress gateway, read as an intent for the gateway's pods,
//! as Otterize ClientIntents are: `portcullis resolve`, `lint` and the dev-mode controller then
//! keep the gateway's NetworkPolicy in step with exactly the hosts the mesh sends through it,
//! so the two layers cannot drift.
//!
//! Opt-in, per Gateway: the annotation `portcullis.dev/egress-from-routes: "true"` on an Istio
//! `Gateway`. A ServiceEntry or a route alone never widens anyone's egress.
//!
//! Mapping:
//! - the pods: the Gateway's `selector` as `podSelector.matchLabels`, in each namespace its
//!   proxy pods run in (found in the input, else the namespace of the Service the sidecars'
//!   routes send to);
//! - the targets: each route of a VirtualService bound to the Gateway whose destination is an
//!   external name, on the destination's port (else the route's match port), over TCP
//!   ([`crate::semantics::mesh::Mesh::gateway_routes`]).

use super::intents::{IntentMeta, compile_spec};
use super::otterize::{Converted, Problem};
use super::{EgressIntentSpec, EgressTarget, IntentPort};
use crate::model::Inventory;
use crate::model::istio::MeshSpec;
use crate::semantics::mesh::Mesh;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The annotation that asks for a Gateway's egress to follow the mesh's routes.
pub const ANNOTATION: &str = "portcullis.dev/egress-from-routes";

/// The kind converted intents are reported as.
pub const KIND: &str = "Gateway";

/// Converts every annotated Gateway in the inventory: one intent per namespace its pods run in.
pub fn convert_all(inventory: &Inventory) -> Vec<Converted> {
    let Some(mesh) = Mesh::new(inventory) else { return Vec::new() };
    let mut out = Vec::new();
    for gateway in &inventory.mesh_objects {
        let MeshSpec::Gateway(spec) = &gateway.spec else { continue };
        let object = inventory.object(gateway.object);
        let annotation = object.value.pointer(&format!("/metadata/annotations/{}", ANNOTATION.replace('/', "~1")));
        if annotation.and_then(serde_json::Value::as_str) != Some("true") {
            continue;
        }
        let refuse = |pointer: &str, message: String| {
            let meta = IntentMeta { kind: KIND, ..IntentMeta::new(&gateway.namespace, &gateway.name) };
            Converted { object: gateway.object, meta, intent: Err(Problem { pointer: pointer.to_owned(), message }) }
        };
        if spec.selector.is_empty() {
            out.push(refuse(
                "/spec",
                format!("Gateway {} has no selector: no pods to give the routes' hosts", gateway.name),
            ));
            continue;
        }
        let targets = mesh.gateway_routes(gateway);
        if targets.is_empty() {
            out.push(refuse(
                "/metadata/annotations",
                format!(
                    "Gateway {}: no VirtualService bound to it routes to an external host on a known port, so there is nothing to allow",
                    gateway.name
                ),
            ));
            continue;
        }
        let namespaces = mesh.gateway_namespaces(gateway);
        if namespaces.is_empty() {
            out.push(refuse(
                "/spec/selector",
                format!(
                    "Gateway {}: neither its pods nor the Service routed to it are in the input, so their namespace is not known; add them (or pass them with --context)",
                    gateway.name
                ),
            ));
            continue;
        }
        let mut egress: Vec<EgressTarget> = Vec::new();
        for t in &targets {
            let port = IntentPort { port: i64::from(t.port), protocol: Some("TCP".to_owned()) };
            match egress.iter_mut().find(|e| e.fqdn.as_deref() == Some(t.host.as_str())) {
                Some(e) => e.ports.push(port),
                None => egress.push(EgressTarget { fqdn: Some(t.host.clone()), fqdn_pattern: None, ports: vec![port] }),
            }
        }
        let selector = LabelSelector { match_labels: Some(spec.selector.clone()), ..LabelSelector::default() };
        let intent_spec = EgressIntentSpec { pod_selector: Some(selector), egress };
        for namespace in namespaces {
            let meta = IntentMeta { kind: KIND, ..IntentMeta::new(&namespace, &gateway.name) };
            let intent = compile_spec(meta.clone(), &intent_spec, true).map_err(|problems| {
                let message = problems.into_iter().next().map_or_else(
                    || format!("Gateway {} is invalid", gateway.name),
                    |p| p.message.replacen("intent ", "Gateway ", 1),
                );
                Problem { pointer: "/spec".to_owned(), message }
            });
            out.push(Converted { object: gateway.object, meta, intent });
        }
    }
    out
}
