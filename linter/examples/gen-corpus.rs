//! Writes the benchmark corpus: N namespaces (default 1,000), each one file holding a Namespace,
//! 6 workloads and 4 NetworkPolicies (11 objects). One namespace in ten carries a classic DNS
//! mistake, so the rules have real work and real findings.
//!
//! `cargo run --release -p portcullis-linter --example gen-corpus -- DIR [NAMESPACES] [--split]
//! [--cluster-policies=N] [--cilium-policies=N] [--calico-policies=N]`
//!
//! `--split` writes one file per object instead (`DIR/ns-00042/03-deployment-worker.yaml`):
//! the shape of a GitOps repository, for `--context` runs over many small files.
//! `--cluster-policies=N` adds `cluster-policies.yaml` with N ClusterNetworkPolicies, half
//! Admin (a port Deny, a Pass of DNS to NetworkPolicy and of the team's own ingress), half
//! Baseline (a default-deny of the team's ingress and egress), each selecting one team's
//! namespaces: the findings stay those of the NetworkPolicies.
//! `--cilium-policies=N` adds N Cilium policies: per namespace (the first N, written in the
//! namespace's file), a CiliumNetworkPolicy for `api` (DNS through the proxy, a `toFQDNs` host, the
//! database, a deny of the metadata address), and one policy in fifty a
//! CiliumClusterwideNetworkPolicy for one team's namespaces (in `cilium-clusterwide-policies.yaml`). No new findings; the `api` policy
//! allows DNS, which clears `api`'s PC003 in the broken namespaces it covers (Cilium's allows add
//! to NetworkPolicy's).
//! `--calico-policies=N` adds N Calico policies the same way: per namespace a
//! `projectcalico.org/v3` NetworkPolicy for `api` in the default tier at order 500 (DNS to
//! kube-dns, HTTPS outside the private ranges, then Pass), and one in fifty a
//! GlobalNetworkPolicy in tier `platform` (order 100, in `calico-global-policies.yaml`) denying
//! one team's pods the metadata address and passing the rest on. No new findings; the `api`
//! policy allows DNS, which clears `api`'s PC003 in the broken namespaces it covers.
//! `--istio-hosts=N` adds an Istio mesh (`istio.yaml`): every namespace labelled for sidecar
//! injection, `REGISTRY_ONLY` in the `istio` ConfigMap, an egress gateway (Deployment, Service,
//! Gateway) in `istio-system`, and N external hosts, each with a ServiceEntry (in namespace
//! `i` modulo the count) and a VirtualService in `istio-system` routing it through the gateway.
//! The mesh rules then judge every workload against every host (PC025: nothing isolates the
//! workloads' egress from the hosts).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-corpus".to_owned()));
    let namespaces: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let flags: Vec<String> = args.collect();
    let split = flags.iter().any(|a| a == "--split");
    let cluster_policies: usize =
        flags.iter().find_map(|a| a.strip_prefix("--cluster-policies=")?.parse().ok()).unwrap_or(0);
    let cilium_policies: usize =
        flags.iter().find_map(|a| a.strip_prefix("--cilium-policies=")?.parse().ok()).unwrap_or(0);
    let calico_policies: usize =
        flags.iter().find_map(|a| a.strip_prefix("--calico-policies=")?.parse().ok()).unwrap_or(0);
    let istio_hosts: usize = flags.iter().find_map(|a| a.strip_prefix("--istio-hosts=")?.parse().ok()).unwrap_or(0);
    std::fs::create_dir_all(&dir)?;
    if istio_hosts > 0 {
        std::fs::write(dir.join("istio.yaml"), istio(istio_hosts, namespaces.max(1)))?;
    }
    // Each namespace's CiliumNetworkPolicy is written beside its other objects (as a
    // repository keeps them); the clusterwide ones go to one file.
    let mut namespaced_cilium = vec![Vec::new(); namespaces];
    let mut clusterwide = Vec::new();
    for i in 0..cilium_policies {
        match cilium_policy(i, namespaces.max(1)) {
            (Some(_), text) if namespaces > 0 => namespaced_cilium[i % namespaces].push(text),
            (_, text) => clusterwide.push(text),
        }
    }
    let mut calico_global = Vec::new();
    for i in 0..calico_policies {
        match calico_policy(i, namespaces.max(1)) {
            (Some(_), text) if namespaces > 0 => namespaced_cilium[i % namespaces].push(text),
            (_, text) => calico_global.push(text),
        }
    }
    if !calico_global.is_empty() {
        calico_global.insert(
            0,
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: platform}\nspec: {order: 100}\n".to_owned(),
        );
        std::fs::write(dir.join("calico-global-policies.yaml"), calico_global.join("---\n"))?;
    }
    if !clusterwide.is_empty() {
        std::fs::write(dir.join("cilium-clusterwide-policies.yaml"), clusterwide.join("---\n"))?;
    }
    if cluster_policies > 0 {
        let text: Vec<String> = (0..cluster_policies).map(cluster_policy).collect();
        std::fs::write(dir.join("cluster-policies.yaml"), text.join("---\n"))?;
    }
    for (i, cilium) in namespaced_cilium.iter().enumerate() {
        let mut text = namespace(i);
        if istio_hosts > 0 {
            text = text.replacen("  labels:\n", "  labels:\n    istio-injection: enabled\n", 1);
        }
        for policy in cilium {
            text.push_str("---\n");
            text.push_str(policy);
        }
        if !split {
            std::fs::write(dir.join(format!("ns-{i:05}.yaml")), text)?;
            continue;
        }
        let ns_dir = dir.join(format!("ns-{i:05}"));
        std::fs::create_dir_all(&ns_dir)?;
        for (n, document) in text.split("---\n").enumerate() {
            let field = |key: &str| {
                document.lines().find_map(|l| l.trim().strip_prefix(key)).unwrap_or("object").trim().to_lowercase()
            };
            let name = format!("{n:02}-{}-{}.yaml", field("kind:"), field("name:"));
            std::fs::write(ns_dir.join(name), document)?;
        }
    }
    Ok(())
}

