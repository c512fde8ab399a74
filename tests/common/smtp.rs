//! The scriptable SMTP server (tests/smtp/smtp_server.py, aiosmtpd) as a child process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct SmtpServer {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The Python with aiosmtpd that `scripts/test.sh` prepares. Tests fail without it rather
/// than pass without having run.
pub fn python() -> String {
    std::env::var("FINREP_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("FINREP_TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes a venv with aiosmtpd")
    })
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl SmtpServer {
    pub fn start(rules: serde_json::Value) -> Self {
        Self::start_on(free_port(), rules)
    }

    pub fn start_on(port: u16, rules: serde_json::Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("messages.jsonl");
        let rules_path = dir.path().join("rules.json");
        std::fs::write(&rules_path, rules.to_string()).expect("rules");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/smtp_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .arg("--rules")
            .arg(&rules_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready", "SMTP server did not start");
        Self {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    /// Every accepted message, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The file the server records accepted messages in, a JSON line each.
    pub fn messages_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Copies accepted for one address.
    pub fn copies_for(&self, email: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| {
                m["rcpt"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|a| a.as_str() == Some(email)))
            })
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages recorded in a server's log so far (cheap enough to ask every 100 ms).
pub fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}
