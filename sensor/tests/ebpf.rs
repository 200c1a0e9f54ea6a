//! The sensor for real: the eBPF filter loaded into this kernel, attached in a client network
//! namespace joined by a veth pair to a server namespace where dnsmasq answers on a test port.
//! Real queries (A, AAAA over IPv6, a CNAME chain, NXDOMAIN, TCP) must produce exactly the
//! expected observations; a forged response from a third address and an unsolicited one from the
//! resolver's own address must produce none, and the counters must say why.
//!
//! Needs root and a kernel with BPF: CI has both, and these tests fail (never skip) without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

#[path = "../../linter/tests/common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use netns::{NetPair, Node, in_netns};

const PORT: u16 = 5353;
const HOSTS: &str = "192.0.2.10 api.example.test\n2001:db8::10 api.example.test\n";

fn query_bytes(id: u16, qname: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(qname).unwrap(), qtype));
    message.to_vec().unwrap()
}

/// Sends a query over UDP from `bind` and waits for the first reply.
fn udp_ask(bind: SocketAddr, server: SocketAddr, id: u16, qname: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    socket.send_to(&query_bytes(id, qname, qtype), server).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

fn tcp_ask(server: SocketAddr, id: u16, qname: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(3)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let bytes = query_bytes(id, qname, qtype);
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn forged_response(id: u16, qname: &str, address: [u8; 4]) -> Vec<u8> {
    let mut message = Message::response(id, OpCode::Query);
    message.metadata.recursion_available = true;
    let name = Name::from_str(qname).unwrap();
    message.add_query(Query::query(name.clone(), RecordType::A));
    message.add_answer(Record::from_rdata(name, 3600, RData::A(A(address.into()))));
    message.to_vec().unwrap()
}

/// The sensor binary, running inside the client namespace.
struct Sensor {
    child: Child,
    lines: mpsc::Receiver<String>,
    metrics: SocketAddr,
    ns: String,
}

impl Sensor {
    fn start(net: &NetPair, delivery: &str, extra: &[String]) -> Sensor {
        let mut args: Vec<String> = vec!["--interface".into(), net.client_if.clone()];
        for resolver in [net.server_v4.to_string(), net.server_v6.to_string()] {
            args.extend(["--trusted-resolver".into(), resolver]);
        }
        args.extend(["--delivery".into(), delivery.into()]);
        args.extend_from_slice(extra);
        Sensor::start_in(&net.client_ns, &args)
    }

    /// Starts the sensor in `ns` with `args` after the common ones (test port, stdout, metrics
    /// on an ephemeral port, no Kubernetes).
    fn start_in(ns: &str, args: &[String]) -> Sensor {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_portcullis-sensor")])
            .args(["--dns-port", &PORT.to_string()])
            .args(["--output", "stdout", "--metrics-listen", "127.0.0.1:0", "--node", "test-node"])
            .args(["--kubernetes", "never"])
            .args(args)
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The log line that says capture started carries the metrics address.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let metrics = loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).unwrap();
            log.push_str(&line);
            assert!(read > 0, "the sensor exited before capturing (CI runs as root with BPF):\n{log}");
            if let Some(rest) = line.split("metrics=").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Sensor { child, lines, metrics, ns: ns.to_owned() }
    }

    /// `reason` → value of `portcullis_sensor_packets_total` and (prefixed `kernel:`) of
    /// `portcullis_sensor_kernel_packets_total`.
    fn counters(&self) -> BTreeMap<String, u64> {
        let addr = self.metrics;
        metrics::counters(&in_netns(&self.ns, move || metrics::scrape(addr)))
    }

    /// The whole metrics page.
    fn scrape(&self) -> String {
        let addr = self.metrics;
        in_netns(&self.ns, move || metrics::scrape(addr))
    }

    /// Waits until `done` holds for the counters (the capture thread works asynchronously; a
    /// counter not reported yet reads 0 through [`n`]).
    fn wait_for(&self, what: &str, done: impl Fn(&BTreeMap<String, u64>) -> bool) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let counters = self.counters();
            if done(&counters) {
                return counters;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; counters: {counters:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Vec<serde_json::Value> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sensor exit: {status}");
        self.lines.try_iter().map(|line| serde_json::from_str(&line).unwrap()).collect()
    }
}

/// A counter as scraped, 0 while the sensor has not reported it yet (the kernel's counters are
/// read on their own schedule: indexing a page scraped before then panicked in CI).
fn n(counters: &BTreeMap<String, u64>, key: &str) -> u64 {
    counters.get(key).copied().unwrap_or(0)
}

fn observation(net: &NetPair, v6: bool, qname: &str, cnames: &[&str], ip: &str) -> serde_json::Value {
    serde_json::json!({
        "node": "test-node",
        "client": {"ip": net.client_ip(v6).to_string()},
        "server": net.server_ip(v6).to_string(),
        "qname": qname,
        "answers": [{"ip": ip, "ttl": 120}],
        "cnames": cnames,
    })
}

fn scenario(tag: u8, delivery: &str) {
    let net = NetPair::new(tag);
    let _dns = dnsmasq::Dnsmasq::start_in(
        &net.server_ns,
        SocketAddr::new(net.server_ip(false), PORT),
        &[net.server_ip(true)],
        HOSTS,
        120,
        &["www.example.test,api.example.test"],
    );
    let sensor = Sensor::start(&net, delivery, &[]);

    let (client4, client6) = (net.client_ip(false), net.client_ip(true));
    let (server4, server6) = (SocketAddr::new(net.server_ip(false), PORT), SocketAddr::new(net.server_ip(true), PORT));
    in_netns(&net.client_ns, move || {
        let any4 = SocketAddr::new(client4, 0);
        let a = udp_ask(any4, server4, 1, "api.example.test.", RecordType::A);
        assert_eq!(a.answers.len(), 1);
        let aaaa = udp_ask(SocketAddr::new(client6, 0), server6, 2, "api.example.test.", RecordType::AAAA);
        assert_eq!(aaaa.answers.len(), 1);
        let chain = udp_ask(any4, server4, 3, "www.example.test.", RecordType::A);
        assert_eq!(chain.answers.len(), 2, "CNAME + A");
        let missing = udp_ask(any4, server4, 4, "nope.example.test.", RecordType::A);
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        let tcp = tcp_ask(server4, 5, "www.example.test.", RecordType::A);
        assert_eq!(tcp.metadata.message_type, MessageType::Response);
        assert_eq!(tcp.answers.len(), 2);
        // Not DNS: the kernel filter drops it.
        UdpSocket::bind(any4).unwrap().send_to(b"not dns", SocketAddr::new(server4.ip(), 9999)).unwrap();
        // A datagram to the DNS port larger than the veth MTU (1,500) leaves as three fragments:
        // the kernel drops the two without a UDP header, user space counts the first.
        UdpSocket::bind(any4).unwrap().send_to(&[0u8; 3000], server4).unwrap();
    });
    let counters = sensor.wait_for("the real answers", |c| {
        n(c, "observations") == 4 && n(c, "nxdomain") == 1 && n(c, "fragment") == 1 && n(c, "kernel:fragment") >= 2
    });
    assert_eq!(counters["kernel:fragment"], 2, "{counters:#?}");

    // A forged answer, from an address on the resolver's subnet that is not the resolver, to a
    // query the client really sent: counted untrusted_source, never observed.
    let forged_port = 40_001;
    let (forged_from, client_ns, server_ns) = (net.forger_v4, net.client_ns.clone(), net.server_ns.clone());
    let asked = std::thread::spawn(move || {
        in_netns(&client_ns, move || {
            udp_ask(SocketAddr::new(client4, forged_port), server4, 0x4242, "forged.example.test.", RecordType::A)
        })
    });
    std::thread::sleep(Duration::from_millis(200));
    let target = SocketAddr::new(client4, forged_port);
    in_netns(&server_ns, move || {
        let forger = UdpSocket::bind(SocketAddr::new(IpAddr::V4(forged_from), PORT)).unwrap();
        forger.send_to(&forged_response(0x4242, "forged.example.test.", [203, 0, 113, 66]), target).unwrap();
    });
    asked.join().unwrap();
    // An unsolicited answer from the resolver's own address and port (a raw socket writes the
    // UDP header, since dnsmasq holds the port): no query has that id, so it is never observed.
    let unsolicited_to = SocketAddr::new(client4, 40_002);
    in_netns(&net.server_ns, move || {
        let raw =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::UDP)).unwrap();
        let payload = forged_response(0x5151, "api.example.test.", [203, 0, 113, 77]);
        let mut datagram = Vec::new();
        datagram.extend_from_slice(&PORT.to_be_bytes());
        datagram.extend_from_slice(&unsolicited_to.port().to_be_bytes());
        datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        datagram.extend_from_slice(&[0, 0]); // no checksum (allowed for UDP over IPv4)
        datagram.extend_from_slice(&payload);
        raw.send_to(&datagram, &unsolicited_to.into()).unwrap();
    });
    let counters = sensor.wait_for("the spoofing verdicts", |c| {
        n(c, "untrusted_source") == 1
            && n(c, "unsolicited") == 1
            && n(c, "nxdomain") == 2
            && n(c, "kernel:not_dns_port") >= 1
    });
    assert_eq!(counters["observations"], 4, "{counters:#?}");
    // The filter works in the kernel: user space saw exactly what it passed, and nothing else.
    let kernel =
        sensor.wait_for("the kernel counters", |c| n(c, "frames") > 0 && n(c, "kernel:passed") == n(c, "frames"));
    assert_eq!(kernel["not_dns_port"], 0, "{kernel:#?}");
    assert_eq!(kernel["dns_malformed"], 0, "{kernel:#?}");

    let mut observed = sensor.stop();
    for record in &mut observed {
        let ts = record.as_object_mut().unwrap().remove("ts").unwrap();
        assert!(jiff::Timestamp::from_str(ts.as_str().unwrap()).is_ok(), "{ts}");
    }
    let expected = vec![
        observation(&net, false, "api.example.test", &[], "192.0.2.10"),
        observation(&net, true, "api.example.test", &[], "2001:db8::10"),
        observation(&net, false, "www.example.test", &["api.example.test"], "192.0.2.10"),
        observation(&net, false, "www.example.test", &["api.example.test"], "192.0.2.10"),
    ];
    assert_eq!(observed, expected);
}

