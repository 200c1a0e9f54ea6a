//! `portcullis.yaml`: rule levels, DNS targets, excluded namespaces and webhook settings
//! (DESIGN §4). Read by the CLI and the webhook alike. Unknown keys and unknown rule names are
//! errors that name the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::Value;

use crate::finding::Severity;
use crate::load::{self, Position, SourceFile, Sources};
use crate::model::Labels;
use crate::rules::registry;

/// File names searched for, in the current directory and then its parents.
pub const DISCOVERED_NAMES: [&str; 2] = [".portcullis.yaml", "portcullis.yaml"];

/// A rule's configured level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLevel {
    Off,
    On(Severity),
}

/// Where cluster DNS lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub namespace: String,
    pub pod_labels: Labels,
    /// Extra DNS addresses, e.g. NodeLocal DNSCache `169.254.20.10/32`.
    pub extra_ip_blocks: Vec<IpNet>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            namespace: "kube-system".to_owned(),
            pod_labels: [("k8s-app".to_owned(), "kube-dns".to_owned())].into(),
            extra_ip_blocks: Vec::new(),
        }
    }
}

/// How the webhook acts on findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookMode {
    Enforce,
    #[default]
    Warn,
    Audit,
    Off,
}

impl WebhookMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookMode::Enforce => "enforce",
            WebhookMode::Warn => "warn",
            WebhookMode::Audit => "audit",
            WebhookMode::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookMode> {
        match s {
            "enforce" => Some(WebhookMode::Enforce),
            "warn" => Some(WebhookMode::Warn),
            "audit" => Some(WebhookMode::Audit),
            "off" => Some(WebhookMode::Off),
            _ => None,
        }
    }
}

/// The users whose object creations are trusted as a workload controller's by default: the
/// kube-controller-manager controllers that create pods and pod-owning objects (with
/// `--use-service-account-credentials`, each runs as its own ServiceAccount; without it, all
/// run as `system:kube-controller-manager`).
pub const DEFAULT_TRUSTED_CONTROLLERS: [&str; 8] = [
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:replication-controller",
];

/// Webhook settings (used by `portcullis-webhook`; validated here so both agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub mode: WebhookMode,
    pub add_dns_allowance: bool,
    /// Users whose requests for objects owned by a workload controller are warned about,
    /// never denied, in enforce mode (the owner was reviewed when it was applied).
    pub trusted_controllers: Vec<String>,
    /// Policy layers besides NetworkPolicy the webhook watches and reviews (`layers:`), each
    /// needing the chart's RBAC for its kinds; a layer whose CRDs the cluster lacks is skipped.
    pub layers: Vec<PolicyLayer>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            mode: WebhookMode::Warn,
            add_dns_allowance: true,
            trusted_controllers: DEFAULT_TRUSTED_CONTROLLERS.map(str::to_owned).to_vec(),
            layers: Vec::new(),
        }
    }
}

/// A policy layer the webhook can watch: its kinds and where the API serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyLayer {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and BaselineAdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.
    Cilium,
    /// Calico's policies, Tiers and network sets (`projectcalico.org/v3`, or the
    /// `crd.projectcalico.org/v1` CRDs when Calico's API server is not installed).
    Calico,
    /// Istio's egress objects (`networking.istio.io` ServiceEntry, Sidecar, Gateway,
    /// VirtualService, DestinationRule), read beside the L4 layers (`semantics::mesh`).
    Istio,
}

/// One kind a layer watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerResource {
    /// `(group, version)` pairs it may be served at, in order of preference: the webhook
    /// watches the first the cluster serves.
    pub served_at: &'static [(&'static str, &'static str)],
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

