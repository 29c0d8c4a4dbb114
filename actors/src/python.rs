//! Checking Python source with a real interpreter.
//!
//! Starting CPython costs ~30 ms, more than a whole save may take, so one long-lived
//! worker process compiles each source it is sent (length-prefixed on stdin) and answers
//! with one JSON line: the docstring, or the syntax error with line and column. The
//! worker only compiles; it never executes the code it is given.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Deserialize;

const WORKER: &str = r#"
import ast, json, sys
inp, out = sys.stdin.buffer, sys.stdout
while True:
    header = inp.readline()
    if not header:
        break
    src = inp.read(int(header)).decode("utf-8")
    try:
        compile(src, "<script>", "exec", dont_inherit=True)
        doc = ast.get_docstring(ast.parse(src))
        res = {"ok": True, "docstring": doc}
    except SyntaxError as e:
        res = {"ok": False, "message": e.msg, "line": e.lineno, "column": e.offset, "text": (e.text or "").rstrip("\n")}
    except Exception as e:
        res = {"ok": False, "message": f"{type(e).__name__}: {e}", "line": None, "column": None, "text": None}
    out.write(json.dumps(res) + "\n")
    out.flush()
"#;

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Valid { docstring: Option<String> },
    Invalid(SyntaxProblem),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SyntaxProblem {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub text: Option<String>,
}

impl std::fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the Python syntax checker ({python}) failed: {message}")]
pub struct CheckerError {
    pub python: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    docstring: Option<String>,
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

pub struct PythonChecker {
    python: PythonCommand,
    worker: Option<Worker>,
}

impl PythonChecker {
    pub fn new(python: &Path) -> PythonChecker {
        PythonChecker::with_command(PythonCommand::Native(python.to_path_buf()))
    }

    pub fn with_command(python: PythonCommand) -> PythonChecker {
        PythonChecker {
            python,
            worker: None,
        }
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
    pub fn check(&mut self, source: &str) -> Result<Checked, CheckerError> {
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
        // One answer line, bounded so a broken worker cannot make us buffer forever.
        let n = (&mut w.stdout)
            .take(4 * 1024 * 1024)
            .read_line(&mut line)
            .map_err(io)?;
        if n == 0 {
            self.worker = None;
            return Err(self.error("it exited unexpectedly"));
        }
        let a: Answer = serde_json::from_str(&line)
            .map_err(|e| self.error(format!("unreadable answer: {e}")))?;
        Ok(if a.ok {
            Checked::Valid {
                docstring: a.docstring,
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
pub fn name_from_docstring(doc: Option<&str>) -> String {
    doc.and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> PythonChecker {
        let reg = scriptorium_sandbox::Registry::resolve(Default::default(), Path::new("."));
        PythonChecker::new(&reg.native_default().expect("python3").path)
    }

    #[test]
    fn reports_docstring_and_errors_with_position() {
        let mut c = checker();
        assert_eq!(
            c.check("\"\"\"Sum it\n\nMore.\"\"\"\nx = 1\n").unwrap(),
            Checked::Valid {
                docstring: Some("Sum it\n\nMore.".into())
            }
        );
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

    #[test]
    fn name_is_the_first_docstring_line() {
        assert_eq!(
            name_from_docstring(Some("\n  Load sales\n\nDetails")),
            "Load sales"
        );
        assert_eq!(name_from_docstring(None), "");
    }
}
