//! The tools the model may call. Introspection of the interpreter (installed modules,
//! signatures, docstrings) runs in the sandbox, like any script. File access exists only
//! when `[llm] sandbox_dir` is set, and is read-only and confined to that directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use scriptorium_sandbox::{Backends, Collect, Interpreter, Limits, RemoveDir, RunSpec, Stream};

/// Longest tool answer passed back to the model.
const MAX_RESULT: usize = 16 * 1024;

const INTROSPECT: &str = r#"
import importlib, inspect, json, pkgutil, sys
request = json.load(open(sys.argv[1]))
op = request["op"]
def trim(s, n=300):
    s = (s or "").strip()
    return s if len(s) <= n else s[:n] + "…"
if op == "modules":
    names = {m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names)
    prefix = request.get("prefix") or ""
    print(json.dumps(sorted(n for n in names if n.startswith(prefix) and not n.startswith("_"))))
elif op == "signatures":
    mod = importlib.import_module(request["module"])
    out = {}
    for name in sorted(getattr(mod, "__all__", None) or dir(mod)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name, None)
        if callable(obj):
            try:
                out[name] = name + str(inspect.signature(obj))
            except (TypeError, ValueError):
                out[name] = name + "(…)"
    print(json.dumps(out))
elif op == "doc":
    path = request["name"].split(".")
    obj = importlib.import_module(path[0])
    for i, part in enumerate(path[1:], 1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(path[: i + 1]))
    sig = ""
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        pass
    print(json.dumps({"name": request["name"], "signature": sig, "doc": trim(inspect.getdoc(obj), 2000)}))
"#;

pub(crate) struct Tools {
    pub interpreter: Interpreter,
    pub backends: Backends,
    /// Where the introspection runs get their run directories.
    pub scratch: PathBuf,
    pub sandbox_dir: Option<PathBuf>,
    /// The script's declared (PEP 723) and locked packages.
    pub dependencies: crate::deps::Dependencies,
}

fn function(name: &str, description: &str, parameters: Value) -> Value {
    json!({ "type": "function", "function": { "name": name, "description": description, "parameters": parameters } })
}