const NETWORK_POLICY_API_V1ALPHA2: &[(&str, &str)] = &[("policy.networking.k8s.io", "v1alpha2")];
const NETWORK_POLICY_API_V1ALPHA1: &[(&str, &str)] = &[("policy.networking.k8s.io", "v1alpha1")];
const CILIUM: &[(&str, &str)] = &[("cilium.io", "v2")];
/// Calico's API server, or its CRDs when the API server is not installed.
const CALICO: &[(&str, &str)] = &[("projectcalico.org", "v3"), ("crd.projectcalico.org", "v1")];
/// Istio's networking CRDs: `v1` since Istio 1.22, the beta and alpha versions before.
const ISTIO: &[(&str, &str)] =
    &[("networking.istio.io", "v1"), ("networking.istio.io", "v1beta1"), ("networking.istio.io", "v1alpha3")];

impl PolicyLayer {
    pub const ALL: [PolicyLayer; 5] = [
        PolicyLayer::ClusterNetworkPolicy,
        PolicyLayer::AdminNetworkPolicy,
        PolicyLayer::Cilium,
        PolicyLayer::Calico,
        PolicyLayer::Istio,
    ];

    /// The name in `portcullis.yaml` and the chart's values.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyLayer::ClusterNetworkPolicy => "clusterNetworkPolicy",
            PolicyLayer::AdminNetworkPolicy => "adminNetworkPolicy",
            PolicyLayer::Cilium => "cilium",
            PolicyLayer::Calico => "calico",
            PolicyLayer::Istio => "istio",
        }
    }

    /// The kinds the layer watches.
    pub fn resources(self) -> &'static [LayerResource] {
        const fn r(
            served_at: &'static [(&'static str, &'static str)],
            kind: &'static str,
            plural: &'static str,
            namespaced: bool,
        ) -> LayerResource {
            LayerResource { served_at, kind, plural, namespaced }
        }
        const CNP: &[LayerResource] =
            &[r(NETWORK_POLICY_API_V1ALPHA2, "ClusterNetworkPolicy", "clusternetworkpolicies", false)];
        const ANP: &[LayerResource] = &[
            r(NETWORK_POLICY_API_V1ALPHA1, "AdminNetworkPolicy", "adminnetworkpolicies", false),
            r(NETWORK_POLICY_API_V1ALPHA1, "BaselineAdminNetworkPolicy", "baselineadminnetworkpolicies", false),
        ];
        const CILIUM_KINDS: &[LayerResource] = &[
            r(CILIUM, "CiliumNetworkPolicy", "ciliumnetworkpolicies", true),
            r(CILIUM, "CiliumClusterwideNetworkPolicy", "ciliumclusterwidenetworkpolicies", false),
        ];
        const CALICO_KINDS: &[LayerResource] = &[
            r(CALICO, "NetworkPolicy", "networkpolicies", true),
            r(CALICO, "GlobalNetworkPolicy", "globalnetworkpolicies", false),
            r(CALICO, "Tier", "tiers", false),
            r(CALICO, "NetworkSet", "networksets", true),
            r(CALICO, "GlobalNetworkSet", "globalnetworksets", false),
        ];
        const ISTIO_KINDS: &[LayerResource] = &[
            r(ISTIO, "ServiceEntry", "serviceentries", true),
            r(ISTIO, "Sidecar", "sidecars", true),
            r(ISTIO, "Gateway", "gateways", true),
            r(ISTIO, "VirtualService", "virtualservices", true),
            r(ISTIO, "DestinationRule", "destinationrules", true),
        ];
        match self {
            PolicyLayer::ClusterNetworkPolicy => CNP,
            PolicyLayer::AdminNetworkPolicy => ANP,
            PolicyLayer::Cilium => CILIUM_KINDS,
            PolicyLayer::Calico => CALICO_KINDS,
            PolicyLayer::Istio => ISTIO_KINDS,
        }
    }

    pub fn parse(name: &str) -> Option<PolicyLayer> {
        PolicyLayer::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// FQDN controller settings (used by `portcullis-webhook`; validated here so both agree).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerConfig {
    /// DNS servers the controller asks (`IP:PORT`); empty means the system's.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Address cache timing and bounds.
    pub cache: crate::egress::CacheConfig,
    /// Whether every new non-excluded namespace gets default-deny and allow-dns policies
    /// (a namespace label `portcullis.dev/guard: "true"|"false"` overrides it).
    pub namespace_guard: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Levels by rule code.
    pub rules: BTreeMap<&'static str, RuleLevel>,
    pub dns: DnsConfig,
    pub exclude_namespaces: Vec<String>,
    pub webhook: WebhookConfig,
    pub controller: ControllerConfig,
    /// Rules (by code) that a `portcullis.dev/ignore` annotation may not silence: the platform
    /// team's call, in the file CI and the webhook both read.
    pub forbidden_ignores: std::collections::BTreeSet<&'static str>,
    /// Which addresses FQDN intents may ever allow (`addressGuard`).
    pub address_guard: crate::egress::AddressGuard,
    /// Paths a directory walk leaves out (gitignore-style globs relative to the config file's
    /// directory); files named on the command line too.
    pub exclude: Vec<String>,
    /// When not empty, a walked file must match one of these globs.
    pub include: Vec<String>,
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: BTreeMap::new(),
            dns: DnsConfig::default(),
            exclude_namespaces: ["kube-system", "kube-public", "kube-node-lease"].map(str::to_owned).to_vec(),
            webhook: WebhookConfig::default(),
            controller: ControllerConfig::default(),
            forbidden_ignores: std::collections::BTreeSet::new(),
            address_guard: crate::egress::AddressGuard::default(),
            exclude: Vec::new(),
            include: Vec::new(),
            path: None,
        }
    }
}

