//! A cgroup per run: one memory limit for all the run's processes and the tmpfs pages
//! they fill, one process limit, both read back to name the limit a run hit.
//!
//! Two layouts are found on Linux machines, and both are supported:
//! - **v2 (unified)**, most current distributions: `/sys/fs/cgroup` is one `cgroup2`
//!   hierarchy. A run gets `<own>/scriptorium-runs/<pid>-<n>` with `memory.max`,
//!   `memory.swap.max = 0` and `pids.max`. The "no internal processes" rule means the
//!   server's own cgroup cannot both hold the server and hand controllers to children:
//!   when enabling them fails with EBUSY, the server moves itself into a leaf
//!   `<own>/scriptorium-server` first (what systemd asks of a service with
//!   `Delegate=yes`).
//! - **v1 (or hybrid, v1 controllers beside a v2 mount without them)**: `memory` and
//!   `pids` are separate hierarchies; a run gets `<own>/scriptorium-runs/<pid>-<n>` in
//!   each, with `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` (when swap
//!   accounting is on) and `pids.max`, and one in the `cpuacct` hierarchy, whose
//!   `cpuacct.usage` counts the CPU time of all the run's processes together (v2 counts
//!   it in every cgroup's `cpu.stat`). See [`cpu`] for the run-wide CPU limit.
//!
//! `<own>` is the server's own cgroup in that hierarchy (from `/proc/self/cgroup`,
//! resolved through `/proc/self/mountinfo`), so a server started in a delegated subtree
//! (systemd `Delegate=yes`, a container with its cgroup namespace) needs no more rights
//! than that subtree. The sandbox's first process joins the run's cgroups before it
//! does anything else (see `child::enter`), so every process of the run is inside.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::run::CgroupProtection;

mod cpu;

/// The directory below the server's cgroup that holds the runs' cgroups.
const RUNS_DIR: &str = "scriptorium-runs";
/// The v2 leaf the server moves itself into when its cgroup must be emptied of
/// processes to hand controllers to children.
const SERVER_LEAF: &str = "scriptorium-server";
/// Processes of a sandbox that are not the script's: the intermediate and init.
pub(super) const SANDBOX_PROCESSES: u64 = 2;

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mount {
    pub fstype: String,
    /// The path inside the file system that is mounted (not `/` for a bind mount).
    pub root: PathBuf,
    pub mountpoint: PathBuf,
    /// The super options: for a v1 hierarchy, its controllers (`rw,memory`).
    pub options: Vec<String>,
}