impl Tools {
    /// The tool definitions sent with each request.
    pub(crate) fn definitions(&self) -> Vec<Value> {
        let none = json!({ "type": "object", "properties": {} });
        let mut tools = vec![
            function(
                "interpreter_version",
                "The exact Python implementation and version the script will run on.",
                none.clone(),
            ),
            function(
                "installed_modules",
                "Names of the modules that can be imported (standard library and installed packages).",
                json!({ "type": "object", "properties": { "prefix": { "type": "string", "description": "only names starting with this" } } }),
            ),
            function(
                "module_signatures",
                "The public functions and classes of a module with their signatures.",
                json!({ "type": "object", "properties": { "module": { "type": "string" } }, "required": ["module"] }),
            ),
            function(
                "usage_example",
                "The signature and docstring (usage, examples) of a module, function or class, e.g. `csv.DictReader`.",
                json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }),
            ),
            function(
                "script_dependencies",
                "The packages this script declares in its `# /// script` block (PEP 723) and the versions its saved lock pins. To use another package, add it to `dependencies` in that block (create the block if missing); saving resolves and installs it.",
                none.clone(),
            ),
        ];
        if self.sandbox_dir.is_some() {
            tools.push(function(
                "list_files",
                "List the files in the shared read-only data directory (or a subdirectory of it).",
                json!({ "type": "object", "properties": { "path": { "type": "string" } } }),
            ));
            tools.push(function(
                "read_file",
                "Read a text file from the shared read-only data directory (at most 64 KiB).",
                json!({ "type": "object", "properties": { "path": { "type": "string" } }, "required": ["path"] }),
            ));
        }
        tools
    }

    /// Runs one tool call; errors become the result text the model sees.
    pub(crate) async fn call(&self, name: &str, arguments: &str) -> String {
        let args: Value = serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        })
        .unwrap_or(Value::Null);
        let result = match name {
            "interpreter_version" => Ok(format!(
                "{} {}",
                self.interpreter.implementation, self.interpreter.version
            )),
            "installed_modules" => {
                self.introspect(
                    json!({ "op": "modules", "prefix": args["prefix"].as_str().unwrap_or("") }),
                )
                .await
            }
            "module_signatures" => match args["module"].as_str().filter(|m| valid_dotted(m)) {
                Some(m) => {
                    self.introspect(json!({ "op": "signatures", "module": m }))
                        .await
                }
                None => Err("give `module` as a dotted module name".to_string()),
            },
            "usage_example" => match args["name"].as_str().filter(|m| valid_dotted(m)) {
                Some(n) => self.introspect(json!({ "op": "doc", "name": n })).await,
                None => Err("give `name` as a dotted name such as `csv.DictReader`".to_string()),
            },
            "script_dependencies" => {
                serde_json::to_string(&self.dependencies).map_err(|e| e.to_string())
            }
            "list_files" | "read_file" => match &self.sandbox_dir {
                Some(dir) => files(dir, name, args["path"].as_str().unwrap_or("")),
                None => Err("file access is not enabled".to_string()),
            },
            other => Err(format!("there is no tool `{other}`")),
        };
        let mut text = match result {
            Ok(t) => t,
            Err(e) => format!("error: {e}"),
        };
        if text.len() > MAX_RESULT {
            let cut = (0..=MAX_RESULT)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("\n… (cut)");
        }
        text
    }

    async fn introspect(&self, request: Value) -> Result<String, String> {
        let n: u64 = rand_id();
        let dir = self.scratch.join(format!("tool-{n:016x}"));
        let _cleanup = RemoveDir(dir.clone());
        let script = dir.join(".scriptorium-introspect.py");
        let input = dir.join("request.json");
        let (d, s, i) = (dir.clone(), script.clone(), input.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&d)?;
            std::fs::write(&s, INTROSPECT)?;
            std::fs::write(&i, request.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let limits = Limits {
            wall_seconds: 20.0,
            cpu_seconds: 20,
            memory_mib: 1024,
            output_bytes: 1 << 20,
            ..Limits::default()
        };
        let spec = RunSpec {
            interpreter: self.interpreter.clone(),
            script,
            input: Some(input),
            args: vec![],
            workdir: dir,
            limits,
        };
        let backend = self
            .backends
            .get(self.interpreter.default_backend)
            .map_err(|e| e.to_string())?;
        let sink = Arc::new(Collect::default());
        let report = backend
            .run(spec, sink.clone(), CancellationToken::new())
            .await
            .map_err(|e| e.to_string())?;
        if report.outcome.success() {
            Ok(sink.text(Stream::Stdout).trim().to_string())
        } else {
            let err = sink.text(Stream::Stderr);
            Err(err
                .lines()
                .last()
                .unwrap_or(&report.outcome.message())
                .to_string())
        }
    }
}

fn valid_dotted(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 200
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// Lists or reads inside `root` only: no absolute paths, no `..`, no links out.
fn files(root: &Path, op: &str, rel: &str) -> Result<String, String> {
    let rel = Path::new(rel);
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("paths are relative to the data directory, without `..`".into());
    }
    let root =
        std::fs::canonicalize(root).map_err(|e| format!("the data directory is missing: {e}"))?;
    let path = std::fs::canonicalize(root.join(rel))
        .map_err(|_| format!("{} does not exist", rel.display()))?;
    if !path.starts_with(&root) {
        return Err("that path leads outside the data directory".into());
    }
    if op == "list_files" {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    format!("{n}/")
                } else {
                    n
                }
            })
            .collect();
        names.sort();
        Ok(names.join("\n"))
    } else {
        let meta = std::fs::metadata(&path).map_err(|e| e.to_string())?;
        if meta.len() > 64 * 1024 {
            return Err(format!(
                "the file is {} bytes; at most 65536 are read",
                meta.len()
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|_| "not a text file".to_string())
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_access_stays_inside_the_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("data/a.csv"), "x,y\n").unwrap();
        std::fs::write(d.path().join("secret.txt"), "no").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path().join("secret.txt"), d.path().join("data/link"))
            .unwrap();
        let root = d.path().join("data");
        assert_eq!(files(&root, "read_file", "a.csv").unwrap(), "x,y\n");
        assert!(files(&root, "read_file", "../secret.txt").is_err());
        assert!(files(&root, "read_file", "/etc/passwd").is_err());
        assert!(
            files(&root, "read_file", "link")
                .unwrap_err()
                .contains("outside")
        );
        assert!(files(&root, "list_files", "").unwrap().contains("a.csv"));
    }
}
