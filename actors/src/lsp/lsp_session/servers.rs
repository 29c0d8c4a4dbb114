//! The language servers a session can run and what each needs from the bridge: its
//! settings (initializationOptions and the answer to `workspace/configuration`) and the
//! files in its workspace that point it at the chosen interpreter. The kind is known
//! from the program's file name; the bridge owns all of this, never the client.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::LspConfig;

/// The servers the bridge knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// pyrefly (`pyrefly lsp`): the default type-aware server.
    Pyrefly,
    /// ty (`ty server`).
    Ty,
    /// basedpyright (`basedpyright-langserver --stdio`).
    Basedpyright,
    /// python-lsp-server (Jedi, with its ruff plugin when no lint server runs beside it).
    Pylsp,
    /// `ruff server`: lint, format, fixes.
    Ruff,
}

impl ServerKind {
    /// The kind a program is, from its file name.
    pub fn of(program: &Path) -> Option<ServerKind> {
        let name = program.file_name()?.to_string_lossy().to_ascii_lowercase();
        let kind = match name.as_str() {
            n if n.starts_with("pyrefly") => ServerKind::Pyrefly,
            n if n.starts_with("basedpyright") => ServerKind::Basedpyright,
            n if n.starts_with("pylsp") => ServerKind::Pylsp,
            n if n.starts_with("ruff") => ServerKind::Ruff,
            "ty" => ServerKind::Ty,
            _ => return None,
        };
        Some(kind)
    }

