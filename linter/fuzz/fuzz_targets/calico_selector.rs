//! Arbitrary bytes as a Calico selector: parsing never panics or recurses past its bound, and
//! a parsed selector evaluates over a pod without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::model::Labels;
use portcullis_linter::model::calico_selector::parse;
use portcullis_linter::semantics::PodView;
use portcullis_linter::semantics::calico::{selects_namespace, selects_pod};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(selector) = parse(text) else { return };
    let labels: Labels = [("app", "web"), ("env", "prod"), ("a", "")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let namespace_labels: Labels =
        [("kubernetes.io/metadata.name", "shop")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let pod = PodView {
        namespace: "shop",
        labels: &labels,
        namespace_labels: &namespace_labels,
        ports: &[],
        ips: &[],
        host_network: false,
        workload: None,
    };
    let first = selects_pod(&selector, &pod);
    assert_eq!(first, selects_pod(&selector, &pod));
    let _ = selects_namespace(&selector, &namespace_labels);
    assert_eq!(selector.source, text);
});
