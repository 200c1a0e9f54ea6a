//! `portcullis resolve`'s DNS lookups: a small stub resolver on std sockets, so the CLI does
//! not build an async DNS stack (the controller, which resolves continuously, uses
//! hickory-resolver in the webhook).
//!
//! For each name it asks A and AAAA at once over UDP, from a socket connected to the server
//! (the kernel drops datagrams from any other address), with unpredictable query IDs, and takes
//! only a reply echoing the query's ID and question ([`crate::egress::wire`]); a truncated reply
//! is asked again over TCP. Each server gets two tries of the timeout; a server that fails or
//! does not answer passes the question to the next one. This is the threat model of the
//! system's own stub resolver: it trusts the servers it is given, and nothing else.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::egress::resolve::{LookupError, Resolution, conclude, nameservers};
use crate::egress::wire::{self, Reply, TYPE_A, TYPE_AAAA, WireError};

/// Tries per server before the next one is asked.
const ATTEMPTS: usize = 2;
/// Largest UDP reply read (a reply without EDNS is at most 512 bytes).
const UDP_BUFFER: usize = 4096;

/// A stub resolver asking `servers` in order.
#[derive(Debug, Clone)]
pub struct Stub {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Stub {
    /// Asks `servers`, or the `nameserver`s of `/etc/resolv.conf` when the list is empty. The
    /// hosts file is never read: `resolve` writes what DNS says, not what this machine's
    /// `/etc/hosts` says (`--hosts` is the way to fix answers).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Stub, String> {
        let servers = if servers.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").map_err(|e| {
                format!("cannot read /etc/resolv.conf ({e}): pass --nameserver IP:PORT or --hosts FILE")
            })?;
            let found: Vec<SocketAddr> = nameservers(&text).into_iter().map(|ip| SocketAddr::new(ip, 53)).collect();
            if found.is_empty() {
                return Err("/etc/resolv.conf names no nameserver: pass --nameserver IP:PORT or --hosts FILE".into());
            }
            found
        } else {
            servers.to_vec()
        };
        Ok(Stub { servers, timeout })
    }

    /// Resolves `name`: its A and AAAA addresses through its CNAME chain.
    pub fn lookup(&self, name: &str) -> Result<Resolution, LookupError> {
        let mut out = Resolution::default();
        // Why each type still unanswered failed at the last server asked.
        let mut failed: BTreeMap<u16, String> = BTreeMap::new();
        let mut pending = vec![TYPE_A, TYPE_AAAA];
        for server in &self.servers {
            for (qtype, result) in self.ask(*server, name, &pending) {
                match result {
                    Ok(reply) => {
                        reply.resolve_into(name, &mut out);
                        failed.remove(&qtype);
                        pending.retain(|t| *t != qtype);
                    }
                    Err(e) => {
                        failed.insert(qtype, format!("{server}: {e}"));
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        conclude(name, out, failed.into_values().collect())
    }

    /// Asks `server` for each of `qtypes` at once; a result for every type. A reply with no
    /// error or NXDOMAIN is an answer (possibly without records); any other code is an error.
    fn ask(&self, server: SocketAddr, name: &str, qtypes: &[u16]) -> Vec<(u16, Result<Reply, String>)> {
        let socket = match udp_socket(server) {
            Ok(s) => s,
            Err(e) => return qtypes.iter().map(|t| (*t, Err(e.clone()))).collect(),
        };
        let mut results: BTreeMap<u16, Result<Reply, String>> = BTreeMap::new();
        let mut buffer = vec![0u8; UDP_BUFFER];
        for _ in 0..ATTEMPTS {
            let mut asked: Vec<(u16, u16)> = Vec::new();
            let unanswered: Vec<u16> =
                qtypes.iter().copied().filter(|t| !matches!(results.get(t), Some(Ok(_)))).collect();
            for qtype in unanswered {
                let id = random_id();
                match wire::query(id, name, qtype).map_err(|e| e.to_string()).and_then(|q| send(&socket, &q)) {
                    Ok(()) => asked.push((qtype, id)),
                    Err(e) => {
                        results.insert(qtype, Err(e));
                    }
                }
            }
            let deadline = Instant::now() + self.timeout;
            while !asked.is_empty() {
                let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                    break;
                };
                if socket.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                let size = match socket.recv(&mut buffer) {
                    Ok(size) => size,
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        // Refused (ICMP port unreachable) or unreachable: no point waiting.
                        for (qtype, _) in asked.drain(..) {
                            results.insert(qtype, Err(e.to_string()));
                        }
                        break;
                    }
                };
                let bytes = &buffer[..size];
                // Each datagram is read once, as the reply to whichever query it answers.
                let Some((index, parsed)) = asked.iter().enumerate().find_map(|(i, &(qtype, id))| {
                    match wire::parse_reply(bytes, id, name, qtype) {
                        Err(WireError::NotOurs) => None,
                        parsed => Some((i, parsed)),
                    }
                }) else {
                    continue;
                };
                let (qtype, _) = asked.swap_remove(index);
                let result = match parsed {
                    Ok(reply) if reply.truncated => self.ask_tcp(server, name, qtype),
                    other => other.map_err(|e| e.to_string()),
                };
                results.insert(qtype, result.and_then(answered));
            }
            for (qtype, _) in asked {
                results.entry(qtype).or_insert_with(|| Err(format!("no reply in {} ms", self.timeout.as_millis())));
            }
            if results.values().all(|r| r.is_ok()) {
                break;
            }
        }
        results.into_iter().collect()
    }

    /// Asks `server` over TCP (after a truncated UDP reply).
    fn ask_tcp(&self, server: SocketAddr, name: &str, qtype: u16) -> Result<Reply, String> {
        let id = random_id();
        let query = wire::query(id, name, qtype).map_err(|e| e.to_string())?;
        let tcp = |e: std::io::Error| format!("over TCP: {e}");
        let mut stream = TcpStream::connect_timeout(&server, self.timeout).map_err(tcp)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(tcp)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(tcp)?;
        let length = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
        stream.write_all(&length.to_be_bytes()).and_then(|()| stream.write_all(&query)).map_err(tcp)?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).map_err(tcp)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).map_err(tcp)?;
        wire::parse_reply(&reply, id, name, qtype).map_err(|e| format!("over TCP: {e}"))
    }
}