    /// The name the client is shown (status line, diagnostics' source).
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Pyrefly => "pyrefly",
            ServerKind::Ty => "ty",
            ServerKind::Basedpyright => "basedpyright",
            ServerKind::Pylsp => "pylsp",
            ServerKind::Ruff => "ruff",
        }
    }

    /// The server's own settings. `lint_beside`: a lint server runs next to this one
    /// (pylsp then leaves lint and formatting to it).
    pub fn settings(self, config: &LspConfig, python: &Path, lint_beside: bool) -> Value {
        match self {
            ServerKind::Pyrefly => json!({
                "python": { "pythonPath": python },
                "pyrefly": { "displayTypeErrors": "force-on" },
            }),
            ServerKind::Ty => json!({ "ty": {} }),
            ServerKind::Basedpyright => json!({
                "python": { "pythonPath": python },
                "basedpyright": { "analysis": { "typeCheckingMode": "standard", "autoImportCompletions": true } },
            }),
            ServerKind::Pylsp => pylsp_settings(config, python, !lint_beside),
            ServerKind::Ruff => ruff_settings(config),
        }
    }

    /// What the bridge answers to the server's `workspace/configuration` (by section) and
    /// sends as `didChangeConfiguration` after `initialized`: its settings, where ruff asks
    /// for the section `ruff` what it got as `initializationOptions.settings`.
    pub fn configuration(self, settings: &Value) -> Value {
        match self {
            ServerKind::Ruff => {
                json!({ "ruff": settings.get("settings").cloned().unwrap_or(Value::Null) })
            }
            _ => settings.clone(),
        }
    }

    /// Files the server reads from its workspace to find the interpreter and the
    /// script's own packages (its dependency environment's `site-packages`), written by
    /// the bridge before the server starts: `(file name, content)`.
    pub fn workspace_files(
        self,
        python: &Path,
        packages: &[PathBuf],
    ) -> Vec<(&'static str, String)> {
        let quoted = toml_string(&python.to_string_lossy());
        let list = |key: &str| {
            if packages.is_empty() {
                return String::new();
            }
            let items: Vec<String> = packages
                .iter()
                .map(|p| toml_string(&p.to_string_lossy()))
                .collect();
            format!("{key} = [{}]\n", items.join(", "))
        };
        match self {
            // Without this file pyrefly finds packages but hides type errors.
            ServerKind::Pyrefly => vec![(
                "pyrefly.toml",
                format!(
                    "python-interpreter-path = {quoted}\n{}",
                    list("search-path")
                ),
            )],
            ServerKind::Ty => vec![(
                "ty.toml",
                format!("[environment]\npython = {quoted}\n{}", list("extra-paths")),
            )],
            ServerKind::Basedpyright if !packages.is_empty() => vec![(
                "pyrightconfig.json",
                json!({ "extraPaths": packages }).to_string(),
            )],
            _ => Vec::new(),
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ruff server`'s settings: the project's rules inline, and no configuration file is
/// read (`editorOnly`): a document's directory is the session's, and nothing there is
/// the client's to choose.
fn ruff_settings(config: &LspConfig) -> Value {
    let mut lint = json!({});
    if !config.select.is_empty() {
        lint["select"] = json!(config.select);
    }
    json!({ "settings": {
        "configurationPreference": "editorOnly",
        "configuration": { "line-length": config.line_length, "lint": lint },
        "lineLength": config.line_length,
        "logLevel": "warn",
    }})
}

/// pylsp: Jedi analyses with the chosen interpreter (inside the sandbox its paths are the
/// same as outside), with no extra paths; lint and formatting from its ruff plugin (run
/// as `python -m ruff`) unless `ruff server` runs beside it; every plugin that runs other
/// programs or reads other configuration is off.
fn pylsp_settings(config: &LspConfig, python: &Path, ruff_plugin: bool) -> Value {
    json!({ "pylsp": {
        "configurationSources": [],
        "plugins": {
            // No `env_vars`: Jedi's process inherits the sandbox's clean environment.
            "jedi": { "environment": python, "extra_paths": [] },
            "ruff": { "enabled": ruff_plugin, "formatEnabled": ruff_plugin, "lineLength": config.line_length, "select": config.select,
                      "executable": Value::Null, "config": Value::Null },
            "pycodestyle": { "enabled": false },
            "pyflakes": { "enabled": false },
            "mccabe": { "enabled": false },
            "autopep8": { "enabled": false },
            "yapf": { "enabled": false },
            "pylint": { "enabled": false },
            "flake8": { "enabled": false },
            "pydocstyle": { "enabled": false },
            "rope_autoimport": { "enabled": false },
            "rope_completion": { "enabled": false },
        }
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_program_name() {
        let k = |p: &str| ServerKind::of(Path::new(p));
        assert_eq!(k("build/lsp/bin/pyrefly"), Some(ServerKind::Pyrefly));
        assert_eq!(k("/x/bin/ruff"), Some(ServerKind::Ruff));
        assert_eq!(k("/x/bin/ty"), Some(ServerKind::Ty));
        assert_eq!(
            k("/x/basedpyright-langserver"),
            Some(ServerKind::Basedpyright)
        );
        assert_eq!(k("/x/pylsp"), Some(ServerKind::Pylsp));
        assert_eq!(k("/x/bin/tyrant"), None);
    }

    #[test]
    fn pyrefly_is_pointed_at_the_interpreter_by_a_file_it_cannot_misread() {
        let files = ServerKind::Pyrefly.workspace_files(Path::new("/opt/v\"e\nnv/bin/python"), &[]);
        assert_eq!(files[0].0, "pyrefly.toml");
        assert_eq!(
            files[0].1,
            "python-interpreter-path = \"/opt/v\\\"e\\u000Anv/bin/python\"\n"
        );
    }

    #[test]
    fn pylsp_leaves_lint_to_ruff_server_when_it_runs_beside() {
        let c = LspConfig::default();
        let s = ServerKind::Pylsp.settings(&c, Path::new("/usr/bin/python3"), true);
        assert_eq!(s["pylsp"]["plugins"]["ruff"]["enabled"], false);
        let s = ServerKind::Ruff.settings(&c, Path::new("/usr/bin/python3"), false);
        assert_eq!(s["settings"]["configurationPreference"], "editorOnly");
        assert_eq!(s["settings"]["configuration"]["line-length"], 100);
        let answers = ServerKind::Ruff.configuration(&s);
        assert_eq!(answers["ruff"]["configurationPreference"], "editorOnly");
    }
}
