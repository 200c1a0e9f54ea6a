//! Two network namespaces joined by a veth pair, made and removed by the test itself: a "server"
//! side (the resolver, and a forger) and a "client" side (the pods, and the sensor). Addresses
//! exist only inside the namespaces. Needs root (CI runs as root).
#![allow(dead_code, unsafe_code)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;

pub struct NetPair {
    pub server_ns: String,
    pub client_ns: String,
    /// The client-side veth name (inside `client_ns`).
    pub client_if: String,
    pub server_v4: Ipv4Addr,
    pub forger_v4: Ipv4Addr,
    pub client_v4: Ipv4Addr,
    pub server_v6: Ipv6Addr,
    pub client_v6: Ipv6Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 `ip` is required for the eBPF tests");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl NetPair {
    /// Creates the pair; `tag` keeps concurrent tests apart (a small number).
    pub fn new(tag: u8) -> NetPair {
        let pid = std::process::id();
        let server_ns = format!("pcs{tag}-s-{pid}");
        let client_ns = format!("pcs{tag}-c-{pid}");
        let (veth_s, veth_c) = (format!("pcs{tag}s{}", pid % 10_000), format!("pcs{tag}c{}", pid % 10_000));
        let pair = NetPair {
            server_ns: server_ns.clone(),
            client_ns: client_ns.clone(),
            client_if: veth_c.clone(),
            server_v4: Ipv4Addr::new(10, 231, tag, 1),
            forger_v4: Ipv4Addr::new(10, 231, tag, 3),
            client_v4: Ipv4Addr::new(10, 231, tag, 2),
            server_v6: format!("fd00:231:{tag}::1").parse().unwrap(),
            client_v6: format!("fd00:231:{tag}::2").parse().unwrap(),
        };
        for ns in [&server_ns, &client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &veth_s, "netns", &server_ns, "type", "veth", "peer", "name", &veth_c, "netns", &client_ns,
        ]);
        let s4 = format!("{}/24", pair.server_v4);
        let f4 = format!("{}/24", pair.forger_v4);
        let c4 = format!("{}/24", pair.client_v4);
        let s6 = format!("{}/64", pair.server_v6);
        let c6 = format!("{}/64", pair.client_v6);
        ip(&["-n", &server_ns, "addr", "add", &s4, "dev", &veth_s]);
        ip(&["-n", &server_ns, "addr", "add", &f4, "dev", &veth_s]);
        ip(&["-n", &server_ns, "addr", "add", &s6, "dev", &veth_s, "nodad"]);
        ip(&["-n", &client_ns, "addr", "add", &c4, "dev", &veth_c]);
        ip(&["-n", &client_ns, "addr", "add", &c6, "dev", &veth_c, "nodad"]);
        ip(&["-n", &server_ns, "link", "set", &veth_s, "up"]);
        ip(&["-n", &client_ns, "link", "set", &veth_c, "up"]);
        pair
    }

    pub fn server_ip(&self, v6: bool) -> IpAddr {
        if v6 { IpAddr::V6(self.server_v6) } else { IpAddr::V4(self.server_v4) }
    }

    pub fn client_ip(&self, v6: bool) -> IpAddr {
        if v6 { IpAddr::V6(self.client_v6) } else { IpAddr::V4(self.client_v4) }
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a new thread that has entered the network namespace `ns`; sockets it opens live
/// there. Only that thread changes namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd affects only the calling thread's network view.
        let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}
