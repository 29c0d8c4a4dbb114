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

/// Rejects what is not a plain requirement from an index: options (`-e`, `--index-url`),
/// direct URLs and local paths would let a script reach past the configured index.
fn check_requirement(d: &str) -> Result<(), String> {
    let t = d.trim();
    if t.is_empty() {
        return Err("a dependency is empty; write a package name such as \"tabulate\"".into());
    }
    // A requirements line may carry per-requirement options after the name
    // (`name --config-settings …`) and continue on the next line (`\`): neither is allowed.
    if t.starts_with('-')
        || t.contains(" -")
        || t.contains(['@', '\n', '\r', '\\'])
        || t.starts_with(['.', '/'])
    {
        return Err(format!(
            "dependency `{t}` is not a package requirement; write a name with an optional version, e.g. \"tabulate>=0.9\" (options, URLs and paths are not allowed)"
        ));
    }
    if !t.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "dependency `{t}` must start with a package name, e.g. \"tabulate\""
        ));
    }
    Ok(())
}

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
