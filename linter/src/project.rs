//! A lint run's input: the source files, their inventory, and the problems met while loading.
//! The CLI and the webhook build one, call [`Project::lint`], and render the diagnostics.

use jiff::Timestamp;

use crate::config::{Config, DnsConfig};
use crate::egress::intents::{CompiledIntent, Target, TargetName, compile};
use crate::egress::render::render;
use crate::egress::{AddressCache, IntentMeta, RenderConfig, otterize, parse_fqdn};
use crate::finding::{Diagnostic, Finding};
use crate::load::{self, LoadProblem, Locator, Parsed, Position, SourceFile, SourceId, Sources};
use crate::model::inventory::ScannedObject;
use crate::model::{Inventory, NameMatch, NameRule, WorkloadId};
use crate::parallel;
use crate::rules::{self, Context};

/// Everything loaded for one run.
#[derive(Debug)]
pub struct Project {
    pub sources: Sources,
    pub inventory: Inventory,
    pub load_problems: Vec<LoadProblem>,
    /// The files read (as the CLI found them): commands that write never write over one.
    pub files_read: std::collections::HashSet<crate::load::fs::FileIdentity>,
    /// What the walk of the reported inputs left out (exclude globs, `.gitignore`).
    pub left_out: crate::load::fs::Left,
    /// Whether [`Project::expand_intents`] ran.
    expanded: bool,
    /// See [`Project::set_threads`].
    threads: usize,
}

impl Project {
    /// An empty project; objects without a namespace go to `default_namespace`.
    pub fn new(default_namespace: &str) -> Project {
        Project {
            sources: Sources::default(),
            inventory: Inventory::new(default_namespace),
            load_problems: Vec::new(),
            files_read: std::collections::HashSet::new(),
            left_out: crate::load::fs::Left::default(),
            expanded: false,
            threads: 1,
        }
    }

    /// How many threads [`Project::add_texts`] may parse on and [`Project::lint`] may run rules
    /// on (at least one). One by default: a library caller such as the webhook, deciding many
    /// small reviews at once, must not spawn threads for each; the CLI passes
    /// [`parallel::threads`]. Results are the same on any number.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// See [`Project::set_threads`].
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Parses a file's text and adds its objects. `reported` is false for `--context` inputs:
    /// their objects take part in the analysis but findings in them are not shown.
    pub fn add_text(&mut self, name: &str, text: String, reported: bool) -> SourceId {
        let id = self.sources.add(SourceFile { name: name.to_owned(), text, reported });
        self.read_sources(&[(id, false)], 1);
        id
    }

    /// Parses files and adds their objects, as [`Project::add_text`] for each in turn would:
    /// the files are parsed and typed in parallel (on the cores this process may use) and added
    /// in the order given, so the result, and every report, is the same on any number of cores.
    /// Returns each file's source, in order.
    pub fn add_texts(&mut self, files: Vec<TextFile>, reported: bool) -> Vec<SourceId> {
        let mut added = Vec::with_capacity(files.len());
        let mut bytes = 0usize;
        for TextFile { name, text, superseding } in files {
            bytes = bytes.saturating_add(text.len());
            added.push((self.sources.add(SourceFile { name, text, reported }), superseding));
        }
        // Below this, starting a thread costs more than it saves (parsing runs at ~40 MB/s).
        const PARALLEL_FROM_BYTES: usize = 64 * 1024;
        let threads = if bytes < PARALLEL_FROM_BYTES { 1 } else { self.threads };
        self.read_sources(&added, threads);
        added.into_iter().map(|(id, _)| id).collect()
    }

