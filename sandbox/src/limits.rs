//! Resource bounds for one run.

use serde::{Deserialize, Serialize};

/// Every bound a run is held to. The defaults suit small data-processing scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time before the whole sandbox is killed.
    pub wall_seconds: f64,
    /// CPU seconds (RLIMIT_CPU; fuel/epochs under WASI follow the wall limit).
    pub cpu_seconds: u64,
    /// Address space (native) or linear memory (WASI), in MiB.
    pub memory_mib: u64,
    /// Processes and threads the script may have at once.
    pub processes: u64,
    /// stdout + stderr bytes kept and streamed before the run is stopped.
    pub output_bytes: u64,
    /// The largest file the script may write, in MiB.
    pub file_size_mib: u64,
    /// Open file descriptors.
    pub open_files: u64,
    /// Disk the run may fill, in MiB: the allocated blocks of everything in its run
    /// directory and its private /tmp together (a sparse file counts what it uses).
    pub disk_mib: u64,
    /// Files, directories and links the run directory and /tmp may hold together.
    pub disk_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_seconds: 60.0,
            cpu_seconds: 60,
            memory_mib: 1024,
            processes: 64,
            output_bytes: 4 * 1024 * 1024,
            file_size_mib: 256,
            open_files: 256,
            disk_mib: 1024,
            disk_files: 10_000,
        }
    }
}

/// Per-interpreter overrides: only the fields given replace the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    pub wall_seconds: Option<f64>,
    pub cpu_seconds: Option<u64>,
    pub memory_mib: Option<u64>,
    pub processes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub file_size_mib: Option<u64>,
    pub open_files: Option<u64>,
    pub disk_mib: Option<u64>,
    pub disk_files: Option<u64>,
}

impl Limits {
    pub fn with(&self, o: &LimitsOverride) -> Limits {
        Limits {
            wall_seconds: o.wall_seconds.unwrap_or(self.wall_seconds),
            cpu_seconds: o.cpu_seconds.unwrap_or(self.cpu_seconds),
            memory_mib: o.memory_mib.unwrap_or(self.memory_mib),
            processes: o.processes.unwrap_or(self.processes),
            output_bytes: o.output_bytes.unwrap_or(self.output_bytes),
            file_size_mib: o.file_size_mib.unwrap_or(self.file_size_mib),
            open_files: o.open_files.unwrap_or(self.open_files),
            disk_mib: o.disk_mib.unwrap_or(self.disk_mib),
            disk_files: o.disk_files.unwrap_or(self.disk_files),
        }
    }
}
