//! What `imgate load` measures and how it reports it: failures by kind, latency samples and their
//! percentiles, and the server's and the machine's CPU and memory from `/proc`.

use super::*;

/// Counts failures by kind (`connect: ConnectionRefused`, `code 70001`, `timeout`, ...).
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub(crate) fn add(&self, kind: impl Into<String>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(kind.into()).or_default() += 1;
    }
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Latency samples in microseconds.
#[derive(Debug, Default)]
pub(crate) struct Samples(pub(crate) Mutex<Vec<u64>>);

impl Samples {
    pub(crate) fn add(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(us);
    }
    pub(crate) fn summary(&self) -> Percentiles {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Percentiles::of(&mut v)
    }
}

/// p50 / p99 / max of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles; sorts `v`.
    pub fn of(v: &mut [u64]) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let rank = |p: f64| {
            let r = (p * v.len() as f64).ceil() as usize;
            v[r.clamp(1, v.len()) - 1]
        };
        Percentiles {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }

    pub(crate) fn text(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {}",
            fmt_us(self.p50),
            fmt_us(self.p99),
            fmt_us(self.max)
        )
    }
}

pub(crate) fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// One sample of a process from /proc: resident memory and CPU time (user + system).
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub rss_kb: u64,
    pub cpu_ms: u64,
}

/// Reads `VmRSS` from `/proc/PID/status` and `utime + stime` from `/proc/PID/stat`.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(ProcSample {
        rss_kb,
        cpu_ms: (utime + stime) * 1000 / TICKS_PER_SEC,
    })
}

/// Busy CPU time of the whole machine (every core), from the `cpu` line of `/proc/stat`: user, nice,
/// system, irq, softirq and steal. Compared with the server's and the generator's own CPU over the
/// same phase, it shows how much of the machine something else took (the machine is shared).
pub fn machine_busy_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy * 1000 / TICKS_PER_SEC)
}

/// CPU samples around a phase: the machine's busy time and the generator's own CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    machine_ms: Option<u64>,
    own_ms: Option<u64>,
}

impl CpuMark {
    pub(crate) fn now() -> CpuMark {
        CpuMark {
            machine_ms: machine_busy_ms(),
            own_ms: proc_sample(std::process::id()).map(|s| s.cpu_ms),
        }
    }
}

pub(crate) fn push_errors(text: &mut String, what: &str, errors: &BTreeMap<String, u64>) {
    if errors.is_empty() {
        text.push_str(&format!("{what}: none\n"));
    } else {
        text.push_str(&format!("{what}:\n"));
        for (k, v) in errors {
            text.push_str(&format!("  {v:>7}  {k}\n"));
        }
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn server_json(
    before: Option<ProcSample>,
    connected: Option<ProcSample>,
    held_end: Option<ProcSample>,
    established: usize,
    held: usize,
) -> serde_json::Value {
    let (Some(b), Some(c), Some(h)) = (before, connected, held_end) else {
        return serde_json::Value::Null;
    };
    let per = |kb: u64, n: usize| {
        if n == 0 {
            0
        } else {
            (kb * 1024) / n as u64
        }
    };
    let cpu_ms = c.cpu_ms.saturating_sub(b.cpu_ms);
    json!({
        "rss_before_kb": b.rss_kb,
        "rss_connected_kb": c.rss_kb,
        "rss_held_kb": h.rss_kb,
        "rss_per_session_bytes": per(h.rss_kb.saturating_sub(b.rss_kb), held),
        "cpu_connect_ms": cpu_ms,
        "cpu_per_login_us": if established == 0 { 0 } else { cpu_ms * 1000 / established as u64 },
        "cpu_hold_ms": h.cpu_ms.saturating_sub(c.cpu_ms),
    })
}

/// CPU over the connect phase: the generator's own, the server's, and what the rest of the machine
/// took (busy time of all cores minus both), per login and in all.
pub(crate) fn cpu_json(
    start: CpuMark,
    end: CpuMark,
    server_start: Option<ProcSample>,
    server_end: Option<ProcSample>,
    logins: usize,
) -> serde_json::Value {
    let d = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    let client = d(start.own_ms, end.own_ms);
    let machine = d(start.machine_ms, end.machine_ms);
    let server = d(server_start.map(|s| s.cpu_ms), server_end.map(|s| s.cpu_ms));
    let other = match (machine, client) {
        (Some(m), Some(c)) => Some(m.saturating_sub(c + server.unwrap_or(0))),
        _ => None,
    };
    let per = |ms: Option<u64>| {
        ms.map(|ms| {
            if logins == 0 {
                0
            } else {
                ms * 1000 / logins as u64
            }
        })
    };
    json!({
        "machine_busy_ms": machine,
        "client_ms": client,
        "client_per_login_us": per(client),
        "other_ms": other,
    })
}
