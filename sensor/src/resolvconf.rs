//! The system's resolvers, trusted by default outside a cluster: the `nameserver` lines of
//! `/etc/resolv.conf`; when that names only systemd-resolved's stub (127.0.0.53 or
//! 127.0.0.54), the stub and the servers it forwards to (`/run/systemd/resolve/resolv.conf`),
//! since the sensor may see either side of it.

use std::net::IpAddr;
use std::path::Path;

const STUBS: [&str; 2] = ["127.0.0.53", "127.0.0.54"];

/// The resolvers `/etc/resolv.conf` (and systemd-resolved) name; empty when there are none.
pub fn system_resolvers() -> Vec<IpAddr> {
    resolvers_from(Path::new("/etc/resolv.conf"), Path::new("/run/systemd/resolve/resolv.conf"))
}

fn resolvers_from(resolv_conf: &Path, upstream: &Path) -> Vec<IpAddr> {
    let mut out = nameservers(&read(resolv_conf));
    if out.iter().any(|ip| STUBS.iter().any(|stub| ip.to_string() == *stub)) {
        for ip in nameservers(&read(upstream)) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Reads at most 64 KiB: a resolv.conf is a few lines.
fn read(path: &Path) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(64 * 1024).read_to_string(&mut text);
    }
    text
}

/// `nameserver ADDR` lines: the engine's reading, shared with `portcullis resolve`.
pub use portcullis_linter::egress::resolve::nameservers;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_are_read_and_the_stub_is_followed() {
        let dir = std::env::temp_dir().join(format!("portcullis-resolvconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (conf, upstream) = (dir.join("resolv.conf"), dir.join("upstream.conf"));
        // Debian: the resolvers themselves.
        std::fs::write(
            &conf,
            "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions edns0\n",
        )
        .unwrap();
        assert_eq!(
            resolvers_from(&conf, &upstream),
            ["192.0.2.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]
        );
        // Ubuntu: systemd-resolved's stub, and what it forwards to.
        std::fs::write(&conf, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
        std::fs::write(&upstream, "nameserver 198.51.100.1\nnameserver 198.51.100.2\n").unwrap();
        let found = resolvers_from(&conf, &upstream);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], "127.0.0.53".parse::<IpAddr>().unwrap());
        // Nothing usable: empty, and the caller says so.
        std::fs::write(&conf, "nameserver not-an-address\n").unwrap();
        assert!(resolvers_from(&conf, &dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
