//! `portcullis resolve`: renders the EgressIntents (and Otterize ClientIntents internet
//! targets) in the input to NetworkPolicies on stdout, for GitOps.
//!
//! Names are looked up in `--hosts` first; names not there go to DNS (`--nameserver`, or the
//! system resolver when neither option is given). With `--hosts` alone nothing leaves the
//! machine, which makes the output reproducible in CI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::dns::{Stub, lookup_many};
use super::output::{refuse_invalid_input, write_policies};
use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::egress::intents::compile_inventory;
use crate::egress::resolve::{HostsTable, LookupError, Resolution};
use crate::egress::{CacheConfig, IntentSet, NameState, RenderConfig};
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// Files or directories holding EgressIntents (- or nothing reads stdin)
    pub paths: Vec<String>,
    /// DNS server to ask, IP:PORT (repeatable; default: the system's resolvers)
    #[arg(long, value_name = "IP:PORT")]
    pub nameserver: Vec<SocketAddr>,
    /// Hosts file (IP NAME...) answering first; alone, no DNS query is made
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// DNS timeout per query, in milliseconds
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Write to this file instead of stdout
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file that portcullis did not write (never one of the inputs)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Exit 0 when every exact name has an address and nothing was left out, 1 when a name has no
/// address, an address was refused by the address guard or dropped by the size limit (the
/// policies are still written, without them), 2 on invalid input or I/O errors.
pub fn run(args: &ResolveArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    if refuse_invalid_input(&project, io.stderr, "nothing was written")? {
        return Ok(EXIT_ERROR);
    }
    let hosts = match &args.hosts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read hosts file {}: {e}", path.display()))?;
            Some(HostsTable::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let use_dns = hosts.is_none() || !args.nameserver.is_empty();

    let mut set = IntentSet::new(CacheConfig::default()).with_guard(config.address_guard.clone());
    let mut invalid = 0;
    let inv = &project.inventory;
    let mut locate = |object, pointer: &str, message: &str| -> std::io::Result<()> {
        let o = inv.object(object);
        let at = project.sources.locate(&o.doc, &o.doc_pointer(pointer));
        let file = project.sources.get(o.doc.source).map(|f| f.name.as_str()).unwrap_or("<input>");
        invalid += 1;
        writeln!(io.stderr, "{file}:{}:{}: {message}", at.line, at.column)
    };
    for (object, compiled) in compile_inventory(inv) {
        match compiled {
            Ok(compiled) => set.upsert_compiled(compiled, None),
            Err(problems) => {
                for p in problems {
                    locate(object, &p.pointer, &p.message)?;
                }
            }
        }
    }

    let names: Vec<String> = set.exact_names().map(str::to_owned).collect();
    let dns = if use_dns && names.iter().any(|n| hosts.as_ref().is_none_or(|h| h.lookup(n).is_none())) {
        Some(Stub::new(&args.nameserver, Duration::from_millis(args.timeout_ms)).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let results = lookup_all(&names, hosts.as_ref(), dns.as_ref());
    let now = Timestamp::now();
    for (name, result) in &results {
        match result {
            Ok(r) => {
                set.apply_lookup(name, Some(&r.answers), now);
            }
            Err(e) => {
                set.apply_lookup(name, None, now);
                writeln!(io.stderr, "portcullis: {e}; policies are written without it")?;
            }
        }
    }

    // Addresses the guard refused (metadata, loopback, cluster and private ranges): never in a
    // policy, always said, and the exit code says the output is not what DNS answered.
    let refusals = set.take_refusals();
    for r in &refusals {
        writeln!(
            io.stderr,
            "portcullis: {}: refused {} for {}: {}; it is left out of the policy",
            r.intent, r.ip, r.name, r.refusal
        )?;
    }
    let render_config = RenderConfig { dns: config.dns.clone(), ..RenderConfig::default() };
    let mut policies: Vec<Value> = Vec::new();
    let mut pending = 0;
    let mut dropped = 0;
    for key in set.keys().cloned().collect::<Vec<_>>() {
        let Some(rendered) = set.render(&key, &render_config, now) else { continue };
        for name in rendered.status.addresses.iter().filter(|n| n.state == NameState::Pending) {
            match (&name.fqdn, &name.pattern) {
                (Some(fqdn), None) => {
                    pending += 1;
                    writeln!(io.stderr, "portcullis: {key}: no address for {fqdn}")?;
                }
                (_, Some(pattern)) => writeln!(
                    io.stderr,
                    "portcullis: {key}: {pattern} is learned from DNS answers pods receive (the sensor); offline it allows nothing"
                )?,
                (None, None) => {}
            }
        }
        if rendered.dropped > 0 {
            dropped += rendered.dropped;
            writeln!(io.stderr, "portcullis: {key}: {} addresses left out by the size limit", rendered.dropped)?;
        }
        policies.push(rendered.policy);
    }
    if invalid > 0 {
        writeln!(io.stderr, "portcullis: error: {invalid} invalid intents (above); nothing was written")?;
        return Ok(EXIT_ERROR);
    }
    write_policies(&project, &policies, (args.out.as_deref(), args.force, HEADER), io.stdout, io.stderr)?;
    Ok(if pending > 0 || dropped > 0 || !refusals.is_empty() { EXIT_FINDINGS } else { EXIT_OK })
}

/// The first line of every file `resolve` writes.
const HEADER: &str = "# Rendered by `portcullis resolve` from EgressIntents; regenerate, do not edit.\n";

type Results = BTreeMap<String, Result<Resolution, LookupError>>;

/// Looks every name up: the hosts table first, then DNS (16 queries in flight at most).
fn lookup_all(names: &[String], hosts: Option<&HostsTable>, dns: Option<&Stub>) -> Results {
    let mut results = Results::new();
    let mut todo = Vec::new();
    for name in names {
        match hosts.and_then(|h| h.lookup(name)) {
            Some(r) => {
                results.insert(name.clone(), Ok(r));
            }
            None if dns.is_some() => todo.push(name.clone()),
            None => {
                results.insert(name.clone(), Err(LookupError::NotInHosts(name.clone())));
            }
        }
    }
    if let Some(dns) = dns.filter(|_| !todo.is_empty()) {
        results.extend(lookup_many(dns, todo, 16));
    }
    results
}
