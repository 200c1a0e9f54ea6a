//! # portcullis-linter
//!
//! The portcullis rule engine: it loads Kubernetes manifests with source positions, models
//! NetworkPolicy semantics exactly, and runs the rule catalogue over an [`model::Inventory`].
//! The engine does no I/O of its own except in [`load::fs`]; the CLI, the webhook and the
//! sensor are shells around it.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod diff;
pub mod egress;
pub mod emit;
pub mod finding;
pub mod fix;
pub mod https;
pub mod load;
pub mod model;
pub mod parallel;
pub mod project;
pub mod replay;
pub mod report;
pub mod rules;
pub mod semantics;
#[cfg(feature = "service")]
pub mod service;
pub mod staged;
