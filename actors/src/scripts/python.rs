//! Checking Python source with a real interpreter.
//!
//! Starting CPython costs ~30 ms, more than a whole save may take, so one long-lived
//! worker process compiles each source it is sent (length-prefixed on stdin) and answers
//! with one JSON line: the docstring, or the syntax error with line and column. The
//! worker only compiles; it never executes the code it is given.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use crate::domain::syntax::SyntaxProblem;
pub(crate) use crate::error::CheckerError;

const WORKER: &str = r#"
import ast, hashlib, json, sys
inp, out = sys.stdin.buffer, sys.stdout
DOC_HOLDERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
def code_hash(tree):
    # Executable code: the AST without docstrings (comments never reach it), dumped
    # without positions, so formatting, comments and docstrings do not count.
    for node in ast.walk(tree):
        if isinstance(node, DOC_HOLDERS) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    dump = ast.dump(tree, annotate_fields=True, include_attributes=False)
    return hashlib.sha256(dump.encode("utf-8")).hexdigest()
while True:
    header = inp.readline()
    if not header:
        break
    src = inp.read(int(header)).decode("utf-8")
    try:
        compile(src, "<script>", "exec", dont_inherit=True)
        tree = ast.parse(src)
        doc = ast.get_docstring(tree)
        res = {"ok": True, "docstring": doc, "code_hash": code_hash(tree)}
    except SyntaxError as e:
        res = {"ok": False, "message": e.msg, "line": e.lineno, "column": e.offset, "text": (e.text or "").rstrip("\n")}
    except Exception as e:
        res = {"ok": False, "message": f"{type(e).__name__}: {e}", "line": None, "column": None, "text": None}
    out.write(json.dumps(res) + "\n")
    out.flush()
"#;

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Checked {
    /// `code_hash`: SHA-256 of the executable code (the AST without docstrings and
    /// comments, positions left out); equal for sources that differ only in those.
    Valid {
        docstring: Option<String>,
        code_hash: String,
    },
    Invalid(SyntaxProblem),
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    docstring: Option<String>,
    code_hash: Option<String>,
    message: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    text: Option<String>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one check may take before the worker is killed: compiling the largest
/// script accepted (1 MiB) takes well under a second.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest answer line read from the worker.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// How the checker starts a Python to run its worker.
#[derive(Debug, Clone)]
pub enum PythonCommand {
    /// A native interpreter: `PYTHON -I -S -c WORKER`.
    Native(PathBuf),
    /// CPython for WASI through its host, for a machine without a native Python (a
    /// Windows machine without CPython): `PROGRAM ARGS… /run/checker.py` started in
    /// `dir`, where the worker is written first. The guest sees only `dir`, and gets
    /// the host's stdin (`SCRIPTORIUM_WASI_STDIN=1`).
    Wasi {
        program: PathBuf,
        args: Vec<std::ffi::OsString>,
        dir: PathBuf,
    },
}

impl PythonCommand {
    fn describe(&self) -> String {
        match self {
            PythonCommand::Native(p) => p.display().to_string(),
            PythonCommand::Wasi { .. } => "CPython for WASI".into(),
        }
    }

    fn command(&self) -> std::io::Result<Command> {
        match self {
            PythonCommand::Native(python) => {
                let mut c = Command::new(python);
                c.env_clear().args(["-I", "-S", "-c", WORKER]);
                Ok(c)
            }
            PythonCommand::Wasi { program, args, dir } => {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join("checker.py"), WORKER)?;
                let mut c = Command::new(program);
                c.env_clear()
                    .args(args)
                    .arg("/run/checker.py")
                    .current_dir(dir)
                    .env("SCRIPTORIUM_WASI_STDIN", "1");
                Ok(c)
            }
        }
    }
}

pub(crate) struct PythonChecker {
    python: PythonCommand,
    worker: Option<Worker>,
    timeout: Duration,
}

impl PythonChecker {
    pub(crate) fn new(python: &Path) -> PythonChecker {
        PythonChecker::with_command(PythonCommand::Native(python.to_path_buf()))
    }

    pub(crate) fn with_command(python: PythonCommand) -> PythonChecker {
        PythonChecker {
            python,
            worker: None,
            timeout: CHECK_TIMEOUT,
        }
    }

