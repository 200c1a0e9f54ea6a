//! Compiles the eBPF socket filter (`bpf/dns_snoop.bpf.c`) with clang into `OUT_DIR`, where
//! `src/bpf.rs` embeds it. `-g` is required: aya needs the object's BTF for the ring buffer map and
//! the `.rodata` globals.
// A build script talks to cargo through stdout and to people through stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const SOURCE: &str = "bpf/dns_snoop.bpf.c";
const APT: &str = "apt-get install -y clang libbpf-dev";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("dns_snoop.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());

    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(&format!("libbpf headers (/usr/include/bpf/bpf_helpers.h) are missing: {APT}"));
    }
    // Debian keeps <asm/types.h> under the multiarch directory.
    let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{clang} failed to compile {SOURCE} ({status})")),
        Err(err) => fail(&format!("cannot run {clang} ({err}) to build the eBPF program: {APT}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("portcullis-sensor: {message}");
    exit(1)
}
