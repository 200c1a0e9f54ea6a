//! `portcullis trace`: ALLOWED or DENIED, with the policies and rules that decided it.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::{EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::egress::parse_fqdn;
use crate::model::calico_policy::CalicoPolicyId;
use crate::model::cilium_policy::CiliumRuleId;
use crate::model::{PolicyId, WorkloadId};
use crate::project::Project;
use crate::semantics::calico::{CalicoRuleRef, TierOutcome, TierVerdict};
use crate::semantics::cilium::CiliumRuleRef;
use crate::semantics::cluster::TierDecision;
use crate::semantics::evaluator::LayerUndecided;
use crate::semantics::mesh::{Mesh, Route, denial_may_not_hold};
use crate::semantics::{Decided, Direction, DirectionVerdict, Endpoint, Evaluator, PolicyVerdict, Traffic};

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Manifests holding the policies and workloads
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Source: NAMESPACE/WORKLOAD (WORKLOAD is kind/name or a bare name) or an IP address
    #[arg(long)]
    pub from: String,
    /// Destination: NAMESPACE/WORKLOAD, an IP address, or a DNS name (an external address)
    #[arg(long)]
    pub to: String,
    /// Destination port, optionally with protocol: 443, 53/UDP
    #[arg(long)]
    pub port: String,
    /// Output format
    #[arg(long, short = 'f', default_value = "human", value_parser = ["human", "json"])]
    pub format: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// A resolved endpoint argument.
enum Target {
    Workload(WorkloadId),
    Address(IpAddr),
    Name(String),
}

pub fn run(args: &TraceArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    let traffic = Traffic::parse(&args.port).map_err(|e| anyhow::anyhow!("--port {e}"))?;
    let from = resolve(&project, &args.from, false)?;
    let to = resolve(&project, &args.to, true)?;
    // A pod with an Istio sidecar reaching an external name: the mesh's route first.
    let mesh = Mesh::new(&project.inventory);
    if let (Some(mesh), Target::Workload(w), Target::Name(name)) = (&mesh, &from, &to)
        && traffic.protocol == crate::model::Protocol::Tcp
        && let Ok(port) = u32::try_from(traffic.port)
    {
        let route = mesh.route(*w, name, port);
        if !matches!(route, Route::NotMeshed | Route::Direct { via: None, .. }) {
            return mesh_trace(args, io, &project, *w, name, traffic, route);
        }
    }
    let verdict = judge(&project, &from, &to, traffic);
    let describe = |t: &Target| describe(&project, t);
    let verdict_word = if verdict.allowed { "allowed" } else { "denied" };
    if args.format == "json" {
        let doc = json!({
            "verdict": verdict_word,
            "undecided": verdict.undecided().map(|u| json!({"rule": undecided_text(&project, &u), "why": u.why()})),
            "from": describe(&from),
            "to": describe(&to),
            "port": traffic.port,
            "protocol": traffic.protocol,
            "egress": rule_json(&project, &verdict.egress, "the source is not a pod NetworkPolicy applies to"),
            "ingress": rule_json(&project, &verdict.ingress, "the destination is not a pod NetworkPolicy applies to"),
        });
        writeln!(io.stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            io.stdout,
            "{}: {} -> {} on {}/{}",
            verdict_word.to_uppercase(),
            describe(&from),
            describe(&to),
            traffic.port,
            traffic.protocol
        )?;
        write_directions(io.stdout, &project, &verdict, &describe(&from), &describe(&to))?;
    }
    Ok(if verdict.allowed { EXIT_OK } else { EXIT_FINDINGS })
}

fn judge(project: &Project, from: &Target, to: &Target, traffic: Traffic) -> PolicyVerdict {
    let eval = Evaluator::new(&project.inventory);
    fn endpoint<'t>(eval: &Evaluator<'t>, t: &'t Target) -> Endpoint<'t> {
        match t {
            Target::Workload(w) => Endpoint::Pod(eval.pod(*w)),
            Target::Address(ip) => Endpoint::Address(*ip),
            Target::Name(name) => Endpoint::Name(name),
        }
    }
    eval.evaluate(&endpoint(&eval, from), &endpoint(&eval, to), traffic)
}

