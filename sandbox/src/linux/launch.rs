//! Starting a sandbox: the [`Launch`] request, the [`child::Plan`] its processes carry
//! out, and the fork that starts them: by the zygote ([`super::zygote`]), a small
//! process that carries none of the server's memory, or, without one, by the server.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use landlock::{Access, AccessFs};

mod grants;

use super::ids::Lease;
pub(super) use super::intermediate::Intermediate;
use super::{Sandbox, cgroup, child, landlock as rules, rootfs, seccomp};
use crate::run::{Protections, RunSpec, SandboxError};
use crate::{BackendKind, Interpreter};
use grants::{DEVICES, Readable, access, environment, rlimits};

/// One sandboxed process to start.
pub(super) struct Launch<'a> {
    /// The program to exec (for a run, the interpreter).
    pub(super) program: &'a Path,
    /// An interpreter whose installation (prefix, venv, `sys.path`) the process may read.
    pub(super) interpreter: Option<&'a Interpreter>,
    pub(super) args: Vec<OsString>,
    /// Environment variables on top of the sandbox's clean set.
    pub(super) env: Vec<(OsString, OsString)>,
    /// Files and directories the process may read besides the interpreter's.
    pub(super) read: Vec<PathBuf>,
    /// The only writable place (with the private /tmp), the working directory.
    pub(super) workdir: &'a Path,
    /// What is shown inside when the workdir lies below a cover (a spare shows the runs
    /// directory, so the run directory it is renamed to is visible at the same path).
    pub(super) expose: &'a Path,
    pub(super) home: &'a Path,
    pub(super) limits: &'a crate::Limits,
    /// RLIMIT_AS in MiB, when not `limits.memory_mib` (see [`super::ProcessSpec`]).
    pub(super) address_space_mib: Option<u64>,
    /// CPU seconds allowed on top of the limit (a spare's import; its runner takes them
    /// back before the script starts).
    pub(super) extra_cpu: u64,
    /// Keep a pipe to stdin (a spare reads its request there); else /dev/null.
    pub(super) stdin: bool,
    /// Have the child mark each setup phase (the benchmark's per-phase table).
    pub(super) trace: bool,
}

impl<'a> Launch<'a> {
    pub(super) fn for_run(spec: &'a RunSpec) -> Launch<'a> {
        let mut read = vec![spec.script.clone()];
        read.extend(spec.input.clone());
        Launch {
            program: &spec.interpreter.path,
            interpreter: Some(&spec.interpreter),
            args: spec.python_args(),
            env: Vec::new(),
            read,
            workdir: &spec.workdir,
            expose: &spec.workdir,
            home: &spec.workdir,
            limits: &spec.limits,
            address_space_mib: None,
            extra_cpu: 0,
            stdin: false,
            trace: false,
        }
    }
}

/// A started sandbox: its outermost process and the pipes to watch.
pub(super) struct Started {
    pub(super) child: Intermediate,
    pub(super) stdin: Option<tokio::process::ChildStdin>,
    pub(super) stdout: tokio::process::ChildStdout,
    pub(super) stderr: tokio::process::ChildStderr,
    pub(super) status_r: OwnedFd,
    pub(super) report_r: OwnedFd,
    pub(super) protections: Protections,
    /// The host uid this sandbox holds (root server).
    pub(super) _lease: Option<Lease>,
    /// The run's cgroup: removed when the sandbox is dropped.
    pub(super) cgroup: Option<cgroup::RunCgroup>,
    /// The phase marks of a traced launch.
    pub(super) trace: Option<Trace>,
    /// Why the run's CPU time is not counted together, if it is not.
    pub(super) cpu_note: Option<String>,
}

/// Where a traced launch's phase marks arrive, and when the server began and had
/// prepared it (CLOCK_MONOTONIC ns).
pub(super) struct Trace {
    pub(super) marks: OwnedFd,
    pub(super) began: u64,
    pub(super) prepared: u64,
}

/// CLOCK_MONOTONIC in ns, the clock of [`child::PHASES`]' marks.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into a timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Everything about a sandbox that is decided before the fork.
pub(super) struct Prepared {
    pub(super) plan: child::Plan,
    pub(super) program: CString,
    pub(super) argv: Vec<CString>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) workdir: PathBuf,
    pub(super) stdin: bool,
    ruleset: Option<OwnedFd>,
    report: (OwnedFd, OwnedFd),
    status: (OwnedFd, OwnedFd),
    /// The trace pipe, and when the server began and had prepared the launch.
    trace: Option<((OwnedFd, OwnedFd), (u64, u64))>,
    protections: Protections,
    lease: Option<Lease>,
    cgroup: Option<cgroup::RunCgroup>,
    cpu_note: Option<String>,
}