    /// Parses the given sources (with whether each supersedes) on `threads` threads and adds
    /// their objects in order.
    fn read_sources(&mut self, added: &[(SourceId, bool)], threads: usize) {
        // In batches of about this many bytes, so only one batch of read documents waits to be
        // added at a time (one file at a time on one thread).
        const BATCH_BYTES: usize = 1 << 20;
        let keep_values = self.inventory.keeps_values();
        let mut rest = added;
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = 0usize;
            while take < rest.len() && (take == 0 || (threads > 1 && bytes < BATCH_BYTES)) {
                bytes = bytes.saturating_add(source_text(&self.sources, rest[take].0).len());
                take += 1;
            }
            let (batch, later) = rest.split_at(take);
            rest = later;
            let sources = &self.sources;
            let read = parallel::map(batch, threads, |&(id, _)| read_source(id, source_text(sources, id), keep_values));
            for (&(_, superseding), documents) in batch.iter().zip(read) {
                self.inventory.set_superseding(superseding);
                for document in documents {
                    match document {
                        ReadDocument::Object(object) => self.inventory.add_scanned_object(*object),
                        ReadDocument::Document(document) => self.inventory.add_document(document),
                        ReadDocument::Problem(problem) => self.load_problems.push(problem),
                    }
                }
                self.inventory.set_superseding(false);
            }
        }
    }

    /// Records an input that could not be read as text (binary, too large, not UTF-8).
    pub fn add_rejected(&mut self, name: &str, position: Position, message: String, reported: bool) -> SourceId {
        let id = self.sources.add(SourceFile { name: name.to_owned(), text: String::new(), reported });
        self.load_problems.push(LoadProblem { source: id, position, message });
        id
    }

    /// Adds the NetworkPolicy each valid EgressIntent (and Otterize ClientIntents with internet
    /// targets, and Istio Gateways annotated for it: [`crate::egress::istio`]) will have in the cluster, so the rules see its pods as egress-isolated with DNS
    /// allowed. Offline there are no addresses yet: only the DNS allowance and fixed blocks.
    /// Call it once all files are added; later calls do nothing.
    pub fn expand_intents(&mut self, dns: &DnsConfig) {
        if std::mem::replace(&mut self.expanded, true) {
            return;
        }
        let config = RenderConfig { dns: dns.clone(), ..RenderConfig::default() };
        let empty = AddressCache::default();
        let mut generated = Vec::new();
        for intent in &self.inventory.intents {
            let Some(spec) = &intent.spec else { continue };
            let meta = IntentMeta::new(&intent.namespace, &intent.name);
            if let Ok(compiled) = compile(meta, spec) {
                // Each target's rule in the intent: the first egress entry naming it.
                let pointer = |t: &Target| {
                    let named = |e: &crate::egress::EgressTarget| match &t.name {
                        TargetName::Exact(n) => e.fqdn.as_deref().and_then(|f| parse_fqdn(f).ok()).as_ref() == Some(n),
                        TargetName::Pattern(_, raw) => e.fqdn_pattern.as_ref() == Some(raw),
                    };
                    spec.egress.iter().position(named).map_or_else(String::new, |i| format!("/spec/egress/{i}"))
                };
                let names = name_rules(&compiled, pointer);
                let policy = render(&compiled, &empty, &config, Timestamp::UNIX_EPOCH).policy;
                generated.push((intent.object, policy, names));
            }
        }
        let converted = otterize::convert_all(&self.inventory)
            .into_iter()
            .chain(crate::egress::istio::convert_all(&self.inventory));
        for converted in converted {
            if let Ok(compiled) = converted.intent {
                let names = name_rules(&compiled, |_| String::new());
                let policy = render(&compiled, &empty, &config, Timestamp::UNIX_EPOCH).policy;
                generated.push((converted.object, policy, names));
            }
        }
        for (source, policy, names) in generated {
            self.inventory.add_generated_policy(source, &policy, names);
        }
    }

    /// Runs the rules; returns findings located in reported files only.
    pub fn lint(&self, config: &Config) -> Vec<Finding> {
        self.lint_with_traffic(config, None)
    }

    /// [`Project::lint`], with observed traffic replayed against the input
    /// ([`crate::replay::replay`]) for the rule that reports what it would deny.
    pub fn lint_with_traffic(&self, config: &Config, traffic: Option<&crate::replay::Replay>) -> Vec<Finding> {
        let mut cx = Context::new(&self.inventory, config, &self.load_problems);
        cx.traffic = traffic;
        let mut findings = rules::run_on(&cx, self.threads);
        findings.retain(|f| self.sources.get(f.anchor.source()).is_some_and(|s| s.reported));
        findings
    }

    /// Looks up positions and orders findings by file, line and column.
    pub fn diagnostics(&self, findings: &[Finding]) -> Vec<Diagnostic> {
        let mut locator = Locator::new(&self.sources);
        let mut out: Vec<Diagnostic> = findings.iter().map(|f| f.resolve(&mut locator)).collect();
        out.sort_by(|a, b| (a.source, a.position, a.code).cmp(&(b.source, b.position, b.code)));
        out
    }

    /// Finds a workload by `NAMESPACE/NAME` or `NAMESPACE/KIND/NAME` (kind case-insensitive).
    /// Where `pointer` (relative to the object) of an object is written: its file's name and the
    /// line. `trace` and `diff` name the rules that decide with it.
    pub fn place(&self, object: crate::model::ObjectId, pointer: &str) -> (String, usize) {
        let obj = self.inventory.object(object);
        let line = self.sources.locate(&obj.doc, &obj.doc_pointer(pointer)).line;
        let file = self.sources.get(obj.doc.source).map(|s| s.name.clone()).unwrap_or_default();
        (file, line)
    }

    pub fn find_workload(&self, spec: &str) -> Result<WorkloadId, String> {
        let Some((ns, rest)) = spec.split_once('/') else {
            return Err(format!("{spec:?}: expected NAMESPACE/WORKLOAD"));
        };
        let (kind, name) = match rest.split_once('/') {
            Some((k, n)) => (Some(k), n),
            None => (None, rest),
        };
        let inv = &self.inventory;
        let matches: Vec<WorkloadId> = inv
            .workloads_in(ns)
            .filter(|(_, w)| {
                w.name == name && kind.is_none_or(|k| inv.object(w.object).id.kind.eq_ignore_ascii_case(k))
            })
            .map(|(id, _)| id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("no workload {rest:?} in namespace {ns:?} in the input")),
            many => Err(format!(
                "{spec:?} is ambiguous: {}; write NAMESPACE/KIND/NAME",
                many.iter().map(|w| crate::rules::workload_label_of(inv, *w)).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Files that are reported on.
    pub fn reported_files(&self) -> usize {
        self.sources.iter().filter(|(_, f)| f.reported).count()
    }

    /// The report summary of `diagnostics`: reported files and objects, and documents skipped.
    pub fn summary(&self, diagnostics: &[crate::finding::Diagnostic]) -> crate::report::Summary {
        let mut summary = crate::report::Summary::new(self.reported_files(), self.reported_objects(), diagnostics);
        summary.skipped = self.skipped_documents();
        summary.excluded = self.left_out.excluded;
        summary.replaced = self.inventory.replaced.len();
        summary.ignored = self.left_out.ignored;
        summary
    }

    /// Documents in reported files skipped as not Kubernetes objects.
    pub fn skipped_documents(&self) -> usize {
        self.inventory.skipped.iter().filter(|d| self.sources.get(d.source).is_some_and(|s| s.reported)).count()
    }

    /// Objects in reported files.
    pub fn reported_objects(&self) -> usize {
        self.inventory.objects.iter().filter(|o| self.sources.get(o.doc.source).is_some_and(|s| s.reported)).count()
    }
}

/// A file for [`Project::add_texts`].
#[derive(Debug)]
pub struct TextFile {
    pub name: String,
    pub text: String,
    /// Objects of this file replace same-named ones of files added after it (`fix` output:
    /// [`Inventory::set_superseding`]).
    pub superseding: bool,
}

/// One document of a file, read without the inventory.
enum ReadDocument {
    Object(Box<ScannedObject>),
    Document(load::Document),
    Problem(LoadProblem),
}

fn source_text(sources: &Sources, id: SourceId) -> &str {
    sources.get(id).map_or("", |file| file.text.as_str())
}

/// Every document of one file, parsed and (where the fast path takes it) typed.
fn read_source(id: SourceId, text: &str, keep_values: bool) -> Vec<ReadDocument> {
    let mut out = Vec::new();
    load::scan_source(id, text, |parsed| {
        if let Ok(Parsed::Scanned(scanned)) = &parsed
            && let Some(object) = ScannedObject::read(scanned, keep_values)
        {
            out.push(ReadDocument::Object(Box::new(object)));
            return;
        }
        match parsed.and_then(Parsed::into_document) {
            Ok(Some(document)) => out.push(ReadDocument::Document(document)),
            Ok(None) => {}
            Err(problem) => out.push(ReadDocument::Problem(problem)),
        }
    });
    out
}

/// The names a compiled intent's rendered policy allows once resolved, with where each is
/// written.
fn name_rules(intent: &CompiledIntent, pointer: impl Fn(&Target) -> String) -> Vec<NameRule> {
    intent
        .targets
        .iter()
        .map(|t| NameRule {
            name: match &t.name {
                TargetName::Exact(n) => NameMatch::Exact(n.clone()),
                TargetName::Pattern(p, _) => NameMatch::Pattern(p.clone()),
            },
            ports: t.ports.clone(),
            pointer: pointer(t),
        })
        .collect()
}
