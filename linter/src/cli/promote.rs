//! `portcullis promote`: turns StagedPolicies into the NetworkPolicies they stand for, on
//! stdout, for `kubectl apply` or a Git commit.
//!
//! Only a staged policy whose status (written by the controller from the cluster's recorded
//! traffic) says `ReadyToPromote` about its current spec is promoted, unless
//! `--ignore-verdict`. The command never talks to the cluster: read the object with
//! `kubectl get stagedpolicy NAME -o yaml`, and apply the output with your own rights (the
//! controller promotes nothing by itself, so holding StagedPolicy rights never grants
//! NetworkPolicy rights).

use std::path::PathBuf;

use serde_json::Value;

use super::output::{refuse_invalid_input, write_policies};
use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::project::Project;
use crate::staged::{API_VERSION, KIND, PromoteError, promoted};

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// Files or directories holding StagedPolicies, as read from the cluster (- or nothing
    /// reads stdin)
    pub paths: Vec<String>,
    /// Promote even when the status does not say ReadyToPromote (or there is no status)
    #[arg(long)]
    pub ignore_verdict: bool,
    /// Write to this file instead of stdout
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file that portcullis did not write (never one of the inputs)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The first line of every file `promote` writes.
const HEADER: &str = "# Promoted by `portcullis promote` from StagedPolicies.\n";

/// Exit 0 when every staged policy is promoted, 1 when one is not ready (nothing is written),
/// 2 on invalid input (none is a StagedPolicy, one has no spec) or I/O errors.
pub fn run(args: &PromoteArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    if refuse_invalid_input(&project, io.stderr, "nothing was written")? {
        return Ok(EXIT_ERROR);
    }
    let (mut policies, mut not_ready, mut invalid) = (Vec::new(), 0, 0);
    let inv = &project.inventory;
    for object in &inv.objects {
        let str_at = |pointer: &str| object.value.pointer(pointer).and_then(Value::as_str);
        if str_at("/apiVersion") != Some(API_VERSION) || str_at("/kind") != Some(KIND) {
            continue;
        }
        match promoted(&object.value, &args.load.namespace, args.ignore_verdict) {
            Ok(policy) => policies.push(policy),
            Err(e) => {
                let at = project.sources.locate(&object.doc, &object.doc_pointer(""));
                let file = project.sources.get(object.doc.source).map(|f| f.name.as_str()).unwrap_or("<input>");
                writeln!(io.stderr, "{file}:{}:{}: {e}", at.line, at.column)?;
                match e {
                    PromoteError::NotReady { .. } | PromoteError::NoStatus(_) => not_ready += 1,
                    PromoteError::NotStaged | PromoteError::NoName | PromoteError::NoSpec(_) => invalid += 1,
                }
            }
        }
    }
    if invalid > 0 {
        writeln!(io.stderr, "portcullis: error: {invalid} invalid staged policies (above); nothing was written")?;
        return Ok(EXIT_ERROR);
    }
    if not_ready > 0 {
        writeln!(io.stderr, "portcullis: {not_ready} staged policies are not ready (above); nothing was written")?;
        return Ok(EXIT_FINDINGS);
    }
    if policies.is_empty() {
        writeln!(io.stderr, "portcullis: error: the input holds no {KIND} ({API_VERSION}); nothing was written")?;
        return Ok(EXIT_ERROR);
    }
    write_policies(&project, &policies, (args.out.as_deref(), args.force, HEADER), io.stdout, io.stderr)?;
    Ok(EXIT_OK)
}
