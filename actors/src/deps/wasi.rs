//! Dependencies under the `wasi` backend: the lock's environment is installed by uv for
//! the native interpreter locks are made for, and used only if every wheel in it is
//! pure Python (`py3-none-any`); the guest then gets its `site-packages` preopened
//! read-only at `/deps` and a bootstrap that puts that on `sys.path`. A platform wheel
//! (compiled code) cannot run inside the WebAssembly guest: the run is refused naming it.

use std::path::Path;

use scriptorium_sandbox::Interpreter;

/// Where the wasi backend preopens an interpreter's read path for the guest
/// (`scriptorium_sandbox::wasi::host::GUEST_DEPS`; that module exists only with the
/// sandbox's `wasi` feature).
const GUEST_DEPS: &str = "/deps";

/// Refuses an environment with a wheel that is not pure Python, naming it.
pub(crate) fn pure_python(site_packages: &Path) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(site_packages)
        .map_err(|e| format!("cannot read {}: {e}", site_packages.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dist-info"))
        .collect();
    entries.sort();
    for dist in entries {
        let wheel = std::fs::read_to_string(dist.join("WHEEL")).unwrap_or_default();
        let tags: Vec<&str> = wheel
            .lines()
            .filter_map(|l| l.strip_prefix("Tag:"))
            .map(str::trim)
            .collect();
        if tags.is_empty() || tags.iter().any(|t| !t.ends_with("-none-any")) {
            let name = dist
                .file_stem()
                .map(|s| s.to_string_lossy().replacen('-', " ", 1))
                .unwrap_or_default();
            return Err(format!(
                "the dependency `{name}` is a platform wheel ({}), compiled code that cannot run under WASI; only pure-Python wheels (py3-none-any) can. Run this script with backend linux",
                if tags.is_empty() {
                    "no tag".to_string()
                } else {
                    tags.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// The WASI interpreter with `site_packages` preopened read-only and a bootstrap (written to
/// `side_dir`, inside the run directory) that appends it to `sys.path` and runs the
/// script.
pub(crate) fn with_env(
    interp: &Interpreter,
    site_packages: &Path,
    side_dir: &Path,
) -> std::io::Result<Interpreter> {
    let boot = side_dir.join("deps_bootstrap.py");
    std::fs::write(
        &boot,
        format!(
            "import runpy, sys\n\
             sys.path.append({GUEST_DEPS:?})\n\
             del sys.argv[0]\n\
             runpy.run_path(sys.argv[0], run_name=\"__main__\")\n"
        ),
    )?;
    let mut i = interp.clone();
    i.read_paths = vec![site_packages.to_path_buf()];
    i.wrapper = Some(boot);
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::pure_python;

    fn dist(site: &Path, name: &str, tag: &str) {
        let d = site.join(format!("{name}.dist-info"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("WHEEL"),
            format!("Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n"),
        )
        .unwrap();
    }

    use std::path::Path;

    #[test]
    fn a_platform_wheel_is_named_and_pure_wheels_pass() {
        let site = tempfile::tempdir().unwrap();
        dist(site.path(), "tabulate-0.9.0", "py3-none-any");
        assert_eq!(pure_python(site.path()), Ok(()));
        dist(
            site.path(),
            "markupsafe-3.0.2",
            "cp311-cp311-manylinux_2_17_x86_64",
        );
        let e = pure_python(site.path()).unwrap_err();
        assert!(e.contains("`markupsafe 3.0.2`"), "{e}");
        assert!(e.contains("cp311-cp311-manylinux_2_17_x86_64"), "{e}");
        assert!(e.contains("backend linux"), "{e}");
    }
}
