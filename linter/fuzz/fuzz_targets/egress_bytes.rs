//! Arbitrary bytes as a hosts file (`portcullis resolve --hosts`) and as manifests holding
//! EgressIntents and Otterize ClientIntents, rendered with what the hosts file answers. Property:
//! no rendered ipBlock is an address the address guard refuses, whatever the answers were.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::config::DnsConfig;
use portcullis_linter::egress::resolve::HostsTable;
use portcullis_linter::egress::{AddressGuard, CacheConfig, IntentMeta, IntentSet, RenderConfig, otterize};
use portcullis_linter::egress::intents::compile;
use portcullis_linter::project::Project;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let hosts = HostsTable::parse(text).unwrap_or_default();
    let mut project = Project::new("default");
    project.add_text("input.yaml", text.to_owned(), true);
    project.expand_intents(&DnsConfig::default());
    let mut set = IntentSet::new(CacheConfig::default());
    for intent in &project.inventory.intents {
        if let Some(spec) = &intent.spec
            && let Ok(c) = compile(IntentMeta::new(&intent.namespace, &intent.name), spec)
        {
            set.upsert_compiled(c, None);
        }
    }
    for converted in otterize::convert_all(&project.inventory) {
        if let Ok(c) = converted.intent {
            set.upsert_compiled(c, None);
        }
    }
    let now = jiff::Timestamp::UNIX_EPOCH;
    let names: Vec<String> = set.exact_names().map(str::to_owned).collect();
    for name in names {
        let answers = hosts.lookup(&name).map(|r| r.answers);
        set.apply_lookup(&name, answers.as_deref(), now);
    }
    let keys: Vec<_> = set.keys().cloned().collect();
    let guard = AddressGuard::default();
    for key in keys {
        let Some(rendered) = set.render(&key, &RenderConfig::default(), now) else { continue };
        for rule in rendered.policy["spec"]["egress"].as_array().into_iter().flatten() {
            for peer in rule["to"].as_array().into_iter().flatten() {
                let Some(cidr) = peer["ipBlock"]["cidr"].as_str() else { continue };
                let net: ipnet::IpNet = cidr.parse().expect("rendered CIDRs parse");
                assert!(guard.check(net.addr()).is_ok(), "the guard refuses {cidr}, yet it was rendered");
            }
        }
    }
});
