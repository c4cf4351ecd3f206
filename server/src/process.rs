//! The `process_*` families every Prometheus client exports, read from `/proc/self` at scrape
//! time (Linux; elsewhere, or if a file cannot be read, the families it feeds are left out).
//!
//! | family | type | source |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter | user + system time, `/proc/self/stat` |
//! | `process_resident_memory_bytes` | gauge | resident pages, `/proc/self/stat` |
//! | `process_virtual_memory_bytes` | gauge | virtual size, `/proc/self/stat` |
//! | `process_start_time_seconds` | gauge | start time since boot (`/proc/self/stat`) + boot time (`/proc/stat`) |
//! | `process_open_fds` | gauge | entries of `/proc/self/fd` |
//! | `process_max_fds` | gauge | the soft `RLIMIT_NOFILE` |
//! | `process_memory_bytes{state}` | gauge | `/proc/self/status`, see [`MEMORY_STATES`] |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The states of `process_memory_bytes` (the seed's family; the Go runtime's states do not exist
/// here), each a line of `/proc/self/status`.
pub const MEMORY_STATES: [(&str, &str); 6] = [
    // Resident set: what the process occupies in RAM now.
    ("resident", "VmRSS"),
    // The largest resident set since start.
    ("resident_peak", "VmHWM"),
    // The address space reserved, mostly unused.
    ("virtual", "VmSize"),
    // Resident anonymous memory: the heap (the cache's keys and values) and stacks.
    ("anonymous", "RssAnon"),
    // Resident file-backed memory: the mapped binary and libraries.
    ("file", "RssFile"),
    // Swapped out.
    ("swap", "VmSwap"),
];

/// Collects the `process_*` families on each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let page_bytes = sysconf(libc::_SC_PAGESIZE);
        let ticks_per_second = sysconf(libc::_SC_CLK_TCK);
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let (Some(stat), Some(page_bytes), Some(ticks)) =
            (stat.as_deref().and_then(parse_stat), page_bytes, ticks_per_second)
        {
            let cpu_seconds = (stat.user_ticks + stat.system_ticks) as f64 / ticks as f64;
            counter(
                &mut encoder,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                cpu_seconds,
            )?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                (stat.resident_pages * page_bytes) as f64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes as f64,
            )?;
            let boot = std::fs::read_to_string("/proc/stat").ok();
            if let Some(boot_time) = boot.as_deref().and_then(parse_boot_time) {
                let start = boot_time as f64 + stat.start_ticks as f64 / ticks as f64;
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    start,
                )?;
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // The directory listing holds a descriptor of its own while it is read.
            let open = fds.count().saturating_sub(1);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                open as f64,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max as f64,
            )?;
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let states = parse_memory_states(&status);
            if !states.is_empty() {
                let mut family = encoder.encode_descriptor(
                    "process_memory_bytes",
                    "Process memory in bytes by state: resident, resident_peak, virtual, anonymous, file, swap (from /proc/self/status)",
                    None,
                    MetricType::Gauge,
                )?;
                for (state, bytes) in states {
                    let labels = [("state", state)];
                    ConstGauge::new(bytes as f64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// `name` without `_total`: the encoder appends it.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a configuration value; it has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (r == 0).then_some(limit.rlim_cur)
}

/// The fields of `/proc/self/stat` the collector uses.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    /// Clock ticks after boot at which the process started.
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/[pid]/stat` (proc(5)). The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time in seconds since the epoch: the `btime` line of `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The [`MEMORY_STATES`] found in `/proc/self/status`, in bytes (the file says kB).
fn parse_memory_states(text: &str) -> Vec<(&'static str, u64)> {
    MEMORY_STATES
        .iter()
        .filter_map(|&(state, key)| {
            let line = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
            let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some((state, kb * 1024))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fields are counted from the last ')', so a command name with spaces and parentheses does
    // not shift them.
    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 \
                    0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                user_ticks: 250,
                system_ticks: 75,
                start_ticks: 123456,
                virtual_bytes: 987654321,
                resident_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1700000000)
        );
        assert_eq!(parse_boot_time("cpu  1 2 3\n"), None);
    }

    // Each state reads its own line, in bytes; a missing line leaves its state out.
    #[test]
    fn memory_states_read_their_lines_in_bytes() {
        let text = "Name:\tsimple-cache\nVmPeak:\t  300 kB\nVmSize:\t  200 kB\nVmHWM:\t  50 kB\n\
                    VmRSS:\t  40 kB\nRssAnon:\t  30 kB\nRssFile:\t  10 kB\n";
        assert_eq!(
            parse_memory_states(text),
            vec![
                ("resident", 40 * 1024),
                ("resident_peak", 50 * 1024),
                ("virtual", 200 * 1024),
                ("anonymous", 30 * 1024),
                ("file", 10 * 1024),
            ]
        );
    }

    // On this machine (Linux) every family is there, with plausible values.
    #[test]
    fn this_process_has_every_family() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_open_fds") >= 3.0, "stdin, stdout, stderr");
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 3600.0, "started {start}, now {now}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        assert!(text.contains("process_memory_bytes{state=\"resident\"} "), "{text}");
    }
}