/// A configuration error, located (line 0: the file itself, e.g. it cannot be read).
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The effective severity of a rule (`None` when off).
    pub fn severity(&self, code: &str, default: Severity) -> Option<Severity> {
        match self.rules.get(code) {
            Some(RuleLevel::Off) => None,
            Some(RuleLevel::On(s)) => Some(*s),
            None => Some(default),
        }
    }

    pub fn is_excluded(&self, namespace: &str) -> bool {
        self.exclude_namespaces.iter().any(|n| n == namespace)
    }

    /// Whether a `portcullis.dev/ignore` annotation may silence the rule with this code.
    pub fn may_ignore(&self, code: &str) -> bool {
        !self.forbidden_ignores.contains(code)
    }

    /// Finds the config: `explicit` if given, else the first discovered file upwards from `dir`.
    pub fn discover(explicit: Option<&Path>, dir: &Path) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            let text = std::fs::read(path).map_err(|e| ConfigError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read config: {e}"),
            })?;
            return Config::parse_bytes(text, path);
        }
        let mut current = Some(dir);
        while let Some(d) = current {
            let found: Vec<PathBuf> = DISCOVERED_NAMES.iter().map(|n| d.join(n)).filter(|p| p.is_file()).collect();
            if found.len() > 1 {
                // Which one wins would be a guess the user cannot see: refuse instead.
                return Err(ConfigError {
                    file: found[0].display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("{} exists too; keep one configuration file per directory", found[1].display()),
                });
            }
            for name in DISCOVERED_NAMES {
                let candidate = d.join(name);
                if candidate.is_file() {
                    let text = std::fs::read(&candidate).map_err(|e| ConfigError {
                        file: candidate.display().to_string(),
                        line: 0,
                        column: 0,
                        message: format!("cannot read config: {e}"),
                    })?;
                    return Config::parse_bytes(text, &candidate);
                }
            }
            current = d.parent();
        }
        Ok(Config::default())
    }

    fn parse_bytes(bytes: Vec<u8>, path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = load::decode_text(bytes).map_err(|(p, m)| err(&name, p, m))?;
        let mut config = Config::parse(&text, &name)?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parses configuration text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let mut sources = Sources::default();
        let source = sources.add(SourceFile { name: name.to_owned(), text: text.to_owned(), reported: false });
        let (docs, problems) = load::parse_source(source, text);
        if let Some(p) = problems.first() {
            return Err(err(name, p.position, p.message.clone()));
        }
        let mut config = Config::default();
        let Some(doc) = docs.first() else { return Ok(config) };
        let reader = Reader { sources: &sources, doc: doc.at, name };
        let Value::Object(root) = &doc.value else {
            return Err(reader.error("", "the config must be a mapping".to_owned()));
        };
        for (key, value) in root {
            let at = format!("/{key}");
            match key.as_str() {
                "rules" => config.rules = reader.rules(value, &at)?,
                "dns" => config.dns = reader.dns(value, &at)?,
                "excludeNamespaces" => config.exclude_namespaces = reader.strings(value, &at)?,
                "webhook" => config.webhook = reader.webhook(value, &at)?,
                "controller" => config.controller = reader.controller(value, &at)?,
                "ignoreAnnotations" => config.forbidden_ignores = reader.ignore_annotations(value, &at)?,
                "addressGuard" => config.address_guard = reader.address_guard(value, &at)?,
                "exclude" => config.exclude = reader.strings(value, &at)?,
                "include" => config.include = reader.strings(value, &at)?,
                other => {
                    return Err(reader.unknown_key(
                        other,
                        &at,
                        &[
                            "rules",
                            "dns",
                            "excludeNamespaces",
                            "webhook",
                            "controller",
                            "ignoreAnnotations",
                            "addressGuard",
                            "exclude",
                            "include",
                        ],
                    ));
                }
            }
        }
        Ok(config)
    }
}