fn describe(project: &Project, t: &Target) -> String {
    match t {
        Target::Workload(w) => crate::rules::workload_label_of(&project.inventory, *w),
        Target::Address(ip) => ip.to_string(),
        Target::Name(n) => format!("{n} (external, address unknown)"),
    }
}

/// The egress and ingress lines of one verdict, each indented by two spaces (more for the
/// rules under them), and the undecided rule that could turn it.
fn write_directions(
    out: &mut dyn std::io::Write,
    project: &Project,
    verdict: &PolicyVerdict,
    from: &str,
    to: &str,
) -> std::io::Result<()> {
    for (label, dv, who) in [("egress", &verdict.egress, from), ("ingress", &verdict.ingress, to)] {
        let Some(d) = dv else {
            writeln!(out, "  {label}: not applicable ({who} is not a pod NetworkPolicy applies to)")?;
            continue;
        };
        let state = if d.allowed() { "allowed" } else { "denied" };
        if let Some(t) = d.admin.filter(|t| t.action == crate::model::cluster_policy::Action::Pass) {
            writeln!(out, "  {label} of {who}: the Admin tier passes it on: {}", tier_text(project, t))?;
        }
        match d.decided() {
            Decided::Admin(t) => {
                writeln!(out, "  {label} of {who}: {state} by the Admin tier: {}", tier_text(project, t))?;
            }
            Decided::Baseline(t) => writeln!(
                out,
                "  {label} of {who}: not isolated by NetworkPolicy; {state} by the Baseline tier: {}",
                tier_text(project, t)
            )?,
            Decided::Default if !d.calico.tiers.is_empty() => {
                writeln!(
                    out,
                    "  {label} of {who}: every Calico tier that applies passes it on; nothing else decides, allowed"
                )?;
            }
            Decided::Default => {
                writeln!(out, "  {label} of {who}: not isolated (no policy selects it for {label}), allowed")?;
                if let Some(t) = d.baseline {
                    writeln!(out, "    the Baseline tier passes it on: {}", tier_text(project, t))?;
                }
            }
            Decided::Calico(i) => {
                let tier = &d.calico.tiers[i];
                writeln!(
                    out,
                    "  {label} of {who}: {state} by Calico tier {}: {}",
                    tier.tier,
                    outcome_text(project, tier)
                )?;
            }
            Decided::CiliumDeny(r) => {
                writeln!(
                    out,
                    "  {label} of {who}: denied by a Cilium deny rule (deny wins over every allow): {}",
                    cilium_text(project, r.rule, Some(r))
                )?;
            }
            Decided::Isolation => {
                writeln!(out, "  {label} of {who}: isolated, {state}")?;
                for p in &d.isolated_by {
                    writeln!(out, "    isolated by {}", Decider::new(project, *p, None).text())?;
                }
                for r in &d.cilium.isolated_by {
                    writeln!(out, "    isolated by {}", cilium_text(project, *r, None))?;
                }
                for r in &d.allowed_by {
                    writeln!(
                        out,
                        "    allowed by {}",
                        Decider::new(project, r.policy, Some((r.direction, r.index))).text()
                    )?;
                }
                for r in &d.cilium.allowed_by {
                    writeln!(out, "    allowed by {}", cilium_text(project, r.rule, Some(*r)))?;
                }
                if !d.allowed() {
                    writeln!(out, "    no rule of these policies allows this traffic")?;
                }
            }
        }
        for t in d.calico.tiers.iter().filter(|t| t.outcome.verdict().is_none()) {
            writeln!(out, "    Calico tier {} passes it on: {}", t.tier, outcome_text(project, t))?;
        }
        for u in &d.calico.undecided {
            writeln!(
                out,
                "    undecided offline: {} may match ({})",
                calico_text(project, u.rule.policy, Some(u.rule)),
                u.why
            )?;
        }
        for u in &d.cilium.undecided {
            writeln!(
                out,
                "    undecided offline: {} may match ({})",
                cilium_text(project, u.rule.rule, Some(u.rule)),
                u.why
            )?;
        }
    }
    if let Some(u) = verdict.undecided() {
        writeln!(
            out,
            "  the verdict may be the opposite: {} cannot be decided offline ({})",
            undecided_text(project, &u),
            u.why()
        )?;
    }
    Ok(())
}

