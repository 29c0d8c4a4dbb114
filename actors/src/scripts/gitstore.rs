//! The git repository that holds script contents: a bare repository with branch `prod`
//! (the execution queue) and one branch per editor.
//!
//! Layout of every branch's tree: `scripts/<filename>.py` and `testdata/<stem>` (raw
//! test data). Each change is one commit whose message ends in trailers
//! (`Scriptorium-Action: save`, …) that describe it fully, so the SQLite metadata can be
//! rebuilt from git after a crash (see `repair`).

use std::collections::BTreeMap;
use std::path::Path;

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Time, TreeBuilder};

use crate::domain::clock::Centis;

/// The branch that holds the published scripts.
pub const PROD: &str = "prod";

/// Where undone commits are kept (see [`GitStore::undo`]).
const UNDONE: &str = "refs/scriptorium/undone/";

pub struct GitStore {
    repo: Repository,
}

/// One change to a path of the tree.
pub enum Edit<'a> {
    Put { path: &'a str, blob: Oid },
    Remove { path: &'a str },
}

/// Who made a commit, and when.
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub at: Centis,
}

impl GitStore {
    /// Opens the repository at `path`, creating it (with an initial commit on `prod`) if
    /// needed, and makes sure every editor has a branch.
    pub fn open_or_init(path: &Path, editors: &[&str]) -> Result<GitStore, git2::Error> {
        let repo = match Repository::open_bare(path) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => {
                let repo = Repository::init_bare(path)?;
                let sig = Signature::now("Scriptorium", "scriptorium@localhost")?;
                let tree_id = repo.treebuilder(None)?.write()?;
                let tree = repo.find_tree(tree_id)?;
                repo.commit(
                    Some(&format!("refs/heads/{PROD}")),
                    &sig,
                    &sig,
                    "Initialise the script repository\n\nScriptorium-Action: init\n",
                    &tree,
                    &[],
                )?;
                repo.set_head(&format!("refs/heads/{PROD}"))?;
                drop(tree);
                tracing::info!(path = %path.display(), "created script repository");
                repo
            }
            Err(e) => return Err(e),
        };
        let store = GitStore { repo };
        for editor in editors {
            store.ensure_branch(editor)?;
        }
        Ok(store)
    }

    /// Creates `branch` from `prod`'s tip if it does not exist.
    pub fn ensure_branch(&self, branch: &str) -> Result<(), git2::Error> {
        if self
            .repo
            .find_branch(branch, git2::BranchType::Local)
            .is_err()
        {
            let tip = self.tip(PROD)?;
            let commit = self.repo.find_commit(tip)?;
            self.repo.branch(branch, &commit, false)?;
            tracing::info!(branch, "created editor branch");
        }
        Ok(())
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    pub fn tip(&self, branch: &str) -> Result<Oid, git2::Error> {
        self.repo.refname_to_id(&format!("refs/heads/{branch}"))
    }

    pub fn branches(&self) -> Result<Vec<String>, git2::Error> {
        let mut out = Vec::new();
        for b in self.repo.branches(Some(git2::BranchType::Local))? {
            let (b, _) = b?;
            if let Some(name) = b.name()? {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    pub fn write_blob(&self, content: &[u8]) -> Result<Oid, git2::Error> {
        self.repo.blob(content)
    }

    pub fn read_blob(&self, id: Oid) -> Result<Vec<u8>, git2::Error> {
        Ok(self.repo.find_blob(id)?.content().to_vec())
    }

    /// The blob at `path` in the tip of `branch`, if any.
    pub fn blob_at(&self, branch: &str, path: &str) -> Result<Option<Oid>, git2::Error> {
        let commit = self.repo.find_commit(self.tip(branch)?)?;
        match commit.tree()?.get_path(Path::new(path)) {
            Ok(entry) => Ok(Some(entry.id())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies `edits` to the tip of `branch` and commits the result (even when the tree
    /// does not change: a Major bump is a commit of its own).
    pub fn commit(
        &self,
        branch: &str,
        edits: &[Edit<'_>],
        author: &Author<'_>,
        message: &str,
    ) -> Result<Oid, git2::Error> {
        let parent = self.repo.find_commit(self.tip(branch)?)?;
        let root = parent.tree()?;
        // Group edits by their directory (one level: `scripts/`, `testdata/`).
        let mut by_dir: BTreeMap<&str, Vec<(&str, Option<Oid>)>> = BTreeMap::new();
        for edit in edits {
            let (path, blob) = match edit {
                Edit::Put { path, blob } => (*path, Some(*blob)),
                Edit::Remove { path } => (*path, None),
            };
            let (dir, name) = path
                .split_once('/')
                .ok_or_else(|| git2::Error::from_str("edit path needs a directory"))?;
            by_dir.entry(dir).or_default().push((name, blob));
        }
        let mut root_builder = self.repo.treebuilder(Some(&root))?;
        for (dir, changes) in by_dir {
            let existing = match root.get_name(dir) {
                Some(entry) if entry.kind() == Some(ObjectType::Tree) => {
                    Some(self.repo.find_tree(entry.id())?)
                }
                _ => None,
            };
            let mut builder: TreeBuilder<'_> = self.repo.treebuilder(existing.as_ref())?;
            for (name, blob) in changes {
                match blob {
                    Some(id) => {
                        builder.insert(name, id, 0o100644)?;
                    }
                    None => {
                        if builder.get(name)?.is_some() {
                            builder.remove(name)?;
                        }
                    }
                }
            }
            if builder.is_empty() {
                if root_builder.get(dir)?.is_some() {
                    root_builder.remove(dir)?;
                }
            } else {
                let sub = builder.write()?;
                root_builder.insert(dir, sub, 0o040000)?;
            }
        }
        let tree = self.repo.find_tree(root_builder.write()?)?;
        // git keeps whole seconds; the exact time is in the message trailers.
        let time = Time::new(author.at.div_euclid(100), 0);
        let sig = Signature::new(author.name, author.email, &time)?;
        let id = self.repo.commit(
            Some(&format!("refs/heads/{branch}")),
            &sig,
            &sig,
            message,
            &tree,
            &[&parent],
        )?;
        Ok(id)
    }

    /// Takes back `commit`, the tip of `branch`, whose metadata could not be recorded:
    /// the branch points at `parent` again (only if its tip is still `commit`), and the
    /// commit stays reachable as `refs/scriptorium/undone/<id>` for inspection and so
    /// its script id is never handed out again.
    pub fn undo(&self, branch: &str, commit: Oid, parent: Oid) -> Result<(), git2::Error> {
        self.repo.reference(
            &format!("{UNDONE}{commit}"),
            commit,
            true,
            "scriptorium: keep a change that was undone",
        )?;
        self.repo.reference_matching(
            &format!("refs/heads/{branch}"),
            parent,
            true,
            commit,
            "scriptorium: undo a change whose metadata could not be recorded",
        )?;
        Ok(())
    }

    /// The messages of the commits kept by [`GitStore::undo`].
    pub fn undone(&self) -> Result<Vec<String>, git2::Error> {
        let mut out = Vec::new();
        for r in self.repo.references_glob(&format!("{UNDONE}*"))? {
            if let Some(id) = r?.target() {
                out.push(
                    self.repo
                        .find_commit(id)?
                        .message()
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
        Ok(out)
    }

    /// Every commit of `branch`, newest first.
    pub fn history(&self, branch: &str) -> Result<Vec<Oid>, git2::Error> {
        let mut walk = self.repo.revwalk()?;
        walk.push(self.tip(branch)?)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
        walk.collect()
    }

    pub fn message(&self, commit: Oid) -> Result<String, git2::Error> {
        Ok(self
            .repo
            .find_commit(commit)?
            .message()
            .unwrap_or("")
            .to_string())
    }

    /// Commits on `branch` from the tip back to (not including) the first one `known`
    /// accepts, oldest first.
    pub fn unknown_commits(
        &self,
        branch: &str,
        mut known: impl FnMut(Oid) -> bool,
    ) -> Result<Vec<(Oid, String)>, git2::Error> {
        let mut walk = self.repo.revwalk()?;
        walk.push(self.tip(branch)?)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
        let mut out = Vec::new();
        for id in walk {
            let id = id?;
            if known(id) {
                break;
            }
            let commit = self.repo.find_commit(id)?;
            out.push((id, commit.message().unwrap_or("").to_string()));
        }
        out.reverse();
        Ok(out)
    }
}

/// The `Key: value` trailers at the end of a commit message.
pub fn trailers(message: &str) -> BTreeMap<String, String> {
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or("");
    last.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with("Scriptorium-"))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_are_read_from_the_last_paragraph() {
        let t = trailers(
            "Save a.py as 0.2\n\nBody text: not a trailer\n\nScriptorium-Action: save\nScriptorium-Version: 0.2\n",
        );
        assert_eq!(
            t.get("Scriptorium-Action").map(String::as_str),
            Some("save")
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn commits_edit_nested_paths_and_keep_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitStore::open_or_init(&dir.path().join("repo"), &["ed1"]).unwrap();
        let a = git.write_blob(b"print(1)\n").unwrap();
        let b = git.write_blob(b"print(2)\n").unwrap();
        let who = Author {
            name: "ed1",
            email: "ed1@x",
            at: 100,
        };
        git.commit(
            "ed1",
            &[Edit::Put {
                path: "scripts/a.py",
                blob: a,
            }],
            &who,
            "one",
        )
        .unwrap();
        git.commit(
            "ed1",
            &[Edit::Put {
                path: "scripts/b.py",
                blob: b,
            }],
            &who,
            "two",
        )
        .unwrap();
        assert_eq!(git.blob_at("ed1", "scripts/a.py").unwrap(), Some(a));
        assert_eq!(git.blob_at("ed1", "scripts/b.py").unwrap(), Some(b));
        assert_eq!(git.blob_at(PROD, "scripts/a.py").unwrap(), None);
        git.commit(
            "ed1",
            &[Edit::Remove {
                path: "scripts/a.py",
            }],
            &who,
            "three",
        )
        .unwrap();
        assert_eq!(git.blob_at("ed1", "scripts/a.py").unwrap(), None);
        let unknown = git.unknown_commits("ed1", |_| false).unwrap();
        let messages: Vec<&str> = unknown.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(&messages[1..], ["one", "two", "three"]);
    }
}
