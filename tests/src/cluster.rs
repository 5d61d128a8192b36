//! Replication tests' parts: a real 3-server NATS JetStream cluster on loopback ports, and
//! `junctiond` nodes (primary, standby) sharing its journal stream.

use crate::{binary, demo_config};
use junctiond::config::{ClusterConfig, Config, ReplicationConfig};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Three `nats-server` processes with JetStream, clustered.
pub struct NatsCluster {
    pub dir: PathBuf,
    pub client_ports: Vec<u16>,
    cluster_ports: Vec<u16>,
    servers: Vec<Option<Child>>,
}

impl NatsCluster {
    pub fn start(dir: &Path) -> NatsCluster {
        NatsCluster::start_with(dir, 3)
    }

    /// `servers` servers: 3 (a cluster) or 1 (a lone server, for replicas = 1).
    pub fn start_with(dir: &Path, servers: usize) -> NatsCluster {
        std::fs::create_dir_all(dir).expect("a folder for the NATS servers");
        let client_ports: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let mut cluster = NatsCluster { dir: dir.to_path_buf(), client_ports, cluster_ports, servers: Vec::new() };
        for index in 0..servers {
            let child = cluster.spawn(index);
            cluster.servers.push(Some(child));
        }
        cluster.wait_until_serving();
        cluster
    }

    fn spawn(&self, index: usize) -> Child {
        let routes: Vec<String> = self.cluster_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut config = format!(
            "port: {}\nserver_name: n{index}\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
            self.client_ports[index],
            self.dir.join(format!("store-{index}")).display(),
        );
        if self.client_ports.len() > 1 {
            config.push_str(&format!(
                "cluster {{ name: junction, port: {}, routes: [{}] }}\n",
                self.cluster_ports[index],
                routes.join(", ")
            ));
        }
        let path = self.dir.join(format!("n{index}.conf"));
        std::fs::write(&path, config).expect("writing a NATS config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{index}.log")))
            .expect("a NATS log");
        Command::new("nats-server")
            .args(["-c", path.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting nats-server (Debian package nats-server; scripts/install-deps.sh installs it)")
    }

    /// Waits until every running server accepts connections and JetStream has a leader.
    fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (index, port) in self.client_ports.iter().enumerate() {
            if self.servers.get(index).is_some_and(Option::is_none) {
                continue;
            }
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server on port {port} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let log = self.dir.join("n0.log");
        if self.client_ports.len() == 1 {
            return;
        }
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("JetStream cluster new metadata leader")
            && !std::fs::read_to_string(self.dir.join("n1.log")).unwrap_or_default().contains("new metadata leader")
            && !std::fs::read_to_string(self.dir.join("n2.log")).unwrap_or_default().contains("new metadata leader")
        {
            assert!(Instant::now() < deadline, "the NATS cluster elected no JetStream leader; see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.client_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect()
    }

    /// kill -9 of one server.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.servers[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on its store.
    pub fn restart(&mut self, index: usize) {
        if self.servers[index].is_none() {
            self.servers[index] = Some(self.spawn(index));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.servers.len() {
            self.kill(index);
        }
    }
}

/// The demo configuration with replication on `cluster`, and fixed ports for `node`.
pub fn replicated_config(cluster: &NatsCluster, lease_ms: u64) -> Config {
    let mut config = demo_config();
    config.replication = Some(ReplicationConfig {
        nats_urls: cluster.urls(),
        node: "unnamed".into(),
        stream: "JUNCTION".into(),
        replicas: cluster.client_ports.len(),
        lease_ms,
    });
    config
}

/// `config` as partition `partition` of a partitioned switch on `cluster`: its own journal
/// stream, and the map seeded with `seed` (participant -> partition).
pub fn partition_config(mut config: Config, cluster: &NatsCluster, partition: &str, seed: &[(u64, &str)]) -> Config {
    config.replication = Some(ReplicationConfig {
        nats_urls: cluster.urls(),
        node: partition.into(),
        stream: format!("JUNCTION_{}", partition.to_uppercase()),
        replicas: cluster.client_ports.len(),
        lease_ms: 2_000,
    });
    config.cluster = Some(ClusterConfig {
        partition: partition.into(),
        map_bucket: "junction_partitions".into(),
        request_timeout_ms: 5_000,
        moved_lookback_s: 86_400,
        seed: seed.iter().map(|(participant, partition)| (participant.to_string(), partition.to_string())).collect(),
    });
    config
}

/// One replicated `junctiond`: its addresses are fixed when made, so that clients know
/// the standby's before it serves.
pub struct Node {
    pub name: String,
    pub iso: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    config: PathBuf,
    pub child: Option<Child>,
    ready: Option<mpsc::Receiver<String>>,
}

impl Node {
    pub fn new(dir: &Path, name: &str, config: &Config) -> Node {
        let config_path = dir.join(format!("{name}.toml"));
        let node = Node {
            name: name.into(),
            iso: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            config: config_path,
            child: None,
            ready: None,
        };
        node.configure(config);
        node
    }

    /// Writes the configuration it starts with next time.
    pub fn configure(&self, config: &Config) {
        std::fs::write(&self.config, config.to_toml()).expect("writing the config");
    }

    /// Starts the process (as a standby with `standby`); returns at once.
    pub fn start(&mut self, standby: bool) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("a node log");
        let mut command = Command::new(binary("junctiond"));
        command
            .args(["--config", self.config.to_str().expect("utf-8")])
            .args(["--data-dir", self.data_dir.to_str().expect("utf-8")])
            .args(["--iso8583-listen", &self.iso.to_string(), "--http-listen", &self.http.to_string()])
            .args(["--node", &self.name])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if standby {
            command.arg("--standby");
        }
        let mut child = command.spawn().expect("starting junctiond");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("junctiond ready") {
                    let _ = sender.send(line.clone());
                }
            }
        });
        self.child = Some(child);
        self.ready = Some(receiver);
    }

    /// Waits until it serves as the primary (its "ready" line).
    pub fn wait_primary(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let receiver = self.ready.as_ref().expect("started");
        receiver.recv_timeout(within).unwrap_or_else(|_| {
            // The folder goes with the test: what the node said comes with the failure.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "node {} did not become primary within {within:?}; the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            )
        });
        started.elapsed()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status =
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Its exit status if it has ended within `within`.
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until it reports itself a standby that has applied the whole stream.
    pub fn wait_caught_up_standby(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(status) = std::panic::catch_unwind(|| self.status()) {
                let replication = &status["replication"];
                if replication["role"] == "standby"
                    && replication["lag"] == 0
                    && replication["stream_seq"].as_u64() > Some(0)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not catch up as a standby; see {}",
                self.name,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The standby's status, which needs no token (a primary's does: see `admin/status`).
    pub fn status(&self) -> serde_json::Value {
        let url = format!("http://{}/v1/admin/status", self.http);
        crate::http_agent().get(&url).call().expect("GET status").body_mut().read_json().expect("JSON")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