fn rule_json(project: &Project, dv: &Option<DirectionVerdict>, applies_note: &str) -> Value {
    match dv {
        None => {
            json!({"isolated": false, "applies": false, "note": applies_note, "isolatedBy": [], "allowedBy": []})
        }
        Some(d) => json!({
            "allowed": d.allowed(),
            "decidedBy": d.decided().key(),
            "isolated": d.is_isolated(),
            "applies": true,
            "isolatedBy": d.isolated_by.iter().map(|p| Decider::new(project, *p, None).json()).collect::<Vec<_>>(),
            "allowedBy": d.allowed_by.iter().map(|r| Decider::new(project, r.policy, Some((r.direction, r.index))).json()).collect::<Vec<_>>(),
            "admin": d.admin.map(|t| tier_json(project, t)),
            "baseline": d.baseline.map(|t| tier_json(project, t)),
            "cilium": {
                "isolatedBy": d.cilium.isolated_by.iter().map(|r| cilium_json(project, *r, None)).collect::<Vec<_>>(),
                "allowedBy": d.cilium.allowed_by.iter().map(|r| cilium_json(project, r.rule, Some(*r))).collect::<Vec<_>>(),
                "deniedBy": d.cilium.denied_by.map(|r| cilium_json(project, r.rule, Some(r))),
                "undecided": d.cilium.undecided.iter().map(|u| {
                    let mut v = cilium_json(project, u.rule.rule, Some(u.rule));
                    v["why"] = json!(u.why);
                    v
                }).collect::<Vec<_>>(),
            },
            "calico": {
                "tiers": d.calico.tiers.iter().map(|t| calico_tier_json(project, t)).collect::<Vec<_>>(),
                "undecided": d.calico.undecided.iter().map(|u| {
                    let mut v = calico_json(project, u.rule.policy, Some(u.rule));
                    v["action"] = json!(u.action.as_str());
                    v["why"] = json!(u.why);
                    v
                }).collect::<Vec<_>>(),
            },
        }),
    }
}

/// One connection of a traced route.
struct Hop {
    from: Target,
    to: Target,
    traffic: Traffic,
}

