//! What the backend tests share: a run directory beside an input directory, a sink that
//! times lines, and the containment probe every backend must pass.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scriptorium_sandbox::{Backend, Interpreter, Limits, OutputSink, RunSpec, Stream};
use tokio_util::sync::CancellationToken;

pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        Sandbox { dir }
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The script and its input live outside the run directory, as the runner's do.
    pub(crate) fn spec(
        &self,
        interpreter: &Interpreter,
        script: &str,
        input: &str,
        limits: Limits,
    ) -> RunSpec {
        let s = self.dir.path().join("in/script.py");
        std::fs::write(&s, script).unwrap();
        let i = self.dir.path().join("in/input.txt");
        std::fs::write(&i, input).unwrap();
        RunSpec {
            interpreter: interpreter.clone(),
            script: s,
            input: Some(i),
            args: vec![],
            workdir: self.run_dir(),
            limits,
        }
    }
}

/// Lines with the time they arrived.
#[derive(Default)]
pub(crate) struct Timed(pub Mutex<Vec<(Instant, Stream, String)>>);

impl OutputSink for Timed {
    fn line(&self, stream: Stream, line: &str) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), stream, line.to_string()));
    }
}

/// A script that prints, sleeps 1 s and prints: the first line must arrive well before
/// the run ends.
pub(crate) async fn assert_streams_line_by_line(
    backend: &dyn Backend,
    interpreter: &Interpreter,
    limits: Limits,
) {
    let sb = Sandbox::new();
    let sink = Arc::new(Timed::default());
    let spec = sb.spec(
        interpreter,
        "import time\nprint('first')\ntime.sleep(1)\nprint('second')\n",
        "",
        limits,
    );
    let report = backend
        .run(spec, sink.clone(), CancellationToken::new())
        .await
        .unwrap();
    let ended = Instant::now();
    assert!(report.outcome.success(), "{:?}", report.outcome);
    let lines = sink.0.lock().unwrap();
    assert_eq!(
        lines.iter().map(|l| l.2.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let early = ended.duration_since(lines[0].0);
    assert!(
        early >= Duration::from_millis(800),
        "first line came only {early:?} before the end"
    );
}

/// Attempts to reach what a script must not: `/etc/shadow`, a file beside the run
/// directory (like the server's database), `$HOME`, writing outside, a TCP listener on
/// 127.0.0.1, signalling the test process, and the parent's API key. Returns what the
/// script printed and whether the listener saw a connection.
pub(crate) async fn probe_containment(
    backend: &dyn Backend,
    interpreter: &Interpreter,
    limits: Limits,
) -> (String, bool, bool) {
    let sb = Sandbox::new();
    let secret = sb.dir.path().join("scriptorium.db");
    std::fs::write(&secret, "server secret").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = std::env::var("HOME").unwrap();
    let outside = sb.dir.path().join("escaped.txt");
    let script = format!(
        r#"
import os
def attempt(name, f):
    try:
        f()
        print(name, "LEAKED")
    except Exception as e:
        print(name, "denied", type(e).__name__)
attempt("shadow", lambda: open("/etc/shadow").read())
attempt("data", lambda: open({secret:?}).read())
attempt("home", lambda: os.listdir({home:?}))
attempt("write", lambda: open({outside:?}, "w").write("x"))
attempt("parent", lambda: open("../escaped.txt", "w").write("x"))
attempt("tcp", lambda: __import__("socket").create_connection(("127.0.0.1", {port}), timeout=2))
attempt("kill", lambda: os.kill({pid}, 0))
print("key", os.environ.get("OPENROUTER_API_KEY"))
"#,
        pid = std::process::id()
    );
    // The test process has a key in its environment; the script must not see it.
    // SAFETY: the variable is set before the run starts and only read by the child
    // process; no other test of this binary reads or writes it.
    unsafe { std::env::set_var("OPENROUTER_API_KEY", "sk-or-test-secret") };
    let sink = Arc::new(scriptorium_sandbox::Collect::default());
    let report = backend
        .run(
            sb.spec(interpreter, &script, "", limits),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.outcome.success(), "{}", sink.text(Stream::Stderr));
    let text = sink.text(Stream::Stdout);
    for name in ["shadow", "data", "home", "write", "parent", "tcp", "kill"] {
        assert!(text.contains(&format!("{name} denied")), "{name}: {text}");
    }
    assert!(
        !text.contains("LEAKED") && !text.contains("sk-or-test-secret"),
        "{text}"
    );
    assert!(text.contains("key None"), "{text}");
    let escaped = outside.exists();
    let connected = listener.accept().is_ok();
    (text, escaped, connected)
}

/// The linux backend as the server makes it: sandboxes forked by the zygote.
#[cfg(target_os = "linux")]
pub(crate) fn linux(
    config: scriptorium_sandbox::linux::LinuxConfig,
) -> scriptorium_sandbox::linux::LinuxBackend {
    scriptorium_sandbox::linux::LinuxBackend::with_zygote(
        config,
        std::path::Path::new(env!("CARGO_BIN_EXE_scriptorium-sandbox-zygote")),
    )
}
