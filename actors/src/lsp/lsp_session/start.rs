//! Starting a language server in its sandbox, or not at all: a machine without the full
//! sandbox is refused, and so is a server whose sandbox lacks a protection.

use std::path::{Path, PathBuf};

use scriptorium_sandbox::Interpreter;
use scriptorium_sandbox::linux::{LinuxBackend, ProcessSpec, SandboxedProcess};

use super::{LspError, ServerKind, ServerProgram};

/// Refuses a machine where the sandbox would miss a protection.
fn require_full_sandbox(support: scriptorium_sandbox::linux::Support) -> Result<(), LspError> {
    let mut missing = Vec::new();
    if !support.user_namespaces {
        missing.push("user namespaces");
    }
    if support.landlock_abi < 1 {
        missing.push("Landlock");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LspError::NoSandbox(missing.join(" and ")))
    }
}

/// Starts `server` in a fresh sandbox with `workspace` as its only writable place,
/// able to read `interpreter`'s installation, with the files that point it at that
/// interpreter written there first. It forks: call it from a thread that
/// outlives the session (the sandbox gets SIGKILL when that thread ends), e.g. the
/// session's async task, not `spawn_blocking`.
pub fn start_server(
    backend: &LinuxBackend,
    server: &ServerProgram,
    interpreter: &Interpreter,
    packages: &[PathBuf],
    workspace: &Path,
) -> Result<SandboxedProcess, LspError> {
    require_full_sandbox(backend.support())?;
    std::fs::create_dir_all(workspace)?;
    for (name, content) in server.kind.workspace_files(&interpreter.path, packages) {
        std::fs::write(workspace.join(name), content)?;
    }
    let bin_dir = server
        .program
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // pyrefly asks the chosen interpreter for its paths, Jedi runs it inside the same
    // sandbox (and imports compiled modules there to inspect them): the server gets at
    // least the room that interpreter's runs get.
    let mut limits = server.limits.clone();
    limits.memory_mib = limits.memory_mib.max(interpreter.limits.memory_mib);
    let spec = ProcessSpec {
        program: server.program.clone(),
        args: server.args.iter().map(Into::into).collect(),
        interpreter: Some(interpreter.clone()),
        // The script's dependency environment, read-only like everything it reads.
        read: server.read.iter().chain(packages).cloned().collect(),
        workdir: workspace.to_path_buf(),
        // Its own bin directory first (pylsp's ruff plugin); nothing of the server's
        // environment: the sandbox's clean set.
        env: vec![(
            "PATH".into(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )],
        limits,
        address_space_mib: None,
    };
    let process = backend.spawn(&spec)?;
    // `allow_degraded` lets runs go on with less; a language server does not. (Without
    // cgroups its memory and processes are still bounded per process by rlimits.)
    let missing: Vec<&str> = process
        .protections
        .missing
        .iter()
        .map(String::as_str)
        .filter(|m| !m.starts_with("cgroups"))
        .collect();
    if !missing.is_empty() {
        return Err(LspError::NoSandbox(missing.join(" and ")));
    }
    Ok(process)
}

/// One server of a session, started in its sandbox ([`start_server`]).
pub struct StartedServer {
    pub kind: ServerKind,
    pub process: SandboxedProcess,
    /// Its writable directory, removed when the session ends.
    pub workspace: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_full_sandbox_is_refused() {
        use scriptorium_sandbox::linux::Support;
        assert!(
            require_full_sandbox(Support {
                landlock_abi: 7,
                user_namespaces: true,
                root: true
            })
            .is_ok()
        );
        let e = require_full_sandbox(Support {
            landlock_abi: 0,
            user_namespaces: false,
            root: true,
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("lacks user namespaces and Landlock"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("refused rather than run unsandboxed"),
            "{e}"
        );
    }
}