/// `trace` for a pod with an Istio sidecar reaching an external name that the mesh routes
/// elsewhere than straight out: through an egress gateway (two hops, each judged by the L4
/// layers), to another port (TLS origination), or nowhere (REGISTRY_ONLY refuses it). The
/// route is allowed when every hop is; what the pod reaches by skipping its sidecar is shown
/// beside it, as PC025 reports it.
fn mesh_trace(
    args: &TraceArgs,
    io: &mut Io<'_>,
    project: &Project,
    client: WorkloadId,
    name: &str,
    traffic: Traffic,
    route: Route<'_>,
) -> anyhow::Result<u8> {
    let place = |object, pointer: &str| {
        let (file, line) = project.place(object, pointer);
        format!("{file}:{line}")
    };
    let host = Target::Name(name.to_owned());
    let (summary, route_json, hops): (String, Value, Vec<Hop>) = match &route {
        Route::ViaGateway(hop) => {
            let vs = hop.virtual_service;
            let summary = format!(
                "the pod's Istio sidecar sends it through the egress gateway: {} ({}) routes {name}:{} to {}:{}",
                vs.describe(),
                place(vs.object, "/spec/hosts"),
                traffic.port,
                hop.service_host,
                hop.service_port
            );
            let json = json!({
                "route": "gateway",
                "virtualService": vs.describe(),
                "service": format!("{}:{}", hop.service_host, hop.service_port),
                "gatewayPods": hop.pods.iter().map(|p| crate::rules::workload_label_of(&project.inventory, *p)).collect::<Vec<_>>(),
            });
            let mut hops = Vec::new();
            if let Some(&pod) = hop.pods.first() {
                let port = hop.pod_port(&project.inventory, Some(pod));
                if let Some(port) = port {
                    hops.push(Hop {
                        from: Target::Workload(client),
                        to: Target::Workload(pod),
                        traffic: Traffic { port, protocol: traffic.protocol },
                    });
                }
                if let Ok(upstream) = i32::try_from(hop.upstream_port) {
                    hops.push(Hop {
                        from: Target::Workload(pod),
                        to: Target::Name(name.to_owned()),
                        traffic: Traffic { port: upstream, protocol: traffic.protocol },
                    });
                }
            }
            (summary, json, hops)
        }
        Route::Direct { port, via } => {
            let by = via.map(|o| format!("{} ({})", o.describe(), place(o.object, "/spec"))).unwrap_or_default();
            let summary = format!("the pod's Istio sidecar sends it to {name} on port {port}: {by} sends it there");
            let json = json!({"route": "direct", "via": via.map(|o| o.describe()), "port": port});
            let port = i32::try_from(*port).unwrap_or(traffic.port);
            let hops = vec![Hop {
                from: Target::Workload(client),
                to: Target::Name(name.to_owned()),
                traffic: Traffic { port, protocol: traffic.protocol },
            }];
            (summary, json, hops)
        }
        Route::Refused { set_by } => (
            format!(
                "refused by the pod's Istio sidecar: REGISTRY_ONLY (set by {set_by}) and no ServiceEntry visible to the pod admits {name} on port {}",
                traffic.port
            ),
            json!({"route": "refused", "setBy": set_by}),
            Vec::new(),
        ),
        Route::NotMeshed => (String::new(), json!({"route": "not-meshed"}), Vec::new()),
    };
    let judged: Vec<(&Hop, PolicyVerdict)> =
        hops.iter().map(|h| (h, judge(project, &h.from, &h.to, h.traffic))).collect();
    // A route through a gateway whose pods are not in the input cannot be judged: not allowed.
    let complete = !matches!(route, Route::ViaGateway(_)) || judged.len() == 2;
    let allowed = !judged.is_empty() && complete && judged.iter().all(|(_, v)| v.allowed);
    let bypass = judge(project, &Target::Workload(client), &host, traffic);
    let from_text = describe(project, &Target::Workload(client));
    let to_text = describe(project, &host);
    let word = if allowed { "allowed" } else { "denied" };
    if args.format == "json" {
        let hop_json = |(h, v): &(&Hop, PolicyVerdict)| {
            json!({
                "from": describe(project, &h.from),
                "to": describe(project, &h.to),
                "port": h.traffic.port,
                "protocol": h.traffic.protocol,
                "verdict": if v.allowed { "allowed" } else { "denied" },
                "egress": rule_json(project, &v.egress, "the source is not a pod NetworkPolicy applies to"),
                "ingress": rule_json(project, &v.ingress, "the destination is not a pod NetworkPolicy applies to"),
            })
        };
        let doc = json!({
            "verdict": word,
            "from": from_text,
            "to": to_text,
            "port": traffic.port,
            "protocol": traffic.protocol,
            "mesh": route_json,
            "hops": judged.iter().map(hop_json).collect::<Vec<_>>(),
            "bypass": {
                "verdict": if bypass.allowed { "allowed" } else { "denied" },
                "egress": rule_json(project, &bypass.egress, "the source is not a pod NetworkPolicy applies to"),
            },
        });
        writeln!(io.stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            io.stdout,
            "{}: {from_text} -> {to_text} on {}/{}",
            word.to_uppercase(),
            traffic.port,
            traffic.protocol
        )?;
        writeln!(io.stdout, "  mesh: {summary}")?;
        if !complete {
            writeln!(io.stdout, "  the gateway's pods are not in the input: the hops through it cannot be judged")?;
        }
        for (i, (h, v)) in judged.iter().enumerate() {
            let (f, t) = (describe(project, &h.from), describe(project, &h.to));
            let state = if v.allowed { "allowed" } else { "denied" };
            writeln!(io.stdout, "  hop {}: {f} -> {t} on {}/{}: {state}", i + 1, h.traffic.port, h.traffic.protocol)?;
            let mut lines = Vec::new();
            write_directions(&mut lines, project, v, &f, &t)?;
            for line in String::from_utf8_lossy(&lines).lines() {
                writeln!(io.stdout, "  {line}")?;
            }
            if let (Target::Name(host), Some(egress)) = (&h.to, &v.egress)
                && !v.allowed
                && u32::try_from(h.traffic.port).is_ok_and(|p| denial_may_not_hold(&project.inventory, egress, p))
            {
                writeln!(
                    io.stdout,
                    "    the verdict may be the opposite: an ipBlock of these policies may hold the addresses of {host}, which are not known offline"
                )?;
            }
        }
        let state = if bypass.allowed { "allowed" } else { "denied" };
        writeln!(
            io.stdout,
            "  skipping the sidecar, {from_text} -> {name} on {}/{} directly: {state}{}",
            traffic.port,
            traffic.protocol,
            if bypass.allowed && matches!(route, Route::ViaGateway(_)) { " (PC025 gateway-bypass)" } else { "" }
        )?;
    }
    Ok(if allowed { EXIT_OK } else { EXIT_FINDINGS })
}

