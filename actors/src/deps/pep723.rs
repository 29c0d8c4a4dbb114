//! Finding and parsing a script's PEP 723 metadata block:
//!
//! ```text
//! # /// script
//! # requires-python = ">=3.11"
//! # dependencies = ["tabulate==0.9.0"]
//! # ///
//! ```

use serde::Deserialize;

/// What a script declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub requires_python: Option<String>,
    pub dependencies: Vec<String>,
}

impl Metadata {
    /// The canonical text the lock is a function of (one requirement a line, trimmed).
    pub(crate) fn requirements(&self) -> String {
        let mut s = String::new();
        for d in &self.dependencies {
            s.push_str(d.trim());
            s.push('\n');
        }
        s
    }
}

/// A malformed block, named by its line (1-based) in the script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the `# /// script` metadata block (PEP 723) at line {line} is not valid: {message}")]
pub(crate) struct BlockError {
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    requires_python: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
    /// uv's own table (`[tool.uv]`) is allowed and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    tool: Option<toml::Table>,
}

/// The script's `script` block, if it has one. Other block types are ignored, as PEP
/// 723 asks; two `script` blocks, an unclosed block or invalid TOML are errors.
pub(crate) fn parse(content: &str) -> Result<Option<Metadata>, BlockError> {
    let lines: Vec<&str> = content.lines().collect();
    let mut found: Option<(usize, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let Some(kind) = lines[i].strip_prefix("# /// ") else {
            i += 1;
            continue;
        };
        let start = i;
        let kind = kind.trim_end();
        let mut body = String::new();
        let mut end = None;
        let mut j = i + 1;
        while j < lines.len() {
            let l = lines[j];
            if l.trim_end() == "# ///" {
                end = Some(j);
            } else if l == "#" {
                body.push('\n');
            } else if let Some(rest) = l.strip_prefix("# ") {
                body.push_str(rest);
                body.push('\n');
            } else {
                break;
            }
            j += 1;
        }
        // PEP 723: the block ends at the last `# ///` before a non-comment line.
        let Some(end) = end else {
            return Err(BlockError {
                line: start + 1,
                message: format!(
                    "the `# /// {kind}` block has no closing `# ///` line; end it with `# ///`"
                ),
            });
        };
        if kind == "script" {
            if found.is_some() {
                return Err(BlockError {
                    line: start + 1,
                    message: "a script may have only one `# /// script` block; merge them".into(),
                });
            }
            let body: String = body
                .lines()
                .take(end - start - 1)
                .collect::<Vec<_>>()
                .join("\n");
            found = Some((start, body));
        }
        i = end + 1;
    }
    let Some((start, body)) = found else {
        return Ok(None);
    };
    let raw: Raw = toml::from_str(&body).map_err(|e| {
        let line = e
            .span()
            .map(|s| start + 2 + body[..s.start.min(body.len())].matches('\n').count())
            .unwrap_or(start + 1);
        BlockError {
            line,
            message: format!(
                "{}; it holds TOML such as `dependencies = [\"tabulate\"]`",
                e.message()
            ),
        }
    })?;
    for d in &raw.dependencies {
        check_requirement(d).map_err(|message| BlockError {
            line: start + 1,
            message,
        })?;
    }
    Ok(Some(Metadata {
        requires_python: raw.requires_python,
        dependencies: raw.dependencies,
    }))
}

/// Rejects what is not a plain requirement from an index. uv reads a requirements line
/// as a URL (`https://…`, `git+file://…`), a host path (`../x`, `x-1.0-py3-none-any.whl`,
/// `pkg.tar.gz`) or options (`--index-url`, a tab before `--hash`) as readily as a
/// name, and it runs with the server's privileges: anything but a PEP 508 name followed
/// by extras, version specifiers and markers would let a script read host files or
/// reach past the configured index. So the line must start with a name, the name must
/// not end like an archive, and what follows must begin a specifier or marker.
fn check_requirement(d: &str) -> Result<(), String> {
    let t = d.trim();
    if t.is_empty() {
        return Err("a dependency is empty; write a package name such as \"tabulate\"".into());
    }
    let refuse = || {
        Err(format!(
            "dependency `{}` is not a package requirement; write a name with an optional version, e.g. \"tabulate>=0.9\" (options, URLs and paths are not allowed)",
            t.escape_debug()
        ))
    };
    // Per-requirement options (`name --hash …`, also after a tab), continuations,
    // direct references (`name @ url`) and `${VAR}` expansion.
    if t.contains(" -")
        || t.contains(['@', '\n', '\r', '\\', '$'])
        || t.chars()
            .any(|c| c.is_whitespace() && c != ' ' || c.is_control())
    {
        return refuse();
    }
    let name_end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(t.len());
    let (name, rest) = t.split_at(name_end);
    let is_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !is_name {
        return if name.is_empty() || t.starts_with(['-', '.', '/']) {
            refuse()
        } else {
            Err(format!(
                "dependency `{}` must start with a package name, e.g. \"tabulate\"",
                t.escape_debug()
            ))
        };
    }
    // uv takes a name ending like an archive for a file on the server's disk.
    let lower = name.to_ascii_lowercase();
    if ARCHIVE_ENDINGS.iter().any(|e| lower.ends_with(e)) {
        return refuse();
    }
    // After the name: nothing, extras, a version specifier or markers — never `:`
    // (a URL scheme), `/` (a path) or `+` (`git+https`).
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with(['[', '(', '<', '>', '=', '!', '~', ';'])) {
        return refuse();
    }
    Ok(())
}

