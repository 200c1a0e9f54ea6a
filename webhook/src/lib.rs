//! # portcullis-webhook
//!
//! The validating and mutating admission webhook: the rules of `portcullis lint` applied on
//! every `kubectl apply`. The decision ([`admission`], [`review`]) is pure code over a
//! [`state::Snapshot`]; [`server`] serves it over rustls; [`state`] and [`kube_state`] hold
//! the cluster state it needs.

#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod connections;
pub mod controller;
pub mod crd;
pub mod kube_state;
pub mod listwatch;
pub mod memo;
pub mod metrics;
pub mod observations;
pub mod review;
pub mod selftls;
pub mod server;
pub mod state;
pub mod tls;
pub mod traffic;
pub mod watched;