fn resolve(project: &Project, raw: &str, allow_name: bool) -> anyhow::Result<Target> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Target::Address(ip));
    }
    if raw.contains('/') {
        return project.find_workload(raw).map(Target::Workload).map_err(anyhow::Error::msg);
    }
    if allow_name {
        return Ok(Target::Name(parse_fqdn(raw).map_err(|e| anyhow::anyhow!("--to: {e}"))?));
    }
    anyhow::bail!("{raw:?}: expected NAMESPACE/WORKLOAD or an IP address")
}

/// Where a ClusterNetworkPolicy rule is written: file and line.
fn tier_place(project: &Project, t: TierDecision) -> (String, usize) {
    let policy = project.inventory.cluster_policy(t.policy);
    let pointer = format!("/spec/{}/{}", t.direction.key(), t.rule);
    project.place(policy.object, &pointer)
}

fn tier_text(project: &Project, t: TierDecision) -> String {
    let policy = project.inventory.cluster_policy(t.policy);
    let (file, line) = tier_place(project, t);
    // The line already names the tier; the policy is named by kind, name and priority.
    let priority = match policy.kind {
        crate::model::ClusterPolicyKind::BaselineAdminNetworkPolicy => String::new(),
        _ => format!(" (priority {})", policy.spec.priority),
    };
    format!(
        "{} {} {}{priority} {}[{}] ({file}:{line})",
        policy.kind.action_name(t.action),
        policy.kind.as_str(),
        policy.name,
        t.direction.key(),
        t.rule
    )
}

fn tier_json(project: &Project, t: TierDecision) -> Value {
    let policy = project.inventory.cluster_policy(t.policy);
    let (file, line) = tier_place(project, t);
    json!({
        "tier": t.tier.as_str(),
        "kind": policy.kind.as_str(),
        "name": policy.name,
        "priority": policy.spec.priority,
        "rule": t.rule,
        "action": policy.kind.action_name(t.action),
        "file": file,
        "line": line,
    })
}

/// Where a Cilium rule (or the policy rule `at`) is written: file and line.
fn cilium_place(project: &Project, id: CiliumRuleId, at: Option<CiliumRuleRef>) -> (String, usize) {
    let rule = project.inventory.cilium_rule(id);
    let pointer = at.map_or_else(|| rule.pointer.clone(), |r| r.pointer(&project.inventory));
    project.place(rule.object, &pointer)
}

fn cilium_text(project: &Project, id: CiliumRuleId, at: Option<CiliumRuleRef>) -> String {
    let rule = project.inventory.cilium_rule(id);
    let (file, line) = cilium_place(project, id, at);
    match at {
        None => format!("{} ({file}:{line})", rule.describe()),
        Some(r) => format!("{} {}[{}] ({file}:{line})", rule.describe(), r.key(), r.index),
    }
}

fn cilium_json(project: &Project, id: CiliumRuleId, at: Option<CiliumRuleRef>) -> Value {
    let rule = project.inventory.cilium_rule(id);
    let (file, line) = cilium_place(project, id, at);
    let mut v = json!({"kind": rule.kind(), "namespace": rule.namespace, "name": rule.name, "spec": rule.pointer, "file": file, "line": line});
    if let Some(r) = at {
        v["list"] = json!(r.key());
        v["rule"] = json!(r.index);
    }
    v
}

fn undecided_text(project: &Project, u: &LayerUndecided) -> String {
    match u {
        LayerUndecided::Cilium(u) => cilium_text(project, u.rule.rule, Some(u.rule)),
        LayerUndecided::Calico(u) => calico_text(project, u.rule.policy, Some(u.rule)),
    }
}