/// The cgroup mounts in a `/proc/self/mountinfo` text.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let fstype = *right.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                fstype: fstype.to_string(),
                root: PathBuf::from(unescape(left.get(3)?)),
                mountpoint: PathBuf::from(unescape(left.get(4)?)),
                options: right
                    .get(2)
                    .map(|o| o.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/cgroup`: `(controllers, path)` per hierarchy; v2's line has no
/// controllers (`0::/path`).
pub(super) fn parse_self_cgroup(text: &str) -> Vec<(Vec<String>, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            Some((controllers, PathBuf::from(path)))
        })
        .collect()
}

/// Where a cgroup `path` of a hierarchy lies on disk, through that hierarchy's mount.
fn resolve(mount: &Mount, path: &Path) -> PathBuf {
    let rel = path
        .strip_prefix(&mount.root)
        .or_else(|_| path.strip_prefix("/"))
        .unwrap_or(path);
    mount.mountpoint.join(rel)
}

/// The hierarchies runs are put in: the server's own cgroup in each.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Layout {
    V2 {
        own: PathBuf,
    },
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
        /// The hierarchy with the `cpuacct` controller (usually `cpu,cpuacct`).
        cpu: Option<PathBuf>,
    },
}

/// Picks the layout: v2 when the server's v2 cgroup offers `memory` and `pids`, else the
/// v1 `memory` (and `pids`) hierarchies. `controllers` reads a v2 directory's
/// `cgroup.controllers`.
pub(super) fn find_layout(
    mountinfo: &str,
    self_cgroup: &str,
    controllers: impl Fn(&Path) -> Option<String>,
) -> Result<Layout, String> {
    let mounts = parse_mountinfo(mountinfo);
    let own = parse_self_cgroup(self_cgroup);
    let mut v2_problem = None;
    if let (Some(m), Some((_, path))) = (
        mounts.iter().find(|m| m.fstype == "cgroup2"),
        own.iter().find(|(c, _)| c.is_empty()),
    ) {
        let dir = resolve(m, path);
        let offered = controllers(&dir).unwrap_or_default();
        let offered: Vec<&str> = offered.split_whitespace().collect();
        if offered.contains(&"memory") && offered.contains(&"pids") {
            return Ok(Layout::V2 { own: dir });
        }
        v2_problem = Some(format!(
            "the v2 cgroup {} offers no memory and pids controllers ({})",
            dir.display(),
            offered.join(" ")
        ));
    }
    let v1 = |name: &str| -> Option<PathBuf> {
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == name))?;
        let (_, path) = own.iter().find(|(c, _)| c.iter().any(|c| c == name))?;
        Some(resolve(m, path))
    };
    match v1("memory") {
        Some(memory) => Ok(Layout::V1 {
            memory,
            pids: v1("pids"),
            cpu: v1("cpuacct"),
        }),
        None => Err(v2_problem.unwrap_or_else(|| {
            "no memory cgroup controller is mounted (neither v2 nor v1)".into()
        })),
    }
}

/// The cgroup hierarchies of this machine, ready to hold runs.
#[derive(Debug)]
pub(super) struct Cgroups {
    layout: Layout,
    /// Why runs get no CPU accounting cgroup (v1 without a usable `cpuacct`).
    no_cpu: Option<String>,
}

/// Numbers the runs' cgroups of this process (every backend of it shares the parent).
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// Finds the layout and makes the runs' parent directories (enabling the v2
    /// controllers on the way). The error says why runs get no cgroup.
    pub(super) fn probe() -> Result<Cgroups, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mut layout = find_layout(&mountinfo, &own, |d| {
            std::fs::read_to_string(d.join("cgroup.controllers")).ok()
        })?;
        let mut no_cpu = None;
        match &mut layout {
            Layout::V2 { own } => prepare_v2(own)?,
            Layout::V1 { memory, pids, cpu } => {
                for d in std::iter::once(&*memory).chain(pids.iter()) {
                    make_dir(&d.join(RUNS_DIR))?;
                }
                match cpu.as_ref().map(|d| make_dir(&d.join(RUNS_DIR))) {
                    None => no_cpu = Some("no cpuacct cgroup hierarchy is mounted".into()),
                    Some(Err(e)) => no_cpu = Some(e),
                    Some(Ok(())) => {}
                }
                if no_cpu.is_some() {
                    *cpu = None;
                }
            }
        }
        for parent in runs_parents(&layout) {
            sweep(&parent);
        }
        Ok(Cgroups { layout, no_cpu })
    }

    /// Why runs are not counted CPU time together, if they are not.
    pub(super) fn no_cpu(&self) -> Option<&str> {
        self.no_cpu.as_deref()
    }

    /// A fresh cgroup for one run with its limits written.
    pub(super) fn create(&self, limits: &crate::Limits) -> Result<RunCgroup, String> {
        let run = self.make()?;
        run.limit(limits)?;
        Ok(run)
    }

    /// A fresh cgroup with no limits written yet: the zygote's spare process joins it
    /// ahead of its run (see [`super::zygote`]), and [`RunCgroup::limit`] bounds it
    /// before anything of the run starts.
    pub(super) fn make(&self) -> Result<RunCgroup, String> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut run = RunCgroup {
            version: 2,
            dirs: Vec::new(),
            memory: PathBuf::new(),
            pids: None,
            cpu: None,
            swap: false,
        };
        match &self.layout {
            Layout::V2 { own } => {
                let dir = own.join(RUNS_DIR).join(&name);
                make_fresh_dir(&dir)?;
                run.dirs.push(dir.clone());
                run.swap = dir.join("memory.swap.max").exists();
                run.memory = dir.clone();
                run.pids = Some(dir.clone());
                // `cpu.stat` is there whether or not the cpu controller is enabled.
                run.cpu = Some(cpu::Usage::V2(dir.join("cpu.stat")));
            }
            Layout::V1 { memory, pids, cpu } => {
                run.version = 1;
                let dir = memory.join(RUNS_DIR).join(&name);
                make_fresh_dir(&dir)?;
                run.dirs.push(dir.clone());
                // Without swap accounting the memsw files are absent (and swap is
                // not bounded: the run record says so).
                run.swap = dir.join("memory.memsw.limit_in_bytes").exists();
                run.memory = dir;
                if let Some(pids) = pids {
                    let dir = pids.join(RUNS_DIR).join(&name);
                    make_fresh_dir(&dir)?;
                    run.dirs.push(dir.clone());
                    run.pids = Some(dir);
                }
                if let Some(cpu) = cpu {
                    let dir = cpu.join(RUNS_DIR).join(&name);
                    make_fresh_dir(&dir)?;
                    run.dirs.push(dir.clone());
                    run.cpu = Some(cpu::Usage::V1(dir.join("cpuacct.usage")));
                }
            }
        }
        Ok(run)
    }
}

fn runs_parents(layout: &Layout) -> Vec<PathBuf> {
    match layout {
        Layout::V2 { own } => vec![own.join(RUNS_DIR)],
        Layout::V1 { memory, pids, cpu } => std::iter::once(memory)
            .chain(pids)
            .chain(cpu)
            .map(|d| d.join(RUNS_DIR))
            .collect(),
    }
}

/// Enables `memory` and `pids` for `<own>/scriptorium-runs/*`.
fn prepare_v2(own: &Path) -> Result<(), String> {
    const ENABLE: &str = "+memory +pids";
    if let Err(e) = std::fs::write(own.join("cgroup.subtree_control"), ENABLE) {
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(format!(
                "cannot enable the memory and pids controllers in {}: {e}",
                own.display()
            ));
        }
        // Processes in `own` (this server): move it into a leaf of its own.
        let leaf = own.join(SERVER_LEAF);
        make_dir(&leaf)?;
        write(&leaf, "cgroup.procs", &std::process::id().to_string())?;
        write(own, "cgroup.subtree_control", ENABLE)?;
    }
    let runs = own.join(RUNS_DIR);
    make_dir(&runs)?;
    write(&runs, "cgroup.subtree_control", ENABLE)
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "cannot create the cgroup {}: {e} (run the server as root, or in a cgroup delegated to its user, e.g. systemd `Delegate=yes`)",
            dir.display()
        )),
    }
}

/// A run's own cgroup: never one that exists already.
fn make_fresh_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        format!(
            "cannot write `{value}` to {}: {e}",
            dir.join(file).display()
        )
    })
}

/// Removes run cgroups that servers no longer running left behind.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: Option<i32> = name.split('-').next().and_then(|p| p.parse().ok());
        let gone = |pid: i32| {
            // SAFETY: kill with signal 0 only asks whether the process exists.
            (unsafe { libc::kill(pid, 0) }) != 0
        };
        if pid.is_some_and(|pid| pid != std::process::id() as i32 && gone(pid)) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// A run's cgroup(s). Dropping it kills what is left inside and removes the directories
/// (in the background: removal waits until the last process is gone).
#[derive(Debug)]
pub(super) struct RunCgroup {
    version: u8,
    dirs: Vec<PathBuf>,
    memory: PathBuf,
    pids: Option<PathBuf>,
    /// Where the CPU time of all its processes is counted.
    cpu: Option<cpu::Usage>,
    swap: bool,
}

impl RunCgroup {
    /// Writes the run's memory (and swap) and process limits.
    pub(super) fn limit(&self, limits: &crate::Limits) -> Result<(), String> {
        let memory_bytes = limits.memory_mib.saturating_mul(1024 * 1024).to_string();
        let pids_max = limits
            .processes
            .saturating_add(SANDBOX_PROCESSES)
            .to_string();
        if self.version == 2 {
            write(&self.memory, "memory.max", &memory_bytes)?;
            if self.swap {
                write(&self.memory, "memory.swap.max", "0")?;
            }
        } else {
            write(&self.memory, "memory.limit_in_bytes", &memory_bytes)?;
            if self.swap {
                // After the memory limit: v1 wants memsw >= memory at every step.
                write(&self.memory, "memory.memsw.limit_in_bytes", &memory_bytes)?;
            }
        }
        if let Some(pids) = &self.pids {
            write(pids, "pids.max", &pids_max)?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files the sandbox's first process writes itself into.
    pub(super) fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .map(|d| super::child::cpath(&d.join("cgroup.procs")))
            .collect()
    }

    pub(super) fn protection(&self) -> CgroupProtection {
        CgroupProtection {
            version: self.version,
            memory: true,
            swap: self.swap,
            pids: self.pids.is_some(),
            cpu: self.cpu.is_some(),
            oom_kills: 0,
            pids_refused: 0,
        }
    }

    /// How many processes the memory cgroup's OOM killer ended.
    pub(super) fn oom_kills(&self) -> u64 {
        let file = if self.version == 2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        counter(&self.memory.join(file), "oom_kill")
    }

    /// How many times a fork was refused at `pids.max`.
    pub(super) fn pids_refused(&self) -> u64 {
        self.pids
            .as_ref()
            .map(|d| counter(&d.join("pids.events"), "max"))
            .unwrap_or(0)
    }
}

/// The value of `key N` in a flat-keyed cgroup file.
fn counter(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_counter(&text, key)
}

pub(super) fn parse_counter(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        let v2 = self.version == 2;
        let _ = std::thread::Builder::new()
            .name("cgroup-remove".into())
            .spawn(move || remove(&dirs, v2));
    }
}

/// Kills what is left (v2 `cgroup.kill`; in v1 the pid namespace's end does it) and
/// removes the directories once they are empty.
fn remove(dirs: &[PathBuf], v2: bool) {
    if v2 {
        for d in dirs {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
    }
    for _ in 0..200 {
        let left: Vec<&PathBuf> = dirs
            .iter()
            .filter(|d| d.exists() && std::fs::remove_dir(d).is_err())
            .collect();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(dirs = ?dirs, "a run's cgroup could not be removed: processes are still in it");
}

#[cfg(test)]
mod tests;
