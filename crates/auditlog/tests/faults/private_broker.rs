//! A RabbitMQ node of the test's own, to restart without disturbing other tests.

use super::*;

/// A RabbitMQ node of the test's own: its own node name, ports, database and logs
/// in a temporary directory, no plugins. Restarting it disturbs no other test (they
/// use the machine's broker). Dropping it stops the node and removes its files,
/// also when the test fails.
pub(crate) struct PrivateBroker {
    node: String,
    port: u16,
    home: tempfile::TempDir,
    server: Option<Child>,
}

impl PrivateBroker {
    pub(crate) fn start() -> PrivateBroker {
        let home = tempfile::tempdir().unwrap();
        let node = format!(
            "auditlog-test-{}@localhost",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let (port, dist_port) = (free_port(), free_port());
        for (file, text) in [
            // Empty: nothing of the machine's broker configuration (its node name
            // and port) applies to this node.
            ("rabbitmq-env.conf", ""),
            ("rabbitmq.conf", ""),
            ("enabled_plugins", "[]."),
        ] {
            std::fs::write(home.path().join(file), text).unwrap();
        }
        let log = std::fs::File::create(home.path().join("server.out")).unwrap();
        let server = Command::new(rabbitmq_tool("rabbitmq-server"))
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_CONF_ENV_FILE",
                home.path().join("rabbitmq-env.conf"),
            )
            .env("RABBITMQ_CONFIG_FILE", home.path().join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                home.path().join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", home.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.path().join("log"))
            .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server starts (install rabbitmq-server)");
        let broker = PrivateBroker {
            node,
            port,
            home,
            server: Some(server),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !broker.ctl(&["await_startup", "--timeout", "5"]) {
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ node did not start; see {}",
                broker.home.path().join("server.out").display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        broker
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl` against this node; whether it succeeded.
    pub(crate) fn ctl(&self, args: &[&str]) -> bool {
        Command::new(rabbitmq_tool("rabbitmqctl"))
            .args(["-q", "-n", &self.node])
            .args(args)
            .env("HOME", self.home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl PrivateBroker {
    /// Messages in `queue`, ready or delivered and not yet acknowledged.
    pub(crate) fn queue_messages(&self, queue: &str) -> u64 {
        let output = Command::new(rabbitmq_tool("rabbitmqctl"))
            .args(["-q", "-n", &self.node, "list_queues", "name", "messages"])
            .env("HOME", self.home.path())
            .output()
            .expect("rabbitmqctl runs");
        messages_of(&String::from_utf8_lossy(&output.stdout), queue).unwrap_or(0)
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process this test started.
pub(crate) fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIG{signal} to {pid}");
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // `stop` halts the node; its start script then ends too.
        self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "the private RabbitMQ node {} did not stop; killing it",
            self.node
        );
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// A port free now, below the kernel's range for outgoing connections (so that
/// none takes it before the broker listens) and outside 35672-35682, where
/// `rabbitmqctl` itself listens while it runs.
fn free_port() -> u16 {
    loop {
        let candidate = 20_000 + (uuid::Uuid::now_v7().as_u128() % 12_000) as u16;
        if (35_672..=35_682).contains(&candidate) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            return candidate;
        }
    }
}

/// A RabbitMQ command: Debian's `/usr/sbin` wrappers switch to the `rabbitmq` user,
/// who cannot write the test's directory, so the real scripts are used when there.
fn rabbitmq_tool(name: &str) -> String {
    let debian = format!("/usr/lib/rabbitmq/bin/{name}");
    if Path::new(&debian).exists() {
        debian
    } else {
        name.to_owned()
    }
}
