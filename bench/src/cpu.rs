//! Server CPU time for `compare`, read from `/proc`.
//!
//! A server is started in its own process group (see the `servers` module),
//! so its CPU time is the sum over the processes of that group of `utime +
//! stime` from `/proc/<pid>/stat` (all threads, including exited ones), plus
//! `cutime + cstime` (children that have exited and been reaped). For a
//! server started directly that is the server process's own `utime +
//! stime`; a wrapper (a script, `cargo run`) adds the server it started.
//!
//! The kernel counts these in clock ticks (`getconf CLK_TCK`, 100 per second
//! on Linux): a reading is exact only to one tick, 10 ms.

use std::sync::OnceLock;

use crate::Result;
use crate::workloads::Marks;

/// Ticks per second when `getconf CLK_TCK` cannot be run (Linux's `USER_HZ`).
const DEFAULT_CLK_TCK: u64 = 100;
/// A run whose server used fewer ticks than this is marked coarse (`~`):
/// the ±1 tick of each of its two readings is over 10% of the whole.
pub const COARSE_TICKS: u64 = 20;

/// The CPU-time fields of one `/proc/<pid>/stat` line that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// Process group id (field 5).
    pub pgrp: u32,
    /// User and system time of the process (fields 14 and 15), in ticks.
    pub utime: u64,
    pub stime: u64,
    /// User and system time of its waited-for children (fields 16 and 17).
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    /// Everything this process and its reaped children have run, in ticks.
    pub fn ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`. The command
/// name may contain spaces and `)`, so the fields are counted from the
/// *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    // Field 3 (state) is the first after the command name.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let unsigned = |n: usize| field(n)?.parse::<u64>().ok();
    // cutime and cstime are signed in the kernel's format (`%ld`).
    let signed = |n: usize| {
        field(n)?
            .parse::<i64>()
            .ok()
            .map(|v| u64::try_from(v).unwrap_or(0))
    };
    Some(ProcStat {
        pid,
        pgrp: field(5)?.parse().ok()?,
        utime: unsigned(14)?,
        stime: unsigned(15)?,
        cutime: signed(16)?,
        cstime: signed(17)?,
    })
}

/// CPU ticks used so far by the process group `pgid` (the sum of
/// [`ProcStat::ticks`] over its processes). Fails when the group's leader
/// (the server process) is gone.
pub fn group_ticks(pgid: u32) -> Result<u64> {
    let leader = std::fs::read_to_string(format!("/proc/{pgid}/stat"))
        .map_err(|err| format!("reading /proc/{pgid}/stat: {err}"))?;
    let leader = parse_stat(&leader).ok_or_else(|| format!("cannot parse /proc/{pgid}/stat"))?;
    let mut ticks = leader.ticks();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == pgid {
            continue;
        }
        // A process may exit between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text).filter(|stat| stat.pgrp == pgid) {
            ticks += stat.ticks();
        }
    }
    Ok(ticks)
}

/// CPU ticks used so far by this process (the bench: its client
/// connections and tasks, all threads).
pub fn own_ticks() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/self/stat")
        .map_err(|err| format!("reading /proc/self/stat: {err}"))?;
    let stat = parse_stat(&text).ok_or("cannot parse /proc/self/stat")?;
    Ok(stat.utime + stat.stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, asked once; 100 if that fails).
pub fn clock_ticks_per_sec() -> u64 {
    static CLK_TCK: OnceLock<u64> = OnceLock::new();
    *CLK_TCK.get_or_init(|| {
        let asked = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&ticks: &u64| ticks > 0);
        asked.unwrap_or_else(|| {
            eprintln!(
                "warning: `getconf CLK_TCK` failed; assuming {DEFAULT_CLK_TCK} clock ticks per second"
            );
            DEFAULT_CLK_TCK
        })
    })
}

/// Ticks to milliseconds.
pub fn ticks_ms(ticks: u64, clk_tck: u64) -> f64 {
    ticks as f64 * 1000.0 / clk_tck.max(1) as f64
}

/// Milliseconds of CPU per million messages: `ticks` spent on `delivered`
/// messages. `None` when nothing was delivered.
pub fn ms_per_million(ticks: u64, clk_tck: u64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| ticks_ms(ticks, clk_tck) * 1_000_000.0 / delivered as f64)
}

/// The server's CPU ticks at the start and end of a run's measured phase
/// (see [`Marks`]), and the bench's own (the client's) and the wall time
/// between the same marks, which tell whether the client or the server
/// was the busier side.
pub struct CpuWindow {
    pgid: u32,
    clk_tck: u64,
    start: Option<u64>,
    end: Option<u64>,
    client_start: Option<u64>,
    client_end: Option<u64>,
    wall_start: Option<std::time::Instant>,
    wall: Option<std::time::Duration>,
    error: Option<String>,
}

impl CpuWindow {
    /// A window on the process group `pgid` (the server's pid).
    pub fn new(pgid: u32, clk_tck: u64) -> Self {
        CpuWindow {
            pgid,
            clk_tck,
            start: None,
            end: None,
            client_start: None,
            client_end: None,
            wall_start: None,
            wall: None,
            error: None,
        }
    }

    fn read(&mut self) -> Option<u64> {
        match group_ticks(self.pgid) {
            Ok(ticks) => Some(ticks),
            Err(err) => {
                self.error.get_or_insert_with(|| err.to_string());
                None
            }
        }
    }

    fn read_own(&mut self) -> Option<u64> {
        match own_ticks() {
            Ok(ticks) => Some(ticks),
            Err(err) => {
                self.error.get_or_insert_with(|| err.to_string());
                None
            }
        }
    }

    /// Ticks between the two marks; `None` if either is missing or unread.
    pub fn ticks(&self) -> Option<u64> {
        self.end?.checked_sub(self.start?)
    }

    /// The bench process's own ticks between the two marks.
    pub fn client_ticks(&self) -> Option<u64> {
        self.client_end?.checked_sub(self.client_start?)
    }

    /// Wall time between the two marks, in milliseconds.
    pub fn wall_ms(&self) -> Option<f64> {
        self.wall.map(|d| d.as_secs_f64() * 1000.0)
    }
}

impl Marks for CpuWindow {
    fn start(&mut self) {
        self.start = self.read();
        self.client_start = self.read_own();
        self.end = None;
        self.client_end = None;
        self.wall = None;
        self.wall_start = Some(std::time::Instant::now());
    }

    fn end(&mut self) {
        self.wall = self.wall_start.map(|at| at.elapsed());
        self.end = self.read();
        self.client_end = self.read_own();
    }

    fn note(&self) -> String {
        match (self.ticks(), &self.error) {
            (Some(ticks), _) => format!(", server CPU {:.0} ms", ticks_ms(ticks, self.clk_tck)),
            (None, Some(err)) => format!(", server CPU unknown: {err}"),
            (None, None) => {
                ", server CPU unknown: the run did not mark its measured phase".to_string()
            }
        }
    }
}

/// `nats-bench run` with `NATS_BENCH_PERF_CTL=<fifo>`: writes `enable` and
/// `disable` to a `perf record --control fifo:<fifo> -D -1` control FIFO at
/// the measured phase's marks, so that a profile covers only that phase
/// (not the connecting, stream creation or untimed pre-publishing).
pub struct PerfControl {
    fifo: std::ffi::OsString,
}

impl PerfControl {
    /// Control through the FIFO at `fifo`.
    pub fn new(fifo: std::ffi::OsString) -> Self {
        PerfControl { fifo }
    }

    fn send(&self, command: &str) {
        use std::io::Write;
        let sent = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .and_then(|mut f| f.write_all(command.as_bytes()));
        if let Err(err) = sent {
            eprintln!("warning: perf control {command:?}: {err}");
        }
    }
}

impl Marks for PerfControl {
    fn start(&mut self) {
        self.send("enable\n");
    }

    fn end(&mut self) {
        self.send("disable\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line (Linux 6.x, nats-server), fields 1-17 and a few more.
    const NATS: &str = "4242 (nats-server) S 1 4242 4242 0 -1 4194560 2133 0 0 0 \
                        371 129 5 7 20 0 8 0 123456 1258291200 3602 18446744073709551615";

    #[test]
    fn parses_a_stat_line() {
        let stat = parse_stat(NATS).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                pgrp: 4242,
                utime: 371,
                stime: 129,
                cutime: 5,
                cstime: 7,
            }
        );
        assert_eq!(stat.ticks(), 512);
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        let line = "77 (a) b ) (c)) R 1 70 70 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.pid, stat.pgrp), (77, 70));
        assert_eq!((stat.utime, stat.stime), (10, 20));
        let line = "78 (x y z) S 1 78 78 0 -1 0 0 0 0 0 3 4 -1 0 20";
        let stat = parse_stat(line).unwrap();
        // A negative child time (the kernel prints it signed) reads as 0.
        assert_eq!((stat.cutime, stat.cstime, stat.ticks()), (0, 0, 7));
        // A command that is only `)` and spaces.
        let line = "79 () ) S 1 79 79 0 -1 0 0 0 0 0 1 2 0 0";
        assert_eq!(parse_stat(line).unwrap().ticks(), 3);
    }

    #[test]
    fn malformed_stat_lines_are_rejected() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 nats-server S 1 12"), None);
        assert_eq!(parse_stat(") 12 (x S"), None);
        assert_eq!(parse_stat("x (a) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0"), None);
        // Cut short before cstime.
        assert_eq!(parse_stat("12 (a) S 1 1 1 0 -1 0 0 0 0 0 1 2 0"), None);
        assert_eq!(parse_stat("12 (a) S 1 1 1 0 -1 0 0 0 0 0 x 2 0 0"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let stat = parse_stat(&me).unwrap();
        assert_eq!(stat.pid, std::process::id());
        // Read later, so at least as much; more only if this process leads
        // a group with other members.
        assert!(group_ticks(stat.pid).unwrap() >= stat.ticks());
        assert!(group_ticks(u32::MAX).is_err());
        assert!(clock_ticks_per_sec() > 0);
    }

    #[test]
    fn per_million_figures() {
        assert_eq!(ticks_ms(25, 100), 250.0);
        assert_eq!(ticks_ms(25, 1000), 25.0);
        // 50 ticks (500 ms) for 200,000 messages: 2,500 ms per million.
        assert_eq!(ms_per_million(50, 100, 200_000), Some(2_500.0));
        assert_eq!(ms_per_million(0, 100, 10), Some(0.0));
        assert_eq!(ms_per_million(50, 100, 0), None);
    }

    #[test]
    fn window_needs_both_marks() {
        let mut window = CpuWindow::new(std::process::id(), 100);
        assert_eq!(window.ticks(), None);
        assert!(window.note().contains("did not mark"));
        window.start = Some(10);
        window.end = Some(35);
        assert_eq!(window.ticks(), Some(25));
        assert_eq!(window.note(), ", server CPU 250 ms");
        window.end = Some(5);
        assert_eq!(window.ticks(), None);
    }
}
