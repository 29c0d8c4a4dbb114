//! The jail: escapes a hostile script tries (issue 14). Each asserts the attack failed
//! and what stopped it.

use super::*;

/// Runs `script` in a cold sandbox and returns its stdout; it must exit 0.
async fn probe(script: &str) -> (RunReport, String) {
    let sb = Sandbox::new();
    let (report, out) = run(&sb, script, limits()).await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        out.text(Stream::Stderr)
    );
    (report, out.text(Stream::Stdout))
}

/// Python that calls a raw syscall and prints `name ok` or `name <errno name>`.
const SYSCALL: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    e = ctypes.get_errno()
    print(name, "ok" if r >= 0 else errno.errorcode.get(e, str(e)), flush=True)
    return r
"#;

#[tokio::test]
async fn a_key_in_the_servers_session_keyring_is_out_of_reach() {
    // The test process joins a session keyring of its own and puts a secret in it, as
    // a server might hold a credential there.
    let desc = format!("scriptorium-test-{}", std::process::id());
    // SAFETY: add_key with NUL-terminated strings and a buffer that outlive the call.
    let serial = unsafe {
        assert!(
            libc::syscall(libc::SYS_keyctl, 1, c"scriptorium-test-session".as_ptr()) >= 0,
            "join a session keyring"
        );
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            std::ffi::CString::new(desc.clone()).unwrap().as_ptr(),
            c"key-secret-payload".as_ptr(),
            18usize,
            -3i64, // KEY_SPEC_SESSION_KEYRING
        )
    };
    assert!(serial > 0, "add_key: {}", std::io::Error::last_os_error());
    let script = format!(
        r#"{SYSCALL}
buf = ctypes.create_string_buffer(256)
call("read", 250, 11, {serial}, buf, 256)  # KEYCTL_READ
print("payload", buf.value)
call("search", 250, 10, -3, b"user", {desc:?}.encode(), 0)  # KEYCTL_SEARCH in the session keyring
try:
    keys = open("/proc/keys").read()
    print("proc_keys", "LEAKED" if {desc:?} in keys else "hidden")
except OSError as e:
    print("proc_keys", type(e).__name__)
"#
    );
    let (report, out) = probe(&script).await;
    assert!(!out.contains("key-secret-payload"), "{out}");
    assert!(
        out.contains("read EPERM\n") && out.contains("search EPERM\n"),
        "seccomp refuses keyctl: {out}"
    );
    assert!(
        out.contains("proc_keys FileNotFoundError"),
        "/proc has only the processes: {out}"
    );
    assert!(report.protections.private_keyring);
}

