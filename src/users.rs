//! `scriptorium users list|add|disable|enable|reset-password`: the team in
//! `scriptorium.toml`, edited safely.
//!
//! The file is edited as text, one `[[users]]` block at a time, so comments and every
//! other setting stay as they were. The edited text is checked exactly as the server
//! would check it at start-up before anything is written; it is then written to a
//! temporary file beside the original, flushed to disk, and renamed over it (and the
//! directory flushed), so a crash leaves the old file or the new one, never half of one.
//! The server reads users at start-up: restart it for a change to apply.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::auth::{Role, hash_password};
use crate::config::{DEFAULT_USERS, UserConfig, users_of_file};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot write {path}: {source}; nothing was changed")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One change to the team.
pub enum Change<'a> {
    Add {
        username: &'a str,
        password: &'a str,
        roles: &'a [Role],
        email: Option<&'a str>,
    },
    Disable(&'a str),
    Enable(&'a str),
    ResetPassword {
        username: &'a str,
        password: &'a str,
    },
}

/// A `[[users]]` block: its lines `[start, end)` and its user name.
struct Block {
    start: usize,
    end: usize,
    username: Option<String>,
}

fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim())
}

fn blocks(lines: &[String]) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if let Some(b) = out.last_mut().filter(|b| b.end == usize::MAX) {
                b.end = i;
            }
            if t == "[[users]]" {
                out.push(Block {
                    start: i,
                    end: usize::MAX,
                    username: None,
                });
            }
        } else if let Some(b) = out.last_mut().filter(|b| b.end == usize::MAX)
            && key_of(t) == Some("username")
        {
            let v = t.split_once('=').map(|x| x.1.trim()).unwrap_or("");
            b.username = toml::from_str::<toml::Value>(&format!("v = {v}"))
                .ok()
                .and_then(|x| x.get("v")?.as_str().map(String::from));
        }
    }
    if let Some(b) = out.last_mut().filter(|b| b.end == usize::MAX) {
        b.end = lines.len();
    }
    out
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn check_password(password: &str) -> Result<(), UsersError> {
    if password.chars().count() < 6 || password.len() > 1024 {
        return Err(UsersError::Refused(
            "a password is 6 to 1024 characters; give it on standard input".into(),
        ));
    }
    Ok(())
}

/// Applies `change` to the file's text; the result is checked by the caller.
pub fn edit(text: &str, change: &Change<'_>) -> Result<String, UsersError> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if blocks(&lines).is_empty() {
        // The server uses the built-in users while the file names none: write them
        // out, so that changing the team keeps ed1 and mo1.
        lines.push(String::new());
        lines.push("# The built-in users, written out by `scriptorium users`.".into());
        lines.extend(DEFAULT_USERS.trim().lines().map(String::from));
    }
    let find = |lines: &[String], name: &str| -> Result<Block, UsersError> {
        blocks(lines)
            .into_iter()
            .find(|b| b.username.as_deref() == Some(name))
            .ok_or_else(|| {
                UsersError::Refused(format!(
                    "there is no user `{name}`; `scriptorium users list` shows them"
                ))
            })
    };
    // Sets `key = value` in the block, replacing the line or adding one after its header.
    let set = |lines: &mut Vec<String>, b: &Block, key: &str, value: String| {
        let line = format!("{key} = {value}");
        match (b.start..b.end).find(|&i| key_of(lines[i].trim()) == Some(key)) {
            Some(i) => lines[i] = line,
            None => lines.insert(b.start + 1, line),
        }
    };
    match change {
        Change::Add {
            username,
            password,
            roles,
            email,
        } => {
            if blocks(&lines)
                .iter()
                .any(|b| b.username.as_deref() == Some(*username))
            {
                return Err(UsersError::Refused(format!(
                    "user `{username}` exists already; use reset-password or enable"
                )));
            }
            if roles.is_empty() {
                return Err(UsersError::Refused(
                    "give at least one role: --role viewer, --role editor".into(),
                ));
            }
            check_password(password)?;
            let roles: Vec<String> = roles
                .iter()
                .map(|r| {
                    quoted(if *r == Role::Editor {
                        "editor"
                    } else {
                        "viewer"
                    })
                })
                .collect();
            lines.push(String::new());
            lines.push("[[users]]".into());
            lines.push(format!("username = {}", quoted(username)));
            lines.push(format!(
                "password_hash = {}",
                quoted(&hash_password(password))
            ));
            lines.push(format!("roles = [{}]", roles.join(", ")));
            if let Some(e) = email {
                lines.push(format!("email = {}", quoted(e)));
            }
        }
        Change::Disable(name) | Change::Enable(name) => {
            let b = find(&lines, name)?;
            let disabled = matches!(change, Change::Disable(_));
            set(&mut lines, &b, "disabled", disabled.to_string());
        }
        Change::ResetPassword { username, password } => {
            check_password(password)?;
            let b = find(&lines, username)?;
            set(
                &mut lines,
                &b,
                "password_hash",
                quoted(&hash_password(password)),
            );
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// The configuration file `scriptorium users` edits: `--config`, `SCRIPTORIUM_CONFIG`,
/// `DATA/scriptorium.toml` or `./scriptorium.toml` (the first that exists), else a new
/// `DATA/scriptorium.toml` — the order the server reads them in.
pub fn config_path(config: Option<PathBuf>, data: Option<PathBuf>) -> PathBuf {
    if let Some(p) = config.or_else(|| std::env::var_os("SCRIPTORIUM_CONFIG").map(PathBuf::from)) {
        return p;
    }
    let data = data
        .or_else(|| std::env::var_os("SCRIPTORIUM_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"));
    let in_data = data.join("scriptorium.toml");
    if in_data.is_file() || !Path::new("scriptorium.toml").is_file() {
        in_data
    } else {
        PathBuf::from("scriptorium.toml")
    }
}

/// Reads the file (empty when it does not exist yet).
fn read(path: &Path) -> Result<String, UsersError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UsersError::Write {
            path: path.into(),
            source,
        }),
    }
}