/// The mesh of `--istio-hosts`: settings, the egress gateway, and `hosts` routed hosts.
fn istio(hosts: usize, namespaces: usize) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istio-egressgateway, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: egressgateway}}\n  template:\n    metadata: {labels: {istio: egressgateway}}\n    spec: {containers: [{name: istio-proxy, image: docker.io/istio/proxyv2:1.24.0, ports: [{containerPort: 8443}]}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: istio-egressgateway, namespace: istio-system}\nspec:\n  selector: {istio: egressgateway}\n  ports: [{name: https, port: 443, targetPort: 8443}]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egress, namespace: istio-system}\nspec:\n  selector: {istio: egressgateway}\n  servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: [\"*\"], tls: {mode: PASSTHROUGH}}]\n",
    );
    for h in 0..hosts {
        let _ = write!(
            s,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: host-{h:04}, namespace: team-{:05}}}\nspec:\n  hosts: [api{h}.example.com]\n  ports: [{{number: 443, name: tls, protocol: TLS}}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: host-{h:04}, namespace: istio-system}}\nspec:\n  hosts: [api{h}.example.com]\n  gateways: [istio-system/egress, mesh]\n  tls:\n  - match: [{{gateways: [mesh], port: 443, sniHosts: [api{h}.example.com]}}]\n    route: [{{destination: {{host: istio-egressgateway.istio-system.svc.cluster.local, port: {{number: 443}}}}}}]\n  - match: [{{gateways: [istio-system/egress], port: 443, sniHosts: [api{h}.example.com]}}]\n    route: [{{destination: {{host: api{h}.example.com, port: {{number: 443}}}}}}]\n",
            h % namespaces
        );
    }
    s
}

fn cluster_policy(i: usize) -> String {
    let team = i % 50;
    let head = format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: cnp-{i:04}}}\nspec:\n  tier: {}\n  priority: {}\n  subject:\n    namespaces: {{matchLabels: {{team: t{team}}}}}\n",
        if i.is_multiple_of(2) { "Admin" } else { "Baseline" },
        i % 1000
    );
    let body = if i.is_multiple_of(2) {
        format!(
            "  ingress:\n  - action: Pass\n    from:\n    - namespaces: {{matchLabels: {{team: t{team}}}}}\n  egress:\n  - action: Deny\n    to:\n    - networks: [192.0.2.0/24]\n    protocols:\n    - tcp: {{destinationPort: {{number: {}}}}}\n  - action: Pass\n    to:\n    - pods:\n        namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}\n        podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}\n    protocols:\n    - udp: {{destinationPort: {{number: 53}}}}\n",
            1000 + i % 60000
        )
    } else {
        "  ingress:\n  - action: Deny\n    from:\n    - namespaces: {}\n  egress:\n  - action: Deny\n    to:\n    - networks: [0.0.0.0/0, ::/0]\n".to_owned()
    };
    head + &body
}

