//! Records the git commit the binary is built from, for `portcullis --version`
//! (`PORTCULLIS_COMMIT`; "unknown" outside a git checkout, e.g. from a crate archive).
//!
//! Rebuilt when a commit or checkout moves HEAD, not on every edit or `git add`: the linter is
//! a dependency of everything else, and rebuilding it costs a minute.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PORTCULLIS_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    let git = std::path::Path::new("../.git");
    if git.join("HEAD").is_file() {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        // The branch HEAD points at, which a commit moves (or packed-refs, after `git gc`).
        let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
        if let Some(reference) = head.trim().strip_prefix("ref: ")
            && git.join(reference).is_file()
        {
            println!("cargo:rerun-if-changed=../.git/{reference}");
        }
        if git.join("packed-refs").is_file() {
            println!("cargo:rerun-if-changed=../.git/packed-refs");
        }
    }
}