    /// The same checker with another time limit per check.
    #[cfg(test)]
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> PythonChecker {
        self.timeout = timeout;
        self
    }

    fn error(&self, message: impl Into<String>) -> CheckerError {
        CheckerError {
            python: self.python.describe(),
            message: message.into(),
        }
    }

    fn spawn(&self) -> Result<Worker, CheckerError> {
        // The worker sees none of the server's environment (`command` cleared it): it
        // needs none of it.
        let mut command = self
            .python
            .command()
            .map_err(|e| self.error(format!("cannot prepare it: {e}")))?;
        let mut child = command
            .envs(system_root())
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| self.error(format!("cannot start it: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// Compiles `source`; restarts the worker once if it has died.
    pub(crate) fn check(&mut self, source: &str) -> Result<Checked, CheckerError> {
        match self.try_check(source) {
            Ok(c) => Ok(c),
            Err(first) => {
                tracing::warn!(error = %first, "restarting the Python syntax checker");
                self.worker = None;
                self.try_check(source)
            }
        }
    }

    fn try_check(&mut self, source: &str) -> Result<Checked, CheckerError> {
        if self.worker.is_none() {
            self.worker = Some(self.spawn()?);
        }
        let python = self.python.describe();
        let w = self.worker.as_mut().expect("worker just started");
        let io = |e: std::io::Error| CheckerError {
            python: python.clone(),
            message: e.to_string(),
        };
        writeln!(w.stdin, "{}", source.len()).map_err(io)?;
        w.stdin.write_all(source.as_bytes()).map_err(io)?;
        w.stdin.flush().map_err(io)?;
        let mut line = String::new();
        // One answer line, bounded so a broken worker cannot make us buffer forever,
        // and in time: a worker that does not answer is killed, which ends the read.
        let watchdog = Watchdog::start(&w.child, self.timeout);
        let read = (&mut w.stdout).take(MAX_ANSWER).read_line(&mut line);
        let timed_out = watchdog.stop();
        let n = read.map_err(io)?;
        if timed_out {
            self.worker = None;
            return Err(self.error(format!(
                "it gave no answer within {:?} and was stopped; try again",
                self.timeout
            )));
        }
        if n == 0 {
            self.worker = None;
            return Err(self.error("it exited unexpectedly"));
        }
        let a: Answer = serde_json::from_str(&line)
            .map_err(|e| self.error(format!("unreadable answer: {e}")))?;
        Ok(if a.ok {
            Checked::Valid {
                docstring: a.docstring,
                code_hash: a.code_hash.unwrap_or_default(),
            }
        } else {
            Checked::Invalid(SyntaxProblem {
                message: a.message.unwrap_or_else(|| "invalid syntax".into()),
                line: a.line,
                column: a.column,
                text: a.text,
            })
        })
    }
}

/// Kills a worker that has not answered by a deadline, from a thread of its own (the
/// checker itself is blocked reading the answer).
struct Watchdog {
    stop: mpsc::Sender<()>,
    fired: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(child: &Child, timeout: Duration) -> Watchdog {
        let pid = child.id();
        let (stop, stopped) = mpsc::channel::<()>();
        let fired = std::thread::spawn(move || {
            if stopped.recv_timeout(timeout) != Err(mpsc::RecvTimeoutError::Timeout) {
                return false;
            }
            // The child is not reaped before the worker is dropped, so `pid` is still
            // the worker's and cannot name another process.
            kill(pid);
            true
        });
        Watchdog { stop, fired }
    }

    /// Stops the watchdog; true when it had fired.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.fired.join().unwrap_or(true)
    }
}

#[cfg(unix)]
fn kill(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

#[cfg(not(unix))]
fn kill(pid: u32) {
    // `taskkill` ends the process and so the blocked read.
    let _ = Command::new("taskkill")
        .args(["/F", "/PID", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a Windows program needs of the environment to start (CPython and Rust's std
/// initialise their random source from it); nothing elsewhere.
fn system_root() -> Vec<(&'static str, std::ffi::OsString)> {
    if cfg!(windows) {
        vec![(
            "SYSTEMROOT",
            std::env::var_os("SYSTEMROOT").unwrap_or_else(|| "C:\\Windows".into()),
        )]
    } else {
        Vec::new()
    }
}

/// The descriptive name: the docstring's first non-empty line.
pub(crate) fn name_from_docstring(doc: Option<&str>) -> String {
    doc.and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("")
        .to_string()
}

/// The interpreter a script asks for with a `# interpreter: ID` line near its top.
pub(crate) fn interpreter_directive(content: &str) -> Option<&str> {
    content.lines().take(40).find_map(|l| {
        let rest = l.trim().strip_prefix('#')?.trim();
        let id = rest.strip_prefix("interpreter:")?.trim();
        (!id.is_empty() && !id.contains(' ')).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_is_read_from_a_comment() {
        assert_eq!(
            interpreter_directive("\"\"\"Doc\"\"\"\n# interpreter: wasi-cpython-3.14\nprint(1)\n"),
            Some("wasi-cpython-3.14")
        );
        assert_eq!(interpreter_directive("print(1)\n"), None);
    }

    /// A worker that reads the source and never answers: the check fails after its
    /// time limit, and the checker still works afterwards with a real interpreter.
    #[cfg(unix)]
    #[test]
    fn a_worker_that_never_answers_is_stopped_in_time() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mute = d.path().join("python");
        std::fs::write(&mute, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&mute, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut c = PythonChecker::new(&mute).with_timeout(Duration::from_millis(300));
            let _ = tx.send(c.check("x = 1\n").map_err(|e| e.to_string()));
        });
        let answer = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the check returned");
        let err = answer.unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
    }

    fn checker() -> PythonChecker {
        let reg = scriptorium_sandbox::Registry::resolve(Default::default(), Path::new("."));
        PythonChecker::new(&reg.native_default().expect("python3").path)
    }

    #[test]
    fn reports_docstring_and_errors_with_position() {
        let mut c = checker();
        let Checked::Valid { docstring, .. } =
            c.check("\"\"\"Sum it\n\nMore.\"\"\"\nx = 1\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(docstring.as_deref(), Some("Sum it\n\nMore."));
        let Checked::Invalid(p) = c.check("x = 1\ndef f(:\n    pass\n").unwrap() else {
            panic!()
        };
        assert_eq!(p.line, Some(2));
        // Errors found only by the compiler, not the parser, count too.
        let Checked::Invalid(p) = c.check("x = 1\n\nreturn x\n").unwrap() else {
            panic!()
        };
        assert_eq!(p.line, Some(3));
        assert!(p.message.contains("outside function"), "{p:?}");
        // Still alive after errors; non-ASCII is measured in bytes on the wire.
        assert!(matches!(
            c.check("s = 'ünïcödé ✓'\n").unwrap(),
            Checked::Valid { .. }
        ));
    }

    #[test]
    fn a_killed_worker_is_restarted() {
        let mut c = checker();
        c.check("x = 1\n").unwrap();
        c.worker.as_mut().unwrap().child.kill().unwrap();
        assert!(matches!(c.check("y = 2\n").unwrap(), Checked::Valid { .. }));
    }

    fn hash(c: &mut PythonChecker, src: &str) -> String {
        match c.check(src).unwrap() {
            Checked::Valid { code_hash, .. } => code_hash,
            Checked::Invalid(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn the_code_hash_ignores_docstrings_comments_and_layout_only() {
        let mut c = checker();
        let a = hash(
            &mut c,
            "\"\"\"Doc A\"\"\"\ndef f(x):\n    \"\"\"inner\"\"\"\n    return x + 1\n",
        );
        let b = hash(
            &mut c,
            "# a comment\n\"\"\"Another doc\"\"\"\n\ndef f( x ):  # why\n    return (x + 1)\n",
        );
        assert_eq!(a.len(), 64);
        assert_eq!(
            a, b,
            "docstrings, comments and spacing are not executable code"
        );
        let other = hash(&mut c, "def f(x):\n    return x + 2\n");
        assert_ne!(a, other);
        // A string that is not a docstring is code.
        let s1 = hash(&mut c, "x = 1\n'not a docstring'\n");
        let s2 = hash(&mut c, "x = 1\n");
        assert_ne!(s1, s2);
    }

    #[test]
    fn name_is_the_first_docstring_line() {
        assert_eq!(
            name_from_docstring(Some("\n  Load sales\n\nDetails")),
            "Load sales"
        );
        assert_eq!(name_from_docstring(None), "");
    }
}