#[tokio::test]
async fn kernel_attack_surface_is_refused_by_seccomp() {
    let script = format!(
        r#"{SYSCALL}
params = ctypes.create_string_buffer(120)
call("io_uring_setup", 425, 1, params)
call("userfaultfd", 323, 1)  # UFFD_USER_MODE_ONLY
call("keyctl", 250, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
call("bpf", 321, 0, 0, 0)
call("ptrace", 101, 16, 1, 0, 0)  # PTRACE_ATTACH to init
call("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
call("clone3", 435, 0, 0)
call("nf_tables_socket", 41, 16, 3, 12)  # socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)
call("route_socket", 41, 16, 3, 0)  # NETLINK_ROUTE stays: getaddrinfo uses it
call("unshare", 272, 0x10000000 | 0x40000000)  # CLONE_NEWUSER | CLONE_NEWNET
pid = os.fork()  # plain fork still works (clone without namespace flags)
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
"#
    );
    let (report, out) = probe(&script).await;
    for name in [
        "io_uring_setup",
        "userfaultfd",
        "keyctl",
        "bpf",
        "ptrace",
        "mount",
        "nf_tables_socket",
        "unshare",
    ] {
        assert!(out.contains(&format!("{name} EPERM\n")), "{name}: {out}");
    }
    assert!(
        out.contains("clone3 ENOSYS\n"),
        "libc falls back to clone: {out}"
    );
    assert!(
        out.contains("route_socket ok\n") && out.contains("fork 7\n"),
        "{out}"
    );
    let seccomp = report
        .protections
        .seccomp
        .expect("the run record names the filter");
    assert!(
        seccomp.starts_with("docker-default-like, ") && seccomp.ends_with(" syscalls denied"),
        "{seccomp}"
    );
}

#[tokio::test]
async fn a_host_unix_socket_outside_tmp_is_not_there() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({path:?})\n    print('connected LEAKED')\nexcept OSError as e:\n    print('connect', type(e).__name__)\n"
    );
    let (_, out) = probe(&script).await;
    assert_eq!(
        out, "connect FileNotFoundError\n",
        "the socket's path does not exist in the minimal root"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
}

#[tokio::test]
async fn a_run_cannot_touch_a_concurrent_runs_directory() {
    let runs = Runs::new();
    let backend = support::linux(LinuxConfig::default());
    let interp = python();
    let a_dir = runs.path().join("1");
    // A waits until B is done with its attack, then writes its result.
    let a = "import os, time\nfor _ in range(200):\n    if os.path.exists('../2/done'):\n        break\n    time.sleep(0.05)\nopen('result.txt', 'w').write('A ok')\nprint(os.listdir('.'))\n";
    let b = format!(
        r#"
import os
for name, f in [("chmod", lambda: os.chmod({a:?}, 0)), ("write", lambda: open({a:?} + "/evil", "w")),
                ("list", lambda: os.listdir({a:?})), ("chmod_tmp", lambda: os.chmod("/tmp", 0))]:
    try:
        f(); print(name, "done")
    except OSError as e:
        print(name, type(e).__name__)
open("done", "w").close()
"#,
        a = a_dir.display().to_string()
    );
    let (sa, sb) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    let (ra, rb) = tokio::join!(
        backend.run(
            runs.spec(1, &interp, a, limits()),
            sa.clone(),
            CancellationToken::new()
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            backend
                .run(
                    runs.spec(2, &interp, &b, limits()),
                    sb.clone(),
                    CancellationToken::new(),
                )
                .await
        }
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(rb.outcome.success(), "{}", sb.text(Stream::Stderr));
    let out_b = sb.text(Stream::Stdout);
    // B's /tmp is its own: whatever it does to it stays there.
    assert!(
        out_b.starts_with(
            "chmod FileNotFoundError\nwrite FileNotFoundError\nlist FileNotFoundError\nchmod_tmp "
        ),
        "B sees no other run: {out_b}"
    );
    assert!(
        ra.outcome.success(),
        "A was harmed: {}",
        sa.text(Stream::Stderr)
    );
    assert_eq!(
        std::fs::read_to_string(a_dir.join("result.txt")).unwrap(),
        "A ok"
    );
    assert!(!a_dir.join("evil").exists());
    // SAFETY: a getter without side effects.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            ra.protections.uid, rb.protections.uid,
            "each run has a host uid of its own"
        );
        assert_eq!(
            Some(std::fs::metadata(&a_dir).unwrap().uid()),
            ra.protections.uid
        );
        assert_eq!(
            std::fs::metadata(&a_dir).unwrap().mode() & 0o777,
            0o700,
            "closed to every other uid"
        );
        assert_eq!(
            Some(std::fs::metadata(runs.path().join("2")).unwrap().uid()),
            rb.protections.uid
        );
    }
}