fn err(file: &str, p: Position, message: String) -> ConfigError {
    ConfigError { file: file.to_owned(), line: p.line, column: p.column, message }
}

struct Reader<'a> {
    sources: &'a Sources,
    doc: load::DocumentRef,
    name: &'a str,
}

impl Reader<'_> {
    fn error(&self, pointer: &str, message: String) -> ConfigError {
        err(self.name, self.sources.locate(&self.doc, pointer), message)
    }

    fn unknown_key(&self, key: &str, at: &str, known: &[&str]) -> ConfigError {
        self.error(at, format!("unknown key {key:?}; expected one of: {}", known.join(", ")))
    }

    fn map<'v>(&self, value: &'v Value, at: &str) -> Result<&'v serde_json::Map<String, Value>, ConfigError> {
        match value {
            Value::Object(m) => Ok(m),
            other => Err(self.error(at, format!("expected a mapping, found {}", type_name(other)))),
        }
    }

    fn string<'v>(&self, value: &'v Value, at: &str) -> Result<&'v str, ConfigError> {
        value.as_str().ok_or_else(|| self.error(at, format!("expected a string, found {}", type_name(value))))
    }

    fn strings(&self, value: &Value, at: &str) -> Result<Vec<String>, ConfigError> {
        let Value::Array(items) = value else {
            return Err(self.error(at, format!("expected a list of strings, found {}", type_name(value))));
        };
        items.iter().enumerate().map(|(i, v)| self.string(v, &format!("{at}/{i}")).map(str::to_owned)).collect()
    }

    fn cidrs(&self, value: &Value, at: &str) -> Result<Vec<IpNet>, ConfigError> {
        self.strings(value, at)?
            .iter()
            .enumerate()
            .map(|(i, s)| crate::semantics::ip_block::parse_cidr(s).map_err(|m| self.error(&format!("{at}/{i}"), m)))
            .collect()
    }

    /// `addressGuard: {clusterRanges: [CIDR...], allowPrivate: bool, allowRanges: [CIDR...]}`.
    fn address_guard(&self, value: &Value, at: &str) -> Result<crate::egress::AddressGuard, ConfigError> {
        let mut guard = crate::egress::AddressGuard::default();
        for (key, v) in self.map(value, at)? {
            let here = format!("{at}/{key}");
            match key.as_str() {
                "clusterRanges" => guard.cluster_ranges = self.cidrs(v, &here)?,
                "allowRanges" => guard.allow_ranges = self.cidrs(v, &here)?,
                "allowPrivate" => {
                    guard.allow_private = v
                        .as_bool()
                        .ok_or_else(|| self.error(&here, format!("expected true or false, found {}", type_name(v))))?;
                }
                other => {
                    return Err(self.unknown_key(other, &here, &["clusterRanges", "allowPrivate", "allowRanges"]));
                }
            }
        }
        Ok(guard)
    }

    /// `ignoreAnnotations: {forbiddenRules: [PC001, missing-default-deny-egress]}`.
    fn ignore_annotations(
        &self,
        value: &Value,
        at: &str,
    ) -> Result<std::collections::BTreeSet<&'static str>, ConfigError> {
        let mut forbidden = std::collections::BTreeSet::new();
        for (key, v) in self.map(value, at)? {
            let here = format!("{at}/{key}");
            match key.as_str() {
                "forbiddenRules" => {
                    for (i, name) in self.strings(v, &here)?.iter().enumerate() {
                        let meta = registry::find(name).ok_or_else(|| {
                            self.error(
                                &format!("{here}/{i}"),
                                format!("unknown rule {name:?}; run `portcullis rules` for the list"),
                            )
                        })?;
                        forbidden.insert(meta.code);
                    }
                }
                other => return Err(self.unknown_key(other, &here, &["forbiddenRules"])),
            }
        }
        Ok(forbidden)
    }

    fn rules(&self, value: &Value, at: &str) -> Result<BTreeMap<&'static str, RuleLevel>, ConfigError> {
        let mut out = BTreeMap::new();
        for (key, level) in self.map(value, at)? {
            let here = format!("{at}/{}", crate::model::object::pointer_escape(key));
            let meta = registry::find(key).ok_or_else(|| {
                self.error(&here, format!("unknown rule {key:?}; run `portcullis rules` for the list"))
            })?;
            let level = match level {
                Value::String(s) => match s.as_str() {
                    "off" => RuleLevel::Off,
                    "info" => RuleLevel::On(Severity::Info),
                    "warning" => RuleLevel::On(Severity::Warning),
                    "error" => RuleLevel::On(Severity::Error),
                    other => {
                        return Err(
                            self.error(&here, format!("unknown level {other:?}; expected off, info, warning or error"))
                        );
                    }
                },
                // `PC010: off` parses as the string "off"; YAML 1.1 users may write `false`.
                Value::Bool(false) => RuleLevel::Off,
                other => {
                    return Err(
                        self.error(&here, format!("expected off, info, warning or error, found {}", type_name(other)))
                    );
                }
            };
            out.insert(meta.code, level);
        }
        Ok(out)
    }

    fn dns(&self, value: &Value, at: &str) -> Result<DnsConfig, ConfigError> {
        let mut dns = DnsConfig::default();
        for (key, v) in self.map(value, at)? {
            let here = format!("{at}/{key}");
            match key.as_str() {
                "namespace" => dns.namespace = self.string(v, &here)?.to_owned(),
                "podLabels" => {
                    let mut labels = Labels::new();
                    for (k, lv) in self.map(v, &here)? {
                        labels.insert(k.clone(), self.string(lv, &format!("{here}/{k}"))?.to_owned());
                    }
                    dns.pod_labels = labels;
                }
                "extraIpBlocks" => {
                    dns.extra_ip_blocks = self
                        .strings(v, &here)?
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            crate::semantics::ip_block::parse_cidr(s).map_err(|m| self.error(&format!("{here}/{i}"), m))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(self.unknown_key(other, &here, &["namespace", "podLabels", "extraIpBlocks"])),
            }
        }
        Ok(dns)
    }

    fn webhook(&self, value: &Value, at: &str) -> Result<WebhookConfig, ConfigError> {
        let mut webhook = WebhookConfig::default();
        for (key, v) in self.map(value, at)? {
            let here = format!("{at}/{key}");
            match key.as_str() {
                "mode" => {
                    let s = self.string(v, &here)?;
                    webhook.mode = WebhookMode::parse(s).ok_or_else(|| {
                        self.error(&here, format!("unknown mode {s:?}; expected enforce, warn, audit or off"))
                    })?;
                }
                "mutate" => {
                    for (mk, mv) in self.map(v, &here)? {
                        let mhere = format!("{here}/{mk}");
                        match mk.as_str() {
                            "addDnsAllowance" => {
                                webhook.add_dns_allowance = mv.as_bool().ok_or_else(|| {
                                    self.error(&mhere, format!("expected true or false, found {}", type_name(mv)))
                                })?;
                            }
                            other => return Err(self.unknown_key(other, &mhere, &["addDnsAllowance"])),
                        }
                    }
                }
                "trustedControllers" => webhook.trusted_controllers = self.strings(v, &here)?,
                "layers" => {
                    for (i, name) in self.strings(v, &here)?.iter().enumerate() {
                        let layer = PolicyLayer::parse(name).ok_or_else(|| {
                            self.error(
                                &format!("{here}/{i}"),
                                format!(
                                    "unknown policy layer {name:?}; expected clusterNetworkPolicy, adminNetworkPolicy, cilium or calico"
                                ),
                            )
                        })?;
                        if !webhook.layers.contains(&layer) {
                            webhook.layers.push(layer);
                        }
                    }
                }
                other => {
                    return Err(self.unknown_key(other, &here, &["mode", "mutate", "trustedControllers", "layers"]));
                }
            }
        }
        Ok(webhook)
    }
}