#[test]
fn socket_delivery_observes_real_answers_and_drops_spoofed_ones() {
    scenario(1, "socket");
}

#[test]
fn ring_buffer_delivery_observes_the_same() {
    scenario(2, "ringbuf");
}

/// A pod with CAP_NET_RAW forges answers on a node wired as a CNI wires it (the sensor on every
/// interface of the node namespace): to its own query over L2 (a packet socket, the frame
/// addressed to the node), and to its neighbour's query over L3 (a raw IP socket, routed through
/// the node). Both claim to come from a trusted resolver and match a pending query exactly. With
/// `rp_filter` on, the kernel drops them after the sensor saw them; with it off, they reach their
/// target. Either way, the sensor learns nothing from them (`off_path`), and real answers, before
/// and after, are observed.
fn forged_from_a_pod(tag: u8, rp_filter: u8) {
    let node = Node::new(tag, rp_filter);
    let resolver = SocketAddr::new(IpAddr::V4(node.resolver_v4), PORT);
    let _dns = dnsmasq::Dnsmasq::start_in(&node.resolver_ns, resolver, &[], HOSTS, 120, &[]);
    let mut args = Vec::new();
    for trusted in [node.resolver_v4, node.silent_v4] {
        args.extend(["--trusted-resolver".to_owned(), trusted.to_string()]);
    }
    let sensor = Sensor::start_in(&node.node_ns, &args);

    let ask = |ns: &str, from: std::net::Ipv4Addr, id: u16| {
        in_netns(ns, move || {
            let reply = udp_ask(SocketAddr::new(IpAddr::V4(from), 0), resolver, id, "api.example.test.", RecordType::A);
            assert_eq!(reply.answers.len(), 1);
        });
    };
    ask(&node.a_ns, node.a_v4, 1);
    ask(&node.b_ns, node.b_v4, 2);
    sensor.wait_for("the real answers", |c| n(c, "observations") == 2);

    let silent = std::net::SocketAddrV4::new(node.silent_v4, PORT);
    let forged = forged_response(0x4242, "api.example.test.", [169, 254, 169, 254]);
    // L2: pod A asks the silent resolver, then answers itself from "the resolver".
    let (a_ns, a_v4) = (node.a_ns.clone(), node.a_v4);
    let (a_mac, node_mac) = (Node::mac(&node.a_ns, "eth0"), Node::mac(&node.node_ns, &node.node_if[0]));
    let payload = forged.clone();
    in_netns(&node.a_ns, move || {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(a_v4), 40_100)).unwrap();
        socket.send_to(&query_bytes(0x4242, "api.example.test.", RecordType::A), silent).unwrap();
    });
    sensor.wait_for("pod A's query", |c| n(c, "queries") == 3);
    in_netns(&a_ns, move || {
        let mut frame = Vec::new();
        frame.extend_from_slice(&node_mac);
        frame.extend_from_slice(&a_mac);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&netns::ipv4_udp(silent, std::net::SocketAddrV4::new(a_v4, 40_100), &payload));
        netns::send_frame("eth0", &frame);
    });
    // L3: pod B asks the silent resolver; pod A answers it, routed through the node.
    let b_v4 = node.b_v4;
    in_netns(&node.b_ns, move || {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(b_v4), 40_200)).unwrap();
        socket.send_to(&query_bytes(0x4242, "api.example.test.", RecordType::A), silent).unwrap();
    });
    sensor.wait_for("pod B's query", |c| n(c, "queries") == 4);
    let payload = forged.clone();
    in_netns(&node.a_ns, move || {
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(255)))
            .unwrap();
        let target = std::net::SocketAddrV4::new(b_v4, 40_200);
        raw.send_to(&netns::ipv4_udp(silent, target, &payload), &SocketAddr::V4(target).into()).unwrap();
    });
    // Without rp_filter each forgery also leaves the node toward its target: by then its query
    // is closed, so that copy is unsolicited.
    let expected_unsolicited = if rp_filter == 0 { 2 } else { 0 };
    let counters =
        sensor.wait_for("the forgeries", |c| n(c, "off_path") == 2 && n(c, "unsolicited") == expected_unsolicited);
    assert_eq!(counters["observations"], 2, "{counters:#?}");
    // A real answer after the forgeries is still observed.
    ask(&node.a_ns, node.a_v4, 3);
    let counters = sensor.wait_for("the last real answer", |c| n(c, "observations") == 3);
    assert_eq!((counters["off_path"], counters["unsolicited"]), (2, expected_unsolicited), "{counters:#?}");
    let observed = sensor.stop();
    let learned: Vec<(String, String)> = observed
        .iter()
        .map(|o| (o["client"]["ip"].as_str().unwrap().to_owned(), o["answers"][0]["ip"].as_str().unwrap().to_owned()))
        .collect();
    let (a, b) = (node.a_v4.to_string(), node.b_v4.to_string());
    let real = "192.0.2.10".to_owned();
    assert_eq!(learned, vec![(a.clone(), real.clone()), (b, real.clone()), (a, real)]);
}

