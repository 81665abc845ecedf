//! Our server binary as a child process, for the tests that SIGKILL it
//! (`crash*.rs`, the restart tests of `compat_js_messages.rs` and
//! `compat_js_schedule.rs`): started on a free port with JetStream in a
//! store directory, its log in a file, ready once the log says so.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-nats-server");

/// A server child process; SIGKILLed when dropped.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL (`Child::kill` sends SIGKILL on unix) and reap.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts the binary on `store` without waiting for it; its log goes to `log`.
pub fn spawn(store: &Path, log: &Path) -> Child {
    spawn_with(store, log, &[])
}

/// [`spawn`] with more command-line arguments (e.g. `-c <config>`).
pub fn spawn_with(store: &Path, log: &Path, extra: &[&str]) -> Child {
    let _ = std::fs::remove_file(log);
    Command::new(BIN)
        .args(extra)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(store)
        .arg("-l")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server binary")
}

/// Starts the binary on `store` and waits for "Server is ready".
pub fn start(store: &Path, log: &Path) -> Server {
    start_with(store, log, &[])
}

/// [`start`] with more command-line arguments (e.g. `-c <config>`).
pub fn start_with(store: &Path, log: &Path, extra: &[&str]) -> Server {
    let mut child = spawn_with(store, log, extra);
    // Only bounds a hang: a loaded machine can take many seconds to start
    // the binary and recover its store.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Server is ready")
            && let Some(addr) = text
                .lines()
                .find_map(|l| l.split("Listening for client connections on ").nth(1))
        {
            return Server {
                child,
                log: log.to_owned(),
                url: format!("nats://{}", addr.trim()),
            };
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the server exited ({status}) before it was ready; log:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the server was not ready in time; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The segment files of `stream` (account `$G`), oldest first.
pub fn segments(store: &Path, stream: &str) -> Vec<PathBuf> {
    let dir = stream_dir(store, stream).join("msgs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// The directory of `stream` (account `$G`) in a store.
pub fn stream_dir(store: &Path, stream: &str) -> PathBuf {
    store
        .join("jetstream")
        .join("$G")
        .join("streams")
        .join(stream)
}