impl Reader<'_> {
    fn seconds(&self, value: &Value, at: &str) -> Result<std::time::Duration, ConfigError> {
        value
            .as_u64()
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| self.error(at, format!("expected a whole number of seconds, found {}", type_name(value))))
    }

    fn controller(&self, value: &Value, at: &str) -> Result<ControllerConfig, ConfigError> {
        let mut c = ControllerConfig::default();
        for (key, v) in self.map(value, at)? {
            let here = format!("{at}/{key}");
            match key.as_str() {
                "nameservers" => {
                    c.nameservers = self
                        .strings(v, &here)?
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            s.parse().map_err(|_| self.error(&format!("{here}/{i}"), format!("{s:?} is not IP:PORT")))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "namespaceGuard" => {
                    c.namespace_guard = v
                        .as_bool()
                        .ok_or_else(|| self.error(&here, format!("expected true or false, found {}", type_name(v))))?;
                }
                "ttlFloorSeconds" => c.cache.ttl_floor = self.seconds(v, &here)?,
                "ttlCapSeconds" => c.cache.ttl_cap = self.seconds(v, &here)?,
                "graceSeconds" => c.cache.grace = self.seconds(v, &here)?,
                "maxAddressesPerName" => {
                    c.cache.max_per_name = v
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| self.error(&here, "expected a positive number".to_owned()))?;
                }
                other => {
                    return Err(self.unknown_key(
                        other,
                        &here,
                        &[
                            "nameservers",
                            "namespaceGuard",
                            "ttlFloorSeconds",
                            "ttlCapSeconds",
                            "graceSeconds",
                            "maxAddressesPerName",
                        ],
                    ));
                }
            }
        }
        if c.cache.ttl_floor > c.cache.ttl_cap {
            return Err(self.error(at, "ttlFloorSeconds is above ttlCapSeconds".to_owned()));
        }
        Ok(c)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let text = "rules: {PC010: off, egress-allow-all: error}\ndns: {namespace: kube-system, podLabels: {k8s-app: kube-dns}, extraIpBlocks: [169.254.20.10/32]}\nexcludeNamespaces: [kube-system, kube-public, kube-node-lease]\nwebhook: {mode: warn, mutate: {addDnsAllowance: true}}\n";
        let c = Config::parse(text, "portcullis.yaml").unwrap();
        assert_eq!(c.rules.get("PC010"), Some(&RuleLevel::Off));
        assert_eq!(c.rules.get("PC006"), Some(&RuleLevel::On(Severity::Error)));
        assert_eq!(c.dns.extra_ip_blocks[0].to_string(), "169.254.20.10/32");
        assert_eq!(c.webhook.mode, WebhookMode::Warn);
    }

    #[test]
    fn unknown_keys_are_errors_with_file_and_line() {
        let e = Config::parse("dns:\n  namespace: kube-system\n  podlabels: {a: b}\n", "p.yaml").unwrap_err();
        assert_eq!((e.line, e.column), (3, 3));
        assert!(e.to_string().starts_with("p.yaml:3:3: unknown key \"podlabels\""), "{e}");
    }

    #[test]
    fn controller_settings_parse_and_are_checked() {
        let c = Config::parse(
            "controller:\n  nameservers: [10.96.0.10:53]\n  namespaceGuard: true\n  graceSeconds: 30\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(c.controller.nameservers[0].to_string(), "10.96.0.10:53");
        assert!(c.controller.namespace_guard);
        assert_eq!(c.controller.cache.grace.as_secs(), 30);
        let e = Config::parse("controller:\n  ttlFloorSeconds: 100\n  ttlCapSeconds: 10\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("ttlFloorSeconds is above ttlCapSeconds"), "{e}");
        let e = Config::parse("controller: {nameservers: [dns]}\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("is not IP:PORT"), "{e}");
    }

    #[test]
    fn forbidden_ignores_and_trusted_controllers_parse() {
        let c = Config::parse(
            "ignoreAnnotations: {forbiddenRules: [PC001, missing-default-deny-egress]}\nwebhook: {trustedControllers: [system:serviceaccount:argo:rollouts]}\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(c.forbidden_ignores.iter().copied().collect::<Vec<_>>(), ["PC001", "PC002"]);
        assert!(!c.may_ignore("PC001") && c.may_ignore("PC003"));
        assert_eq!(c.webhook.trusted_controllers, ["system:serviceaccount:argo:rollouts"]);
        let layers = Config::parse("webhook: {layers: [cilium, calico, cilium]}\n", "p.yaml").unwrap();
        assert_eq!(layers.webhook.layers, [PolicyLayer::Cilium, PolicyLayer::Calico]);
        let bad = Config::parse("webhook: {layers: [calicoo]}\n", "p.yaml").unwrap_err();
        assert!(bad.to_string().contains("unknown policy layer \"calicoo\""), "{bad}");
        assert!(Config::default().webhook.trusted_controllers.iter().any(|u| u.ends_with(":replicaset-controller")));
        let e = Config::parse("ignoreAnnotations: {forbiddenRules: [PC999]}\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("unknown rule \"PC999\""), "{e}");
    }

    #[test]
    fn an_unreadable_config_names_the_file_without_a_position() {
        let e = Config::discover(Some(Path::new("/nonexistent/nope.yaml")), Path::new(".")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/nope.yaml: cannot read config: "), "{e}");
    }

    #[test]
    fn two_config_files_in_one_directory_are_an_error() {
        let dir = std::env::temp_dir().join(format!("portcullis-config-two-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in DISCOVERED_NAMES {
            std::fs::write(dir.join(name), "rules: {}\n").unwrap();
        }
        let e = Config::discover(None, &dir).unwrap_err();
        assert!(e.to_string().contains("portcullis.yaml exists too; keep one"), "{e}");
        std::fs::remove_file(dir.join(DISCOVERED_NAMES[0])).unwrap();
        assert!(Config::discover(None, &dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_address_guard_parses() {
        let c = Config::parse(
            "addressGuard: {clusterRanges: [10.96.0.0/12, 'fd00:10:96::/112'], allowPrivate: false, allowRanges: [10.20.0.0/16]}\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(c.address_guard.cluster_ranges.len(), 2);
        assert_eq!(c.address_guard.allow_ranges[0].to_string(), "10.20.0.0/16");
        let e = Config::parse("addressGuard: {clusterRanges: [10.96.0.0/33]}\n", "p.yaml").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Config::parse("addressGuard: {allowMetadata: true}\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("unknown key \"allowMetadata\""), "{e}");
    }

    #[test]
    fn unknown_rules_and_levels_are_errors() {
        let e = Config::parse("rules:\n  PC999: off\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("unknown rule \"PC999\""));
        assert_eq!(e.line, 2);
        let e = Config::parse("rules: {PC001: loud}\n", "p.yaml").unwrap_err();
        assert!(e.message.contains("unknown level \"loud\""));
    }
}