#[test]
fn answers_forged_from_a_pod_are_not_learned_with_rp_filter() {
    forged_from_a_pod(4, 1);
}

#[test]
fn answers_forged_from_a_pod_are_not_learned_without_rp_filter() {
    forged_from_a_pod(5, 0);
}

/// Two in-process webhook replicas inside the client namespace, on 127.0.0.1 and 127.0.0.2,
/// both named `webhook.test` there (as behind a headless Service), accepting the sensor's token;
/// with `traffic`, the first counts flows into that store and the second stands by.
struct Replicas {
    runtime: tokio::runtime::Runtime,
    replicas: Vec<(portcullis_webhook::server::Running, Arc<portcullis_webhook::metrics::Metrics>)>,
    dir: std::path::PathBuf,
    etc: std::path::PathBuf,
    _leaders: Vec<tokio::sync::watch::Sender<bool>>,
}

impl Replicas {
    fn start(net: &NetPair, traffic: Option<Arc<portcullis_webhook::traffic::MemoryStore>>) -> Replicas {
        use portcullis_webhook::observations::{Ingest, LocalIntents, StaticToken};
        use portcullis_webhook::server::{self, App, Limits};
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
        let dir = std::env::temp_dir().join(format!("portcullis-sensor-e2e-{}-{}", std::process::id(), net.client_ns));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "e2e-sensor-token-0123456789").unwrap();
        portcullis_webhook::tls::install_crypto_provider();
        let certs = portcullis_webhook::tls::dev_certificates(&["webhook.test"]).unwrap();
        std::fs::write(dir.join("ca.pem"), &certs.ca_pem).unwrap();
        let user = "system:serviceaccount:portcullis-system:portcullis-sensor".to_owned();
        // Listeners opened inside the client namespace stay there, whichever thread serves them.
        let listeners = in_netns(&net.client_ns, || {
            let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let second = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
            let ops = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            vec![(first, ops()), (second, ops())]
        });
        // `ip netns exec` shows /etc/netns/NAME/hosts as /etc/hosts to the sensor.
        let etc = std::path::PathBuf::from(format!("/etc/netns/{}", net.client_ns));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n127.0.0.1 webhook.test\n127.0.0.2 webhook.test\n")
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut replicas = Vec::new();
        let mut leaders = Vec::new();
        for (i, (https, ops)) in listeners.into_iter().enumerate() {
            let metrics = Arc::new(portcullis_webhook::metrics::Metrics::new());
            let mut ingest = Ingest::new(
                Arc::new(StaticToken::from_file(&dir.join("token"), user.clone()).unwrap()),
                user.clone(),
                Arc::new(LocalIntents::load(&repo.join("testcases/sensor"), Default::default()).unwrap()),
            );
            if let Some(store) = &traffic {
                let (tx, rx) = tokio::sync::watch::channel(i == 0);
                let aggregator = Arc::new(portcullis_webhook::traffic::Aggregator::new(
                    store.clone(),
                    "portcullis-system",
                    rx,
                    Default::default(),
                    metrics.clone(),
                ));
                runtime.spawn(aggregator.clone().run(Duration::from_millis(100)));
                ingest = ingest.with_traffic(aggregator);
                leaders.push(tx);
            }
            let app = App {
                config: Arc::new(Default::default()),
                state: Arc::new(portcullis_webhook::state::StaticState::default()),
                metrics: metrics.clone(),
                timeout: Duration::from_secs(10),
                ingest: Some(Arc::new(ingest)),
                memo: Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)),
            };
            let loaded =
                portcullis_webhook::tls::server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes()).unwrap();
            let tls = axum_server::tls_rustls::RustlsConfig::from_config(loaded.config);
            let running = runtime.block_on(server::start(https, ops, app, tls, Limits::default())).unwrap();
            replicas.push((running, metrics));
        }
        Replicas { runtime, replicas, dir, etc, _leaders: leaders }
    }

    /// The sensor's arguments to report to these replicas.
    fn sensor_args(&self) -> Vec<String> {
        let url = format!("https://webhook.test:{}/v1/observations", self.replicas[0].0.https.port());
        vec![
            "--report-url".to_owned(),
            url,
            "--report-ca".to_owned(),
            self.dir.join("ca.pem").display().to_string(),
            "--report-token-file".to_owned(),
            self.dir.join("token").display().to_string(),
        ]
    }

    fn stop(self) {
        for (running, _) in self.replicas {
            self.runtime.block_on(running.shutdown()).unwrap();
        }
        let _ = std::fs::remove_dir_all(self.etc);
    }
}