/// The users the file gives now (the built-in ones when it names none).
pub fn list(path: &Path) -> Result<Vec<UserConfig>, UsersError> {
    Ok(users_of_file(&read(path)?, path)?.0)
}

/// Applies `change` to the file at `path`: checked as the server would, then written
/// atomically. Disabling the last enabled editor is refused.
pub fn apply(path: &Path, change: &Change<'_>) -> Result<(), UsersError> {
    let new = edit(&read(path)?, change)?;
    let (users, _) = users_of_file(&new, path)?;
    if !users
        .iter()
        .any(|u| !u.disabled && u.roles.contains(&Role::Editor))
    {
        return Err(UsersError::Refused(
            "that would leave no enabled editor; enable or add another editor first".into(),
        ));
    }
    write_atomically(path, new.as_bytes()).map_err(|source| UsersError::Write {
        path: path.into(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path`, flushes it, renames it over `path`
/// and flushes the directory. The file holds password hashes: it is made 0600.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("scriptorium.toml");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Our server\nlisten = \"127.0.0.1:9000\"\n\n[[users]]\n# the lead\nusername = \"ed1\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$v97iCT2MBmg1eRX8H2q8lA$gUl2XDOt19/yEwrCcvtylIFgbPhx6m8MHYA3axBQz+A\"\nroles = [\"viewer\", \"editor\"]\n\n[runs]\nworkers = 2\n";

    fn users(text: &str) -> Vec<UserConfig> {
        users_of_file(text, Path::new("x.toml")).unwrap().0
    }

    #[test]
    fn add_disable_enable_and_reset_keep_comments_and_other_settings() {
        let add = Change::Add {
            username: "ed2",
            password: "secret-2",
            roles: &[Role::Viewer, Role::Editor],
            email: Some("ed2@x"),
        };
        let t = edit(FILE, &add).unwrap();
        assert!(
            t.starts_with("# Our server\nlisten = \"127.0.0.1:9000\"\n"),
            "{t}"
        );
        assert!(
            t.contains("# the lead\n") && t.contains("[runs]\nworkers = 2\n"),
            "{t}"
        );
        let u = users(&t);
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].username, "ed2");
        let t = edit(&t, &Change::Disable("ed1")).unwrap();
        assert!(users(&t)[0].disabled);
        assert!(
            t.contains("[runs]\nworkers = 2"),
            "the next table stays whole: {t}"
        );
        let t = edit(&t, &Change::Enable("ed1")).unwrap();
        assert!(!users(&t)[0].disabled);
        let before = users(&t)[1].password_hash.clone();
        let t = edit(
            &t,
            &Change::ResetPassword {
                username: "ed2",
                password: "another-2",
            },
        )
        .unwrap();
        assert_ne!(users(&t)[1].password_hash, before);
        assert_eq!(t.matches("[[users]]").count(), 2);
    }

    #[test]
    fn the_first_change_writes_out_the_built_in_users() {
        let t = edit(
            "listen = \"127.0.0.1:9000\"\n",
            &Change::Add {
                username: "ed2",
                password: "secret-2",
                roles: &[Role::Editor],
                email: None,
            },
        )
        .unwrap();
        let names: Vec<String> = users(&t).into_iter().map(|u| u.username).collect();
        assert_eq!(names, ["ed1", "mo1", "ed2"]);
    }

    #[test]
    fn bad_input_is_refused_and_the_file_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scriptorium.toml");
        std::fs::write(&path, FILE).unwrap();
        let refuse = |c: Change<'_>, says: &str| {
            let e = apply(&path, &c).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
        };
        let add = |name: &'static str, password: &'static str| Change::Add {
            username: name,
            password,
            roles: &[Role::Editor],
            email: None,
        };
        refuse(add("ed1", "secret-1"), "exists already");
        refuse(add("bad name\"", "secret-1"), "a user name is");
        refuse(add("prod", "secret-1"), "not `prod`");
        refuse(add("ed9", "short"), "6 to 1024");
        refuse(Change::Disable("nobody"), "no user `nobody`");
        refuse(Change::Disable("ed1"), "no enabled editor");
        // And a good one is written whole, 0600.
        apply(&path, &add("ed2", "secret-2")).unwrap();
        assert_eq!(list(&path).unwrap().len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
