//! `portcullis fix`: writes the objects that make the input pass.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

use super::output::{Output, refuse_invalid_input};
use super::{EXIT_ERROR, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::emit::to_yaml;
use crate::finding::Edit;
use crate::model::ObjectId;
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct FixArgs {
    /// Files or directories to fix (- or nothing reads stdin)
    pub paths: Vec<String>,
    /// Write to this file, or one file per namespace into this existing directory (default: stdout)
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file that portcullis did not write (never one of the inputs)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The objects a fix run produces, by namespace.
type ByNamespace = BTreeMap<String, Vec<Value>>;

pub fn run(args: &FixArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    if refuse_invalid_input(&project, io.stderr, "nothing was written")? {
        return Ok(EXIT_ERROR);
    }
    let findings = project.lint(&config);
    let inv = &project.inventory;

    let mut created: ByNamespace = BTreeMap::new();
    let mut created_names: HashSet<(String, String)> = HashSet::new();
    let mut allow_dns_namespaces: HashSet<String> = HashSet::new();
    for f in &findings {
        for edit in f.fix.iter().flat_map(|fx| &fx.edits) {
            if let Edit::Create(obj) = edit {
                let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned();
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                if obj.pointer("/spec/egress").is_some() {
                    allow_dns_namespaces.insert(ns.clone());
                }
                if created_names.insert((ns.clone(), name)) {
                    created.entry(ns).or_default().push(obj.clone());
                }
            }
        }
    }
    // Patches, applied once per object; skipped where a namespace-wide DNS allowance is created.
    let mut patched: BTreeMap<ObjectId, Value> = BTreeMap::new();
    let mut applied: HashSet<(ObjectId, String)> = HashSet::new();
    for f in &findings {
        for edit in f.fix.iter().flat_map(|fx| &fx.edits) {
            let Edit::Patch { object, patch } = edit else { continue };
            let obj = inv.object(*object);
            if obj.namespace().is_some_and(|ns| allow_dns_namespaces.contains(ns)) {
                continue;
            }
            if !applied.insert((*object, serde_json::to_string(patch)?)) {
                continue;
            }
            let current = patched.entry(*object).or_insert_with(|| obj.value.clone());
            if let Err(e) = json_patch::patch(current, patch) {
                writeln!(io.stderr, "portcullis: skipping a fix for {}: {e}", obj.id)?;
            }
        }
    }
    let mut output = created;
    for (id, value) in patched {
        let ns = inv.object(id).namespace().unwrap_or_default().to_owned();
        output.entry(ns).or_default().push(value);
    }
    let count: usize = output.values().map(Vec::len).sum();
    if count == 0 {
        // Nothing is written, so an existing --out file is left as it is, not emptied.
        writeln!(io.stderr, "portcullis: nothing to fix")?;
        return Ok(EXIT_OK);
    }
    let files = Output::new(&project, args.force, HEADER);
    match &args.out {
        Some(dir) if dir.is_dir() => {
            for (ns, objects) in &output {
                let path = files.in_directory(dir, ns, "portcullis-fix.yaml")?;
                files.write(&path, &stream(objects))?;
                writeln!(io.stderr, "wrote {}", path.display())?;
            }
        }
        Some(file) => {
            files.write(file, &stream(&output.values().flatten().cloned().collect::<Vec<_>>()))?;
            writeln!(io.stderr, "wrote {count} objects to {}", file.display())?;
        }
        None => io.stdout.write_all(stream(&output.values().flatten().cloned().collect::<Vec<_>>()).as_bytes())?,
    }
    Ok(EXIT_OK)
}

/// The first line of every file `fix` writes (an existing file that starts with it may be
/// replaced without `--force`).
/// The first line of what `fix` writes: linted together with the files it patched, its objects
/// replace theirs (see `load_project`).
pub(crate) const HEADER: &str = "# Written by `portcullis fix`: new policies and patched copies of existing ones.\n";

/// A YAML stream: one document per object.
fn stream(objects: &[Value]) -> String {
    let mut out = String::from(HEADER);
    for o in objects {
        out.push_str("---\n");
        out.push_str(&to_yaml(o));
    }
    out
}