#[tokio::test]
async fn pid_1_shows_nothing_of_the_server() {
    let me = std::env::args().next().unwrap();
    let script = r#"
import os
for f in ["cmdline", "environ", "comm", "status"]:
    try:
        print(f, repr(open("/proc/1/" + f, "rb").read()))
    except OSError as e:
        print(f, type(e).__name__)
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("proc", sorted(p for p in os.listdir("/proc") if not p.isdigit()))
"#;
    let (_, out) = probe(script).await;
    let name = Path::new(&me)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        !out.contains(&name) && !out.contains("OPENROUTER"),
        "the test binary's command line shows: {out}"
    );
    // init cannot be seen at all: only what the script may ptrace is listed.
    assert!(out.contains("cmdline FileNotFoundError"), "{out}");
    let pids = out.lines().find(|l| l.starts_with("pids ")).unwrap();
    assert_eq!(pids, "pids [2]", "only the script's own process: {out}");
    let proc = out.lines().find(|l| l.starts_with("proc ")).unwrap();
    assert_eq!(
        proc, "proc ['self', 'thread-self']",
        "no host information in /proc: {out}"
    );
}

#[tokio::test]
async fn the_root_holds_only_what_the_run_needs() {
    let host_mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| !["/", "/dev", "/proc", "/tmp"].contains(&m.as_str()))
        .collect();
    let script = r#"
import os
mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
print("mounts", len(mounts))
for m in mounts:
    print("mount", m)
# Landlock still refuses to list the skeleton directories; what exists is asked by path.
for p in ["/sys", "/boot", "/home", "/run", "/srv", "/mnt", "/etc/passwd", "/etc/hostname", "/dev/pts", "/dev/tty",
          "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm", "/dev/stdin"]:
    print("exists", p, os.path.exists(p))
tmp = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == "/tmp"][0]
print("tmp_fs", tmp[tmp.index("-") + 1])
st = os.statvfs("/tmp")
print("tmp_mib", st.f_blocks * st.f_frsize // 2**20)
chunk = b"x" * (16 * 2**20)
try:
    for i in range(20):
        open(f"/tmp/big{i}", "wb").write(chunk)
    print("big written")
except OSError as e:
    print("big", type(e).__name__, e.errno)
"#;
    // /tmp is bounded by the run's disk quota.
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        script,
        Limits {
            disk_mib: 256,
            ..limits()
        },
    )
    .await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        out.text(Stream::Stderr)
    );
    let out = out.text(Stream::Stdout);
    let mounts: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("mount "))
        .collect();
    for m in &host_mounts {
        assert!(
            !mounts.contains(&m.as_str()),
            "the host's mount {m} is visible: {out}"
        );
    }
    assert!(mounts.len() <= 30, "{out}");
    for p in [
        "/sys",
        "/boot",
        "/home",
        "/run",
        "/srv",
        "/mnt",
        "/etc/passwd",
        "/etc/hostname",
        "/dev/pts",
        "/dev/tty",
    ] {
        assert!(
            out.contains(&format!("exists {p} False\n")),
            "{p} is visible: {out}"
        );
    }
    for p in [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/shm",
        "/dev/stdin",
    ] {
        assert!(
            out.contains(&format!("exists {p} True\n")),
            "{p} is missing: {out}"
        );
    }
    assert!(
        out.contains("tmp_fs tmpfs\n") && out.contains("tmp_mib 256\n"),
        "{out}"
    );
    assert!(
        out.contains("big OSError 28"),
        "a full /tmp says ENOSPC: {out}"
    );
}

/// The run's cgroup path names the server's own cgroup and pid (`<own>/scriptorium-runs/
/// <pid>-<n>`); a cgroup namespace, entered after joining, shows the script only `/`.
#[tokio::test]
async fn the_cgroup_path_shows_nothing_of_the_host() {
    let script = "print(open('/proc/self/cgroup').read(), end='')\n";
    let (report, out) = probe(script).await;
    assert!(!out.is_empty(), "no /proc/self/cgroup");
    for line in out.lines() {
        assert!(line.ends_with(":/"), "a host cgroup path shows: {out}");
    }
    let me = std::process::id().to_string();
    assert!(
        !out.contains("scriptorium-runs") && !out.contains(&me),
        "{out}"
    );
    assert!(
        report.protections.namespaces.contains(&"cgroup"),
        "{:?}",
        report.protections.namespaces
    );
}