/// Looks `names` up with at most `concurrency` lookups at a time; results in name order.
pub fn lookup_many(
    stub: &Stub,
    names: Vec<String>,
    concurrency: usize,
) -> Vec<(String, Result<Resolution, LookupError>)> {
    let workers = concurrency.clamp(1, names.len().max(1));
    let queue = Mutex::new(names.into_iter());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = match queue.lock() {
                        Ok(mut queue) => queue.next(),
                        Err(_) => None,
                    };
                    let Some(name) = next else { break };
                    let result = stub.lookup(&name);
                    if let Ok(mut done) = done.lock() {
                        done.push((name, result));
                    }
                }
            });
        }
    });
    let mut out = done.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A reply with no error or NXDOMAIN answers the question; other codes say why not.
fn answered(reply: Reply) -> Result<Reply, String> {
    match reply.rcode {
        0 | 3 => Ok(reply),
        1 => Err("the server says the query is malformed (FORMERR)".into()),
        2 => Err("the server failed (SERVFAIL)".into()),
        4 => Err("the server does not implement the query (NOTIMP)".into()),
        5 => Err("the server refused (REFUSED)".into()),
        code => Err(format!("the server answered with code {code}")),
    }
}

/// A UDP socket of `server`'s family on an ephemeral port, connected to `server`.
fn udp_socket(server: SocketAddr) -> Result<UdpSocket, String> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket.connect(server).map_err(|e| format!("cannot reach: {e}"))?;
    Ok(socket)
}

fn send(socket: &UdpSocket, query: &[u8]) -> Result<(), String> {
    socket.send(query).map(|_| ()).map_err(|e| format!("cannot send: {e}"))
}

/// A query ID an off-path sender cannot predict: SipHash under keys std draws from the
/// operating system's random source (each `RandomState` gets fresh keys).
fn random_id() -> u16 {
    RandomState::new().hash_one(Instant::now()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::BTreeSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 48, "{ids:?}");
    }
}