/// The `i`th Cilium policy: (whether it is namespaced, its text). Namespaced ones belong to
/// namespace `i` (modulo the namespace count).
fn cilium_policy(i: usize, namespaces: usize) -> (Option<()>, String) {
    if i % 50 == 49 {
        let text = format!(
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: ccnp-{i:04}}}\nspec:\n  endpointSelector:\n    matchLabels: {{io.cilium.k8s.namespace.labels.team: t{}}}\n  enableDefaultDeny: {{ingress: false, egress: false}}\n  egressDeny:\n  - toCIDR: [169.254.169.254/32]\n",
            i % 50
        );
        return (None, text);
    }
    let text = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: api-egress, namespace: team-{:05}}}\nspec:\n  endpointSelector: {{matchLabels: {{app: api}}}}\n  egress:\n  - toEndpoints:\n    - matchLabels: {{\"k8s:io.kubernetes.pod.namespace\": kube-system, \"k8s:k8s-app\": kube-dns}}\n    toPorts:\n    - ports: [{{port: \"53\", protocol: ANY}}]\n      rules:\n        dns: [{{matchPattern: \"*\"}}]\n  - toFQDNs: [{{matchName: api.example.com}}]\n    toPorts:\n    - ports: [{{port: \"443\", protocol: TCP}}]\n  - toEndpoints: [{{matchLabels: {{app: db}}}}]\n    toPorts:\n    - ports: [{{port: \"5432\", protocol: TCP}}]\n  egressDeny:\n  - toCIDR: [169.254.169.254/32]\n",
        i % namespaces
    );
    (Some(()), text)
}

/// The `i`th Calico policy: (whether it is namespaced, its text), as [`cilium_policy`].
fn calico_policy(i: usize, namespaces: usize) -> (Option<()>, String) {
    if i % 50 == 49 {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: platform.metadata-{i:04}}}\nspec:\n  tier: platform\n  order: {}\n  selector: pcns.team == 't{}'\n  types: [Egress]\n  egress:\n  - action: Deny\n    destination:\n      nets: [169.254.169.254/32]\n  - action: Pass\n",
            i % 1000,
            i % 50
        );
        return (None, text);
    }
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: api-calico, namespace: team-{:05}}}\nspec:\n  order: 500\n  selector: app == 'api'\n  types: [Egress]\n  egress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      namespaceSelector: projectcalico.org/name == 'kube-system'\n      selector: k8s-app == 'kube-dns'\n      ports: [53]\n  - action: Allow\n    protocol: TCP\n    destination:\n      notNets: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]\n      ports: [443]\n  - action: Pass\n    destination:\n      selector: app == 'db'\n",
        i % namespaces
    );
    (Some(()), text)
}

fn namespace(i: usize) -> String {
    let ns = format!("team-{i:05}");
    let mut s = String::new();
    let _ = write!(s, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    team: t{}\n", i % 50);
    for (kind, name, port) in [
        ("Deployment", "frontend", 8080),
        ("Deployment", "api", 8080),
        ("Deployment", "worker", 9000),
        ("StatefulSet", "db", 5432),
        ("DaemonSet", "log-agent", 24224),
    ] {
        let extra = if kind == "StatefulSet" { "  serviceName: db\n" } else { "" };
        let _ = write!(
            s,
            "---\napiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{app: {name}}}\nspec:\n{extra}  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}, tier: backend}}\n    spec:\n      containers:\n      - name: {name}\n        image: registry.example.com/{name}:1.{i}\n        ports:\n        - {{name: http, containerPort: {port}}}\n        resources:\n          requests: {{cpu: 100m, memory: 128Mi}}\n"
        );
    }
    let _ = write!(
        s,
        "---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\n  namespace: {ns}\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels: {{app: nightly}}\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: job\n            image: registry.example.com/nightly:1\n"
    );
    // A tenth of the namespaces select kube-system by a label Kubernetes does not set.
    let dns_ns = if i.is_multiple_of(10) { "name: kube-system" } else { "kubernetes.io/metadata.name: kube-system" };
    let _ = write!(
        s,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\n  namespace: {ns}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-dns\n  namespace: {ns}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector:\n        matchLabels: {{{dns_ns}}}\n      podSelector:\n        matchLabels: {{k8s-app: kube-dns}}\n    ports:\n    - {{port: 53, protocol: UDP}}\n    - {{port: 53, protocol: TCP}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: api-ingress\n  namespace: {ns}\nspec:\n  podSelector:\n    matchLabels: {{app: api}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {{app: frontend}}\n    ports:\n    - port: http\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: api-egress\n  namespace: {ns}\nspec:\n  podSelector:\n    matchLabels: {{app: api}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - podSelector:\n        matchLabels: {{app: db}}\n    ports:\n    - {{port: 5432, protocol: TCP}}\n  - to:\n    - ipBlock:\n        cidr: 0.0.0.0/0\n        except: [10.0.0.0/8, 169.254.0.0/16]\n    ports:\n    - {{port: 443, protocol: TCP}}\n"
    );
    s
}