/// The whole path: the sensor, attributing the client to a pod (from a pod list), reports over
/// HTTPS with a bearer token to `POST /v1/observations` of **two** webhook replicas; each feeds
/// its wildcard intent the address.
#[test]
fn reports_attributed_observations_to_the_webhook() {
    let net = NetPair::new(3);
    let _dns = dnsmasq::Dnsmasq::start_in(
        &net.server_ns,
        SocketAddr::new(net.server_ip(false), PORT),
        &[],
        HOSTS,
        120,
        &["www.example.test,api.example.test"],
    );
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let replicas = Replicas::start(&net, None);
    let mut extra = replicas.sensor_args();
    extra.extend(
        ["--report-interval-ms", "100", "--pods", &repo.join("testcases/sensor/pods.json").display().to_string()]
            .map(str::to_owned),
    );
    let sensor = Sensor::start(&net, "socket", &extra);
    let (client4, server4) = (net.client_ip(false), SocketAddr::new(net.server_ip(false), PORT));
    in_netns(&net.client_ns, move || {
        udp_ask(SocketAddr::new(client4, 0), server4, 7, "www.example.test.", RecordType::A);
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    for (running, metrics) in &replicas.replicas {
        loop {
            let text = metrics.render(Default::default());
            if text.contains("portcullis_webhook_observation_intent_updates_total 1") {
                assert!(text.contains("portcullis_webhook_observations_total{result=\"accepted\"} 1"), "{text}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never got the observation:\n{text}\n{:#?}",
                running.https,
                sensor.counters()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let observed = sensor.stop();
    assert_eq!(observed.len(), 1, "{observed:#?}");
    assert_eq!(
        observed[0]["client"],
        serde_json::json!({"ip": "10.231.3.2", "pod": {"namespace": "shop", "name": "pay-7f9c4d-x2k8q",
            "workload": "Deployment/pay", "labels": {"app": "pay", "pod-template-hash": "7f9c4d"}}})
    );
    replicas.stop();
}

/// Connection starts into the traffic history, for real: the sensor sends them with its pods to
/// both replicas; the leading one counts them and acknowledges each batch once it is written.
/// The stored history holds the pod's edges with the right counts, and the sensor's metrics
/// say every start was acknowledged as durable.
#[test]
fn connection_starts_reach_the_traffic_history_and_are_acknowledged_once_written() {
    let net = NetPair::new(9);
    let server4 = net.server_ip(false);
    let listener =
        in_netns(&net.server_ns, move || std::net::TcpListener::bind(SocketAddr::new(server4, 8443)).unwrap());
    let accepted = listener.try_clone().unwrap();
    std::thread::spawn(move || for _ in accepted.incoming() {});
    let store = Arc::new(portcullis_webhook::traffic::MemoryStore::default());
    let replicas = Replicas::start(&net, Some(store.clone()));
    let client4 = net.client_ip(false);
    let pods = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pay-7f9c4d-x2k8q", "namespace": "shop", "labels": {"app": "pay", "pod-template-hash": "7f9c4d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "pay-7f9c4d", "uid": "u1", "controller": true}]},
        "spec": {"nodeName": "test-node", "containers": [{"name": "pay", "image": "shop/pay:1.4"}]},
        "status": {"phase": "Running", "podIP": client4.to_string(), "podIPs": [{"ip": client4.to_string()}]}}]});
    std::fs::write(replicas.dir.join("pods.json"), pods.to_string()).unwrap();
    let mut extra = replicas.sensor_args();
    extra.extend(
        [
            "--flows",
            "--flow-interval-s",
            "3600",
            "--flow-report-interval-ms",
            "200",
            "--pods",
            &replicas.dir.join("pods.json").display().to_string(),
        ]
        .map(str::to_owned),
    );
    let sensor = Sensor::start(&net, "socket", &extra);
    in_netns(&net.client_ns, move || {
        for _ in 0..5 {
            drop(TcpStream::connect(SocketAddr::new(server4, 8443)).unwrap());
        }
        let refused = TcpStream::connect_timeout(&SocketAddr::new(server4, 8444), Duration::from_secs(2));
        assert!(refused.is_err());
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = replicas.runtime.block_on(async {
            use portcullis_webhook::traffic::TrafficStore;
            let mut logs = Vec::new();
            for object in store.list().await.unwrap() {
                logs.push(portcullis_webhook::traffic::decode(&object).unwrap().log);
            }
            portcullis_linter::replay::history::merge(logs)
        });
        if log.edges.iter().map(|e| e.count).sum::<u64>() >= 6 {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the history never held the connections: {log:#?}\n{:#?}",
            sensor.counters()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let edges: BTreeMap<String, u64> = log
        .edges
        .iter()
        .map(|e| (format!("{} -> {}:{}", e.source.label(), e.destination.label(), e.port), e.count))
        .collect();
    let want: BTreeMap<String, u64> =
        [(format!("shop/Deployment/pay -> {server4}:8443"), 5), (format!("shop/Deployment/pay -> {server4}:8444"), 1)]
            .into_iter()
            .collect();
    assert_eq!(edges, want);
    // The sensor heard "durable" for every start it sent (SYN-ACKs included: the aggregator
    // skips them, but they were in acknowledged batches).
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = sensor.scrape();
        if text.contains("portcullis_sensor_flows_reported_total{result=\"durable\"} 11\n") {
            break text;
        }
        assert!(Instant::now() < deadline, "not every start was acknowledged:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("portcullis_sensor_flows_reported_total{result=\"dropped\"} 0"), "{text}");
    let leader = replicas.replicas[0].1.render(Default::default());
    assert!(leader.contains("portcullis_webhook_traffic_flows_total{result=\"counted\"} 6"), "{leader}");
    let standby = replicas.replicas[1].1.render(Default::default());
    assert!(!standby.contains("traffic_flows_total{result=\"counted\"}"), "{standby}");
    drop(sensor);
    drop(listener);
    replicas.stop();
}

/// The `flow` lines of the sensor's output: (kind, protocol, source, destination).
fn flows(lines: &[serde_json::Value]) -> Vec<(String, String, SocketAddr, SocketAddr)> {
    let addr = |end: &serde_json::Value| {
        SocketAddr::new(
            end["ip"].as_str().unwrap().parse().unwrap(),
            u16::try_from(end["port"].as_u64().unwrap()).unwrap(),
        )
    };
    lines
        .iter()
        .filter_map(|l| l.get("flow"))
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["protocol"].as_str().unwrap().to_owned(),
                addr(&f["source"]),
                addr(&f["destination"]),
            )
        })
        .collect()
}