/// The file endings that make uv read a requirement as a local archive.
const ARCHIVE_ENDINGS: &[&str] = &[
    ".whl",
    ".zip",
    ".tar",
    ".tar.gz",
    ".tar.bz2",
    ".tar.lz",
    ".tar.lzma",
    ".tar.xz",
    ".tar.zst",
    ".tbz",
    ".tgz",
    ".tlz",
    ".txz",
];

/// The block the new-script template shows.
pub(crate) const TEMPLATE_BLOCK: &str =
    "# /// script\n# requires-python = \">=3.10\"\n# dependencies = []\n# ///\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_without_a_block_has_no_metadata() {
        assert_eq!(parse("print(1)\n# hello\n").unwrap(), None);
    }

    #[test]
    fn the_block_gives_requires_python_and_dependencies() {
        let src = "\"\"\"Doc\"\"\"\n# /// script\n# requires-python = \">=3.11\"\n# dependencies = [\n#   \"tabulate==0.9.0\",\n#   \"attrs\",\n# ]\n# ///\nimport tabulate\n";
        let m = parse(src).unwrap().unwrap();
        assert_eq!(m.requires_python.as_deref(), Some(">=3.11"));
        assert_eq!(m.dependencies, ["tabulate==0.9.0", "attrs"]);
        assert_eq!(m.requirements(), "tabulate==0.9.0\nattrs\n");
    }

    #[test]
    fn the_template_block_is_empty_and_valid() {
        assert_eq!(
            parse(TEMPLATE_BLOCK).unwrap().unwrap().dependencies,
            Vec::<String>::new()
        );
    }

    #[test]
    fn invalid_toml_names_its_line() {
        let src =
            "import sys\n# /// script\n# dependencies = [\"a\",\n# requires-python = 3\n# ///\n";
        let e = parse(src).unwrap_err();
        assert!((2..=4).contains(&e.line), "{e:?}");
        assert!(e.to_string().contains("not valid"), "{e}");
    }

    #[test]
    fn an_unclosed_block_is_an_error_at_its_start() {
        let e = parse("x = 1\n# /// script\n# dependencies = []\nprint(1)\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("closing"), "{e}");
    }

    #[test]
    fn two_script_blocks_are_an_error() {
        let b = "# /// script\n# dependencies = []\n# ///\n";
        let e = parse(&format!("{b}x = 1\n{b}")).unwrap_err();
        assert_eq!(e.line, 5);
    }

    #[test]
    fn unknown_keys_urls_and_options_are_refused() {
        let wrap = |body: &str| format!("# /// script\n# {body}\n# ///\n");
        assert!(parse(&wrap("dependecies = []")).is_err());
        assert!(parse(&wrap("dependencies = [\"x @ https://e.org/x.whl\"]")).is_err());
        assert!(parse(&wrap("dependencies = [\"--index-url=http://e\"]")).is_err());
        assert!(parse(&wrap("dependencies = [\"./local\"]")).is_err());
        assert!(parse(&wrap("dependencies = [\"tabulate --config-settings=x=y\"]")).is_err());
        assert!(parse(&wrap("dependencies = [\"tabulate \\\\\"]")).is_err());
        for url_or_path in [
            "https://e.org/x-1.0-py3-none-any.whl",
            "git+file:///srv/repo",
            "file:///etc/x.whl",
            "x-1.0-py3-none-any.whl",
            "pkg.tar.gz",
            "..",
            "etc/x.whl",
            "tabulate\\t--hash=sha256:00",
            "tabulate; python_version > '${HOME}'",
        ] {
            let e = parse(&wrap(&format!("dependencies = [\"{url_or_path}\"]"))).unwrap_err();
            assert!(
                e.message.contains("not a package requirement"),
                "{url_or_path}: {e}"
            );
        }
        for fine in [
            "zope.interface",
            "attrs[tests]>=23",
            "A_b-c (>=1.0)",
            "x~=1.2",
        ] {
            assert!(
                parse(&wrap(&format!("dependencies = [\"{fine}\"]"))).is_ok(),
                "{fine}"
            );
        }
        assert!(
            parse(&wrap(
                "dependencies = [\"tabulate>=0.9; python_version >= '3.8'\"]"
            ))
            .is_ok()
        );
    }

    #[test]
    fn other_block_types_are_ignored() {
        assert_eq!(parse("# /// pyproject\n# x = 1\n# ///\n").unwrap(), None);
    }
}
