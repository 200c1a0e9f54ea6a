//! A real DNS server for tests: dnsmasq on 127.0.0.1 at a free port, answering from a hosts
//! file the test rewrites (SIGHUP reloads it), with a TTL the test picks and CNAME chains from
//! its configuration. Names under `example.test` that are not in the hosts file are NXDOMAIN.
//! Also used by the webhook's controller tests and, inside a network namespace, by the sensor's
//! eBPF tests (included by path).
#![allow(dead_code)] // each including test uses a part

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    child: Option<Child>,
    dir: PathBuf,
    pub addr: SocketAddr,
    cnames: Vec<String>,
    /// Network namespace to run in (`ip netns exec`), and more addresses to listen on there.
    netns: Option<String>,
    also: Vec<IpAddr>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Dnsmasq {
    /// Starts dnsmasq answering `hosts` (hosts-file text) with `ttl`; `cnames` are dnsmasq
    /// `cname=` values such as `"www.example.test,host.example.test"`.
    pub fn start(name: &str, hosts: &str, ttl: u32, cnames: &[&str]) -> Dnsmasq {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], free_port())), None, &[], hosts, ttl, cnames)
    }

    /// Starts dnsmasq inside the network namespace `netns`, listening on `addr` and `also`.
    pub fn start_in(netns: &str, addr: SocketAddr, also: &[IpAddr], hosts: &str, ttl: u32, cnames: &[&str]) -> Dnsmasq {
        Self::start_at(netns, addr, Some(netns), also, hosts, ttl, cnames)
    }

    fn start_at(
        name: &str,
        addr: SocketAddr,
        netns: Option<&str>,
        also: &[IpAddr],
        hosts: &str,
        ttl: u32,
        cnames: &[&str],
    ) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!("portcullis-dnsmasq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        let mut server = Dnsmasq {
            child: None,
            dir,
            addr,
            cnames: cnames.iter().map(|c| (*c).to_owned()).collect(),
            netns: netns.map(str::to_owned),
            also: also.to_vec(),
        };
        server.spawn(ttl);
        server
    }

    fn spawn(&mut self, ttl: u32) {
        let mut conf = format!(
            "port={}\nlisten-address={}\nbind-interfaces\nno-resolv\nno-hosts\naddn-hosts={}\nlocal-ttl={ttl}\nlocal=/example.test/\n",
            self.addr.port(),
            self.addr.ip(),
            self.dir.join("hosts").display()
        );
        for ip in &self.also {
            conf.push_str(&format!("listen-address={ip}\n"));
        }
        for c in &self.cnames {
            conf.push_str(&format!("cname={c}\n"));
        }
        let path = self.dir.join("dnsmasq.conf");
        std::fs::write(&path, conf).unwrap();
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "dnsmasq"]);
                command
            }
            None => Command::new("dnsmasq"),
        };
        let child = command
            .args(["--keep-in-foreground", "--pid-file=", "--user=root"])
            .arg(format!("--conf-file={}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "dnsmasq is required for the DNS tests: `.ci/setup-tools` installs it (apt-get install dnsmasq-base)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.listening() {
            assert!(Instant::now() < deadline, "dnsmasq did not start on {}", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn listening(&self) -> bool {
        match &self.netns {
            None => TcpStream::connect(self.addr).is_ok(),
            // Not reachable from this namespace: ask the namespace's socket table.
            Some(netns) => Command::new("ip")
                .args(["netns", "exec", netns, "ss", "-Hltn"])
                .arg(format!("sport = :{}", self.addr.port()))
                .output()
                .is_ok_and(|out| !out.stdout.is_empty()),
        }
    }

    /// Replaces the hosts file and makes dnsmasq reload it.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.join("hosts"), hosts).unwrap();
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }

    /// Stops the server: lookups fail from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the server on the same port with another TTL.
    pub fn restart(&mut self, ttl: u32) {
        self.stop();
        self.spawn(ttl);
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
