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

/// A node as a CNI wires it: a "node" namespace (where the sensor runs, on every interface)
/// routing between two pods and a resolver, each in its own namespace behind a veth (`eth0`
/// inside). Pod A is the attacker, pod B its neighbour; the resolver namespace holds a real
/// resolver address and a silent one (trusted, but nothing answers there, so a forgery has time
/// to arrive first).
pub struct Node {
    pub node_ns: String,
    pub a_ns: String,
    pub b_ns: String,
    pub resolver_ns: String,
    /// Node-side veth names, toward A, B and the resolver.
    pub node_if: [String; 3],
    pub a_v4: Ipv4Addr,
    pub b_v4: Ipv4Addr,
    pub resolver_v4: Ipv4Addr,
    pub silent_v4: Ipv4Addr,
}

impl Node {
    /// `rp_filter` is the node's reverse-path filter (0 off, 1 strict) on every interface.
    pub fn new(tag: u8, rp_filter: u8) -> Node {
        let pid = std::process::id();
        let ns = |role: &str| format!("pcn{tag}-{role}-{pid}");
        let node = Node {
            node_ns: ns("n"),
            a_ns: ns("a"),
            b_ns: ns("b"),
            resolver_ns: ns("r"),
            node_if: ["a", "b", "r"].map(|side| format!("pcn{tag}{side}{}", pid % 10_000)),
            a_v4: Ipv4Addr::new(10, 241, tag, 2),
            b_v4: Ipv4Addr::new(10, 242, tag, 2),
            resolver_v4: Ipv4Addr::new(10, 243, tag, 2),
            silent_v4: Ipv4Addr::new(10, 243, tag, 3),
        };
        for ns in [&node.node_ns, &node.a_ns, &node.b_ns, &node.resolver_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let sysctl = |key: &str, value: u8| {
            let path = format!("/proc/sys/net/ipv4/{}", key.replace('.', "/"));
            let out = Command::new("ip")
                .args(["netns", "exec", &node.node_ns, "sh", "-c", &format!("echo {value} > {path}")])
                .output()
                .unwrap();
            assert!(out.status.success(), "{key}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sysctl("ip_forward", 1);
        sysctl("conf.all.rp_filter", rp_filter);
        sysctl("conf.default.rp_filter", rp_filter);
        let sides = [(&node.a_ns, 241, [2].as_slice()), (&node.b_ns, 242, &[2]), (&node.resolver_ns, 243, &[2, 3])];
        for ((peer_ns, net, hosts), node_if) in sides.into_iter().zip(&node.node_if) {
            ip(&[
                "link",
                "add",
                node_if,
                "netns",
                &node.node_ns,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer_ns,
            ]);
            ip(&["-n", &node.node_ns, "addr", "add", &format!("10.{net}.{tag}.1/24"), "dev", node_if]);
            for host in hosts {
                ip(&["-n", peer_ns, "addr", "add", &format!("10.{net}.{tag}.{host}/24"), "dev", "eth0"]);
            }
            ip(&["-n", &node.node_ns, "link", "set", node_if, "up"]);
            ip(&["-n", peer_ns, "link", "set", "eth0", "up"]);
            ip(&["-n", peer_ns, "route", "add", "default", "via", &format!("10.{net}.{tag}.1")]);
            sysctl(&format!("conf.{node_if}.rp_filter"), rp_filter);
        }
        node
    }

    /// The MAC address of `interface` in `ns`.
    pub fn mac(ns: &str, interface: &str) -> [u8; 6] {
        let out = Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", interface]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mac = text.split("link/ether ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
        let bytes: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
        bytes.try_into().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in [&self.node_ns, &self.a_ns, &self.b_ns, &self.resolver_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// An IPv4 + UDP packet with any source (the header checksum right, so a router forwards it;
/// the UDP checksum zero, which IPv4 allows).
pub fn ipv4_udp(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut packet = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0];
    packet.extend_from_slice(&src.ip().octets());
    packet.extend_from_slice(&dst.ip().octets());
    let sum = (0..20).step_by(2).map(|i| u32::from(u16::from_be_bytes([packet[i], packet[i + 1]]))).sum::<u32>();
    let folded = !(((sum & 0xffff) + (sum >> 16)) as u16);
    packet[10..12].copy_from_slice(&folded.to_be_bytes());
    packet.extend_from_slice(&src.port().to_be_bytes());
    packet.extend_from_slice(&dst.port().to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}

/// Sends `frame` (a whole Ethernet frame) out of `interface` with a packet socket: what a pod
/// with CAP_NET_RAW can do. Call inside the pod's namespace.
pub fn send_frame(interface: &str, frame: &[u8]) {
    let index = std::ffi::CString::new(interface).unwrap();
    // SAFETY: a valid C string; the call only reads it.
    let ifindex = unsafe { libc::if_nametoindex(index.as_ptr()) };
    assert!(ifindex > 0, "no interface {interface}");
    // SAFETY: plain syscall; the descriptor is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid, then the fields are set.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    assert_eq!(sent, frame.len() as isize, "sendto: {err}");
}
