//! Runs one of the Python scenario scripts in `tests/clients/python` (the
//! MQTT ones print `ok <name>` / `FAIL <name>: <why>` per scenario and end
//! with `N passed, M failed`, see `mqtt_support.py`) and fails the test
//! with the script's whole output unless at least one scenario ran and
//! every one passed. Shared by the `compat_mqtt*` test files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A script that hangs is killed after this long (its own scenarios time
/// out after 20-30 s each; this bounds the whole run).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// The path of `tests/clients/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/python")
        .join(name)
}

/// Runs `python3 <script> <args...>` with `env` added, and asserts its
/// scenarios all passed. `what` names the run in the failure message
/// (mode, server, ports).
pub async fn run(
    script: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    what: String,
) {
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(&args)
        .envs(env)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn python3 (install Python 3)");
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if started.elapsed() > SCRIPT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        )
    })
    .await
    .expect("script runner");
    let report = format!(
        "{} {what}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        script.display()
    );
    let status = status.unwrap_or_else(|| panic!("timed out and was killed\n{report}"));
    assert_ne!(
        status.code(),
        Some(3),
        "paho-mqtt or nats-py is not installed: run `bash scripts/test.sh` \
         (pip install -r tests/clients/python/requirements.txt)\n{report}"
    );
    assert!(status.success(), "exited with {status}\n{report}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .ends_with(" 0 failed")
            && !stdout.starts_with("0 passed"),
        "{report}"
    );
}