/// Connection starts, for real: TCP connects over IPv4 and IPv6 (a SYN each, and the server's
/// SYN-ACK), a refused connect (a SYN and no SYN-ACK), UDP datagrams (one record per 5-tuple
/// within the interval), and megabytes over an established connection that cost user space
/// nothing.
#[test]
fn connection_starts_are_reported_once_and_established_traffic_is_not() {
    let net = NetPair::new(6);
    let (server4, server6) = (net.server_ip(false), net.server_ip(true));
    // The server: a TCP listener on both families (accepting and draining), a UDP socket.
    let listeners = in_netns(&net.server_ns, move || {
        let l4 = std::net::TcpListener::bind(SocketAddr::new(server4, 8443)).unwrap();
        let l6 = std::net::TcpListener::bind(SocketAddr::new(server6, 8443)).unwrap();
        let udp = UdpSocket::bind(SocketAddr::new(server4, 9000)).unwrap();
        (l4, l6, udp)
    });
    for listener in [listeners.0.try_clone().unwrap(), listeners.1.try_clone().unwrap()] {
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                std::thread::spawn(move || std::io::copy(&mut stream, &mut std::io::sink()));
            }
        });
    }
    let sensor = Sensor::start(&net, "socket", &["--flows".into(), "--flow-interval-s".into(), "3600".into()]);
    let (client4, client6) = (net.client_ip(false), net.client_ip(true));
    let sources = in_netns(&net.client_ns, move || {
        let mut sources = Vec::new();
        for _ in 0..3 {
            let s = TcpStream::connect(SocketAddr::new(server4, 8443)).unwrap();
            sources.push(s.local_addr().unwrap());
        }
        let s6 = TcpStream::connect(SocketAddr::new(server6, 8443)).unwrap();
        sources.push(s6.local_addr().unwrap());
        // Nothing listens on 8444: the server's kernel answers the SYN with a RST.
        let refused = std::net::TcpStream::connect_timeout(&SocketAddr::new(server4, 8444), Duration::from_secs(2));
        assert!(refused.is_err());
        // Two UDP sockets, five datagrams each.
        for _ in 0..2 {
            let u = UdpSocket::bind(SocketAddr::new(client4, 0)).unwrap();
            for _ in 0..5 {
                u.send_to(b"ping", SocketAddr::new(server4, 9000)).unwrap();
            }
            sources.push(u.local_addr().unwrap());
        }
        // 8 MiB over one established connection.
        let mut bulk = TcpStream::connect(SocketAddr::new(server4, 8443)).unwrap();
        sources.push(bulk.local_addr().unwrap());
        let chunk = vec![7u8; 64 << 10];
        for _ in 0..128 {
            bulk.write_all(&chunk).unwrap();
        }
        sources
    });
    // 5 SYNs and 5 SYN-ACKs (4 connects + the bulk one), 1 refused SYN, 2 datagrams.
    let counters = sensor.wait_for("13 connection starts, in user space and in the kernel's counters", |c| {
        c.get("flows").copied().unwrap_or(0) >= 13 && c.get("kernel:flow_reported").copied().unwrap_or(0) >= 13
    });
    assert_eq!(counters["kernel:flow_ringbuf_full"], 0);
    let lines = sensor.stop();
    let got = flows(&lines);
    let mut want: Vec<(String, String, SocketAddr, SocketAddr)> = Vec::new();
    let tcp_sources = [&sources[0..4], &sources[6..7]].concat();
    for s in &tcp_sources {
        let server = SocketAddr::new(if s.is_ipv6() { server6 } else { server4 }, 8443);
        want.push(("syn".into(), "TCP".into(), *s, server));
        want.push(("synAck".into(), "TCP".into(), server, *s));
    }
    for u in &sources[4..6] {
        want.push(("datagram".into(), "UDP".into(), *u, SocketAddr::new(server4, 9000)));
    }
    let refused: Vec<_> = got.iter().filter(|f| f.3.port() == 8444 || f.2.port() == 8444).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "syn");
    assert_eq!(refused[0].2.ip(), client4);
    let mut rest: Vec<_> = got.into_iter().filter(|f| f.3.port() != 8444 && f.2.port() != 8444).collect();
    rest.sort();
    want.sort();
    assert_eq!(rest, want);
    // The 8 MiB and the repeated datagrams were seen by the kernel and reported as nothing.
    assert_eq!(counters["kernel:flow_reported"], 13);
    assert!(counters["kernel:flow_repeated"] >= 8, "{counters:#?}");
    // What `portcullis map --format traffic` makes of these lines: one edge per destination and
    // port, a SYN and its SYN-ACK counted as one connection.
    let text: Vec<String> = lines.iter().map(serde_json::Value::to_string).collect();
    let (log, problems) = portcullis_linter::replay::traffic_from_records(&text.join("\n"));
    assert!(problems.is_empty(), "{problems:?}");
    let edges: BTreeMap<String, u64> = log
        .edges
        .iter()
        .map(|e| {
            (format!("{} -> {} {}/{}", e.source.label(), e.destination.label(), e.port, e.protocol.as_str()), e.count)
        })
        .collect();
    let want: BTreeMap<String, u64> = [
        (format!("{client4} -> {server4} 8443/TCP"), 4),
        (format!("{client6} -> {server6} 8443/TCP"), 1),
        (format!("{client4} -> {server4} 8444/TCP"), 1),
        (format!("{client4} -> {server4} 9000/UDP"), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(edges, want);
    drop(listeners);
}

/// A burst of new 5-tuples larger than the kernel's table: every one reported, none lost, and
/// the evicted ones reported again when they come back.
#[test]
fn a_burst_larger_than_the_lru_loses_nothing() {
    let net = NetPair::new(7);
    let server = SocketAddr::new(net.server_ip(false), 9000);
    let sink = in_netns(&net.server_ns, move || UdpSocket::bind(server).unwrap());
    let sensor = Sensor::start(
        &net,
        "socket",
        &["--flows".into(), "--flow-interval-s".into(), "3600".into(), "--flow-entries".into(), "1024".into()],
    );
    let client = net.client_ip(false);
    in_netns(&net.client_ns, move || {
        for port in (20_000..23_000).chain(20_000..20_100) {
            let u = UdpSocket::bind(SocketAddr::new(client, port)).unwrap();
            u.send_to(b"x", server).unwrap();
        }
    });
    // Every one of the 3,100 datagrams is either reported or a repeat the map still held. The
    // kernel's LRU hash evicts approximately (per-CPU free lists), not strictly oldest first:
    // most of the 100 resent 5-tuples were evicted by the 3,000 that followed them and are
    // reported again, a few may still be held; either is right, losing one is not.
    let seen = |c: &std::collections::BTreeMap<String, u64>| {
        c.get("kernel:flow_reported").copied().unwrap_or(0) + c.get("kernel:flow_repeated").copied().unwrap_or(0)
    };
    let counters = sensor.wait_for("3,100 datagrams seen by the kernel, and all it reported in user space", |c| {
        seen(c) >= 3_100 && c.get("flows") == c.get("kernel:flow_reported")
    });
    assert_eq!(counters["kernel:flow_ringbuf_full"], 0);
    let reported = counters["kernel:flow_reported"];
    assert!(reported > 3_000, "the map (1,024 entries) never evicted: {reported} reported");
    let lines = sensor.stop();
    let got = flows(&lines);
    let to_sink: Vec<_> = got.iter().filter(|f| f.3 == server).collect();
    assert_eq!(to_sink.len() as u64, reported);
    let distinct: std::collections::BTreeSet<u16> = to_sink.iter().map(|f| f.2.port()).collect();
    assert_eq!(distinct.len(), 3_000, "every new 5-tuple reported");
    drop(sink);
}