/// The sandbox's pipes, the server's ends.
pub(super) struct Pipes {
    pub(super) stdin: Option<tokio::process::ChildStdin>,
    pub(super) stdout: tokio::process::ChildStdout,
    pub(super) stderr: tokio::process::ChildStderr,
}

impl Sandbox {
    /// The host ids the sandbox runs as: a leased uid of its own when the server is
    /// root, else the server's (mapped to an unprivileged id inside).
    fn ids(&self) -> Result<(u32, u32, Option<Lease>), SandboxError> {
        if self.support.root {
            let lease = self.ids.lease(self.config.uid_range)?;
            Ok((lease.uid, lease.uid, Some(lease)))
        } else {
            // SAFETY: getters without side effects.
            Ok(unsafe { (libc::geteuid(), libc::getegid(), None) })
        }
    }

    /// Refuses (unless allowed) when a protection is missing; lists what is missing.
    fn missing(&self) -> Result<Vec<String>, SandboxError> {
        let mut missing = Vec::new();
        if !self.support.user_namespaces {
            missing.push(("user namespaces", "the kernel or a security module (e.g. Ubuntu's AppArmor `kernel.apparmor_restrict_unprivileged_userns`) does not allow them"));
        }
        if self.support.landlock_abi < 1 {
            missing.push(("Landlock", "the kernel does not offer it (needs Linux 5.13+ with Landlock enabled in the `lsm=` boot parameter)"));
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        if !self.config.allow_degraded {
            let (what, why): (Vec<_>, Vec<_>) = missing.into_iter().unzip();
            return Err(SandboxError::Unavailable {
                missing: what.join(" and "),
                why: why.join("; "),
            });
        }
        Ok(missing.into_iter().map(|(w, _)| w.to_string()).collect())
    }

    /// Starts `launch` in a fresh sandbox and returns at once: through the zygote when
    /// there is one, else (or when it fails) forked by the server. `protections.launcher`
    /// says which.
    pub(super) fn start(&self, launch: Launch<'_>) -> Result<Started, SandboxError> {
        let began = monotonic_ns();
        let mut prepared = self.prepare(&launch)?;
        if let Some((_, at)) = &mut prepared.trace {
            // Before the fork: the child's marks come after it.
            *at = (began, monotonic_ns());
        }
        let launcher = match &self.zygote {
            None => "direct".to_string(),
            Some(zygote) => match zygote.launch(&mut prepared) {
                Ok((forked, pipes)) => {
                    self.prefork();
                    return Ok(prepared.started(Intermediate::Zygote(forked), pipes, "zygote"));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the sandbox zygote failed; the server forks this sandbox itself");
                    format!("direct (the zygote failed: {e})")
                }
            },
        };
        let (child, pipes) = prepared.spawn_direct()?;
        Ok(prepared.started(Intermediate::Direct(child), pipes, &launcher))
    }

    /// The run's cgroup with its limits written: the one the zygote's spare has joined
    /// already when there is one, else a fresh one the sandbox joins itself.
    fn run_cgroup(
        &self,
        cgroups: &cgroup::Cgroups,
        limits: &crate::Limits,
    ) -> Result<cgroup::RunCgroup, SandboxError> {
        if let Some(spare) = self.zygote.as_ref().and_then(|z| z.take_spare()) {
            // A spare whose limits cannot be written is dropped (removed with it).
            if spare.limit(limits).is_ok() {
                return Ok(spare);
            }
        }
        cgroups.create(limits).map_err(SandboxError::Setup)
    }

    /// After a launch: the zygote forks the next run's first process ahead, in its
    /// cgroups (see `zygote/spare.rs`).
    fn prefork(&self) {
        if let (Some(zygote), Ok(cgroups)) = (&self.zygote, &self.cgroups) {
            zygote.prefork(cgroups);
        }
    }

    /// Decides everything about the sandbox: its uid, cgroup, Landlock rules, root,
    /// rlimits, environment; makes its status and report pipes.
    fn prepare(&self, launch: &Launch<'_>) -> Result<Prepared, SandboxError> {
        let missing = self.missing()?;
        let (uid, gid, lease) = self.ids()?;
        let program = launch.program;
        if !program.is_file() {
            return Err(SandboxError::Setup(format!(
                "the program {} does not exist",
                program.display()
            )));
        }
        if self.support.root {
            // The run directory is its sandbox's uid's alone (a spare, which sees the
            // runs directory, finds the others closed even without Landlock).
            chown_tree(launch.workdir, uid, gid)?;
            std::fs::set_permissions(
                launch.workdir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
        }
        let access = access(launch);
        let mut protections = self.protections(uid, missing);
        let cgroup = match &self.cgroups {
            Ok(cgroups) => Some(self.run_cgroup(cgroups, launch.limits)?),
            Err(why) => {
                protections.missing.push(format!("cgroups: {why}"));
                None
            }
        };
        protections.cgroup = cgroup.as_ref().map(cgroup::RunCgroup::protection);
        // A run's record lists it in `missing` (see `supervise`); a spawned process's
        // CPU time is not watched at all (see `process.rs`).
        let cpu_note = (!protections.cgroup.as_ref().is_some_and(|c| c.cpu)).then(|| {
            let why = match &self.cgroups {
                Ok(c) => c.no_cpu().unwrap_or("no cpu cgroup"),
                Err(_) => "no cgroups",
            };
            format!("run-wide CPU time ({why}): `cpu_seconds` holds per process (RLIMIT_CPU)")
        });
        let ruleset = self.ruleset(launch, &access, &mut protections)?;
        let seccomp = self.seccomp(&mut protections)?;
        let mut planner = rootfs::Planner::default();
        for p in access.read.iter().chain(&access.system) {
            planner.expose(p, false);
        }
        planner.expose(launch.expose, true);
        let root = planner.finish(
            launch.workdir,
            launch.limits.disk_mib,
            launch.limits.disk_files,
        );
        let report = pipe()?;
        let status = pipe()?;
        let trace = launch.trace.then(pipe).transpose()?.map(|p| (p, (0, 0)));
        let rlimits = rlimits(launch, protections.cgroup.as_ref().is_some_and(|c| c.pids));
        let plan = child::Plan {
            cgroup_procs: cgroup
                .as_ref()
                .map(cgroup::RunCgroup::procs_files)
                .unwrap_or_default(),
            switch_user: self.support.root,
            uid,
            gid,
            uid_map: CString::new(format!("{} {uid} 1", child::INNER_ID)).expect("no NUL"),
            gid_map: CString::new(format!("{} {gid} 1", child::INNER_ID)).expect("no NUL"),
            root,
            seccomp,
            server_args: server_memory().0,
            server_env: server_memory().1,
            tmp_access: AccessFs::from_all(rules::abi(self.support.landlock_abi.max(1))).bits(),
            rlimits,
            ruleset_fd: ruleset.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
            report_w: report.1.as_raw_fd(),
            server_pid: std::process::id() as libc::pid_t,
            status_w: status.1.as_raw_fd(),
            trace_w: trace.as_ref().map_or(-1, |((_, w), _)| w.as_raw_fd()),
        };
        let cstring = |b: &[u8]| {
            CString::new(b).map_err(|_| {
                SandboxError::Setup("an argument of the program holds a NUL byte; remove it".into())
            })
        };
        Ok(Prepared {
            plan,
            program: cstring(program.as_os_str().as_bytes())?,
            argv: std::iter::once(program.as_os_str())
                .chain(launch.args.iter().map(OsString::as_os_str))
                .map(|a| cstring(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            env: environment(launch),
            workdir: launch.workdir.to_path_buf(),
            stdin: launch.stdin,
            ruleset,
            report,
            status,
            trace,
            protections,
            lease,
            cgroup,
            cpu_note,
        })
    }

    fn protections(&self, uid: u32, missing: Vec<String>) -> Protections {
        let support = self.support;
        Protections {
            backend: Some(BackendKind::Linux),
            namespaces: if support.user_namespaces || support.root {
                vec!["user", "mount", "pid", "net", "ipc", "uts", "cgroup"]
            } else {
                vec![]
            },
            rlimits: true,
            no_new_privs: true,
            uid: Some(uid),
            missing,
            minimal_root: true,
            private_keyring: true,
            ..Default::default()
        }
    }

    /// The Landlock ruleset (none when the kernel has no Landlock).
    fn ruleset(
        &self,
        launch: &Launch<'_>,
        access: &Readable,
        protections: &mut Protections,
    ) -> Result<Option<OwnedFd>, SandboxError> {
        let support = self.support;
        if !support.root && !support.user_namespaces {
            return Err(SandboxError::Setup(
                "without root or user namespaces no namespaces can be made; degraded runs need at least one".into(),
            ));
        }
        if support.landlock_abi < 1 {
            return Ok(None);
        }
        let devices: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
        let writable = [launch.workdir.to_path_buf()];
        let (fd, abi) = rules::ruleset(
            support.landlock_abi,
            &access.read,
            &access.system,
            &devices,
            &writable,
        )
        .map_err(|e| SandboxError::Setup(format!("Landlock rules: {e}")))?;
        protections.landlock_abi = abi as u32;
        protections.landlock_filesystem = true;
        protections.landlock_network = abi >= 4;
        protections.landlock_scopes = abi >= 6;
        Ok(Some(fd))
    }

    /// The seccomp filters (compiled once per process); refused without them unless
    /// degraded runs are allowed.
    fn seccomp(
        &self,
        protections: &mut Protections,
    ) -> Result<Option<Arc<seccomp::Filters>>, SandboxError> {
        match seccomp::compiled() {
            Ok(f) => {
                protections.seccomp = Some(f.describe());
                Ok(Some(f))
            }
            Err(e) if self.config.allow_degraded => {
                protections.missing.push(format!("seccomp ({e})"));
                Ok(None)
            }
            Err(e) => Err(SandboxError::Setup(format!(
                "{e}; set `allow_degraded = true` to run without it"
            ))),
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

impl Prepared {
    /// The descriptors the intermediate needs besides stdio: the status and report
    /// pipes' write ends, the Landlock ruleset.
    pub(super) fn child_fds(&self) -> (&OwnedFd, &OwnedFd, Option<&OwnedFd>, Option<&OwnedFd>) {
        (
            &self.status.1,
            &self.report.1,
            self.ruleset.as_ref(),
            self.trace.as_ref().map(|((_, w), _)| w),
        )
    }

    /// Forks the sandbox from the server itself (std's spawn, with [`child::enter`]
    /// as the `pre_exec` hook).
    fn spawn_direct(&mut self) -> Result<(tokio::process::Child, Pipes), SandboxError> {
        let program = std::ffi::OsStr::from_bytes(self.program.as_bytes());
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(
            self.argv[1..]
                .iter()
                .map(|a| std::ffi::OsStr::from_bytes(a.as_bytes())),
        );
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir)
            .stdin(if self.stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let plan = Arc::new(std::mem::take(&mut self.plan));
        let child_plan = plan.clone();
        // SAFETY: `enter` makes only raw syscalls on the plan, which was prepared before
        // the fork and is not touched by the parent until the child has exec'd.
        unsafe {
            cmd.pre_exec(move || child::enter(&child_plan));
        }
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::Setup(format!("cannot start {}: {e}", program.to_string_lossy()))
        })?;
        let pipes = Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            stderr: child.stderr.take().expect("piped"),
        };
        Ok((child, pipes))
    }

    /// The started sandbox, once its intermediate runs: the server lets go of the
    /// child's ends of the pipes.
    fn started(self, child: Intermediate, pipes: Pipes, launcher: &str) -> Started {
        let Prepared {
            ruleset,
            report,
            status,
            trace,
            mut protections,
            lease,
            cgroup,
            cpu_note,
            ..
        } = self;
        drop((ruleset, report.1, status.1));
        let trace = trace.map(|((marks, w), (began, prepared))| {
            drop(w);
            Trace {
                marks,
                began,
                prepared,
            }
        });
        protections.launcher = Some(launcher.to_string());
        Started {
            child,
            stdin: pipes.stdin,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            status_r: status.0,
            report_r: report.0,
            protections,
            _lease: lease,
            cgroup,
            trace,
            cpu_note,
        }
    }
}

/// Where this process's command line and environment lie in its memory (fields 48–51
/// of `/proc/self/stat`), read once: a sandbox's init blanks its copies of them.
pub(super) fn server_memory() -> ((usize, usize), (usize, usize)) {
    static SPANS: std::sync::OnceLock<((usize, usize), (usize, usize))> =
        std::sync::OnceLock::new();
    *SPANS.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let f: Vec<usize> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // `rest` starts at field 3.
        let at = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        ((at(48), at(49)), (at(50), at(51)))
    })
}

pub(super) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                chown_tree(&e.path(), uid, gid)?;
            } else {
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// The one shared guard (also used by the warm pool).
pub(super) use crate::RemoveDir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_command_line_span_is_found() {
        let ((a, b), (c, d)) = server_memory();
        assert!(a > 0 && b > a && c >= b && d > c, "{a} {b} {c} {d}");
    }
}