/// Where a Calico policy (or its rule `at`) is written: file and line.
fn calico_place(project: &Project, id: CalicoPolicyId, at: Option<CalicoRuleRef>) -> (String, usize) {
    let policy = project.inventory.calico_policy(id);
    let pointer = at.map_or_else(|| "/metadata/name".to_owned(), |r| r.pointer());
    project.place(policy.object, &pointer)
}

fn calico_text(project: &Project, id: CalicoPolicyId, at: Option<CalicoRuleRef>) -> String {
    let policy = project.inventory.calico_policy(id);
    let (file, line) = calico_place(project, id, at);
    match at {
        None => format!("{} ({file}:{line})", policy.describe()),
        Some(r) => {
            let action = policy.rules(r.direction == Direction::Egress).get(r.index).map_or("", |x| x.action.as_str());
            format!("{action} {} {}[{}] ({file}:{line})", policy.describe(), r.direction.key(), r.index)
        }
    }
}

fn calico_json(project: &Project, id: CalicoPolicyId, at: Option<CalicoRuleRef>) -> Value {
    let policy = project.inventory.calico_policy(id);
    let (file, line) = calico_place(project, id, at);
    let mut v = json!({
        "kind": policy.kind.as_str(),
        "namespace": policy.namespace,
        "name": policy.name,
        "tier": policy.tier,
        "order": policy.order,
        "file": file,
        "line": line,
    });
    if let Some(r) = at {
        v["rule"] = json!(r.index);
    }
    v
}

/// What a Calico tier did, in words.
fn outcome_text(project: &Project, tier: &TierVerdict) -> String {
    match tier.outcome {
        TierOutcome::Rule(r, _) => calico_text(project, r.policy, Some(r)),
        TierOutcome::NetworkPolicy(r) => {
            format!("allowed by {}", Decider::new(project, r.policy, Some((r.direction, r.index))).text())
        }
        TierOutcome::EndOfTier { policy, pass } => format!(
            "no rule matched; the tier's default action {} applies ({} selects the pod)",
            if pass { "Pass" } else { "Deny" },
            calico_text(project, policy, None)
        ),
    }
}

fn calico_tier_json(project: &Project, tier: &TierVerdict) -> Value {
    let (action, by) = match tier.outcome {
        TierOutcome::Rule(r, action) => (action.as_str(), calico_json(project, r.policy, Some(r))),
        TierOutcome::NetworkPolicy(r) => {
            ("Allow", Decider::new(project, r.policy, Some((r.direction, r.index))).json())
        }
        TierOutcome::EndOfTier { policy, pass } => {
            let mut v = calico_json(project, policy, None);
            v["endOfTier"] = json!(true);
            (if pass { "Pass" } else { "Deny" }, v)
        }
    };
    json!({"tier": tier.tier, "order": tier.order, "action": action, "by": by})
}

/// A policy (or one of its rules) that decided a direction, with where it is written.
struct Decider<'p> {
    namespace: &'p str,
    policy: &'p str,
    rule: Option<(Direction, usize)>,
    file: String,
    line: usize,
}

impl<'p> Decider<'p> {
    fn new(project: &'p Project, id: PolicyId, rule: Option<(Direction, usize)>) -> Decider<'p> {
        let policy = project.inventory.policy(id);
        let pointer = match rule {
            None => "/metadata/name".to_owned(),
            Some((d, i)) => policy.rule_pointer(d, i),
        };
        let (file, line) = project.place(policy.object, &pointer);
        // An intent's name is labelled by its entry in the intent (Policy::rule_label).
        let rule = rule.map(|(d, i)| (d, pointer.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(i)));
        Decider { namespace: &policy.namespace, policy: &policy.name, rule, file, line }
    }

    fn text(&self) -> String {
        let Decider { namespace, policy, file, line, .. } = self;
        match self.rule {
            None => format!("policy {namespace}/{policy} ({file}:{line})"),
            Some((d, i)) => format!("{namespace}/{policy} {}[{i}] ({file}:{line})", d.key()),
        }
    }

    fn json(&self) -> Value {
        let mut v = json!({"policy": self.policy, "namespace": self.namespace, "file": self.file, "line": self.line});
        if let Some((_, i)) = self.rule {
            v["rule"] = json!(i);
        }
        v
    }
}
