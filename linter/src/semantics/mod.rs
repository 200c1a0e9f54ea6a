//! Exact NetworkPolicy semantics (networking.k8s.io/v1): selectors, ipBlocks, ports and the
//! evaluator that rules and `portcullis trace` share; the ClusterNetworkPolicy tiers around it
//! (`cluster`), Cilium's policies beside it (`cilium`) and Calico's tiers (`calico`); and, beside
//! the L4 verdict rather than in it, Istio's routes and registry (`mesh`).

pub mod calico;
pub mod cilium;
pub mod cluster;
pub mod dns;
pub mod evaluator;
pub mod ip_block;
pub mod mesh;
pub mod selector;

pub use evaluator::{
    Decided, Direction, DirectionVerdict, Endpoint, Evaluator, PodView, PolicyVerdict, RuleRef, Traffic,
};
pub use ip_block::ParsedIpBlock;
pub use selector::{describe_selector, selector_is_empty, selector_matches};
