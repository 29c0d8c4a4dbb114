//! The sandbox's minimal root, planned in the parent: which host paths are bound where
//! (at the same path inside, read-only unless writable), which directories and
//! symbolic links hold them up, and the sizes of the fresh `/tmp`. The child carries
//! the [`Root`] out with raw syscalls (see [`super::child`]): a tmpfs root into which
//! only these paths are bound, a size-bounded tmpfs `/tmp`, a `/dev` of five device
//! nodes, and a fresh `/proc`; no `/sys`, none of the host's other mounts or sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use super::child::cpath;

/// Where the child builds the new root and keeps the host's while it does (its
/// `/dev` nodes and the other fixed paths are in `child.rs`).
pub(crate) const NEW_ROOT: &str = "/newroot";
pub(crate) const OLD_ROOT: &str = "/oldroot";

/// One host path bound into the new root at the same path.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Bind {
    /// `/oldroot/<path>`.
    pub(crate) src: CString,
    /// `/newroot/<path>`.
    pub(crate) dst: CString,
    pub(crate) writable: bool,
    /// A file (its mount point is an empty file), else a directory.
    pub(crate) file: bool,
    /// It lies below another bind: its mount point exists already.
    pub(crate) nested: bool,
}

/// What the child builds, all paths as seen after the first `pivot_root`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Root {
    /// Mount options of `/tmp`.
    pub(crate) tmp_options: CString,
    /// Small read-only tmpfs skeletons below `/tmp` that hold exposed paths there, so
    /// their parent directories cannot be written (`/newroot/tmp/<name>`).
    pub(crate) skeletons: Vec<CString>,
    /// Directories to create, parents first (`/newroot/...`).
    pub(crate) dirs: Vec<CString>,
    /// (target, link path `/newroot/...`): the host's symbolic links on exposed paths.
    pub(crate) symlinks: Vec<(CString, CString)>,
    pub(crate) binds: Vec<Bind>,
    /// The working directory inside the sandbox.
    pub(crate) workdir: CString,
}

/// Collects the paths to expose, then lays them out.
#[derive(Default)]
pub(crate) struct Planner {
    /// path → writable, is a file
    binds: BTreeMap<PathBuf, (bool, bool)>,
    symlinks: BTreeMap<PathBuf, PathBuf>,
}

/// Paths the sandbox makes itself: never bound from the host.
fn reserved(p: &Path) -> bool {
    p == Path::new("/")
        || p == Path::new("/tmp")
        || ["/dev", "/proc", "/sys"].iter().any(|r| p.starts_with(r))
}

impl Planner {
    /// Shows host path `p` at the same path inside (with every symbolic link on the way).
    pub(crate) fn expose(&mut self, p: &Path, writable: bool) {
        self.add(p, writable, 0);
    }

    fn add(&mut self, p: &Path, writable: bool, depth: u32) {
        if depth > 16 || !p.is_absolute() {
            return;
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            if let Ok(real) = std::fs::canonicalize(p) {
                self.add(&real, writable, depth + 1);
            }
            return;
        }
        if reserved(p) {
            return;
        }
        let mut acc = PathBuf::from("/");
        for comp in p.components().skip(1) {
            acc.push(comp);
            let Ok(meta) = std::fs::symlink_metadata(&acc) else {
                return;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&acc) {
                    self.symlinks.insert(acc.clone(), target);
                }
                if let Ok(real) = std::fs::canonicalize(p) {
                    self.add(&real, writable, depth + 1);
                }
                return;
            }
            if acc == p {
                let entry = self
                    .binds
                    .entry(p.to_path_buf())
                    .or_insert((writable, !meta.is_dir()));
                entry.0 |= writable;
            }
        }
    }

    /// Lays the exposed paths out for the child; `workdir` is the working directory.
    /// `tmp_mib` and `tmp_inodes` bound the sandbox's `/tmp` (a tmpfs): the run's disk
    /// quota (`disk_mib`, `disk_files`); its pages also count against the memory cgroup.
    pub(crate) fn finish(self, workdir: &Path, tmp_mib: u64, tmp_inodes: u64) -> Root {
        let mut kept: Vec<(PathBuf, bool, bool, bool)> = Vec::new();
        for (path, (writable, file)) in self.binds {
            // The deepest bind above this one decides whether it is needed.
            let above = kept.iter().rev().find(|(k, ..)| path.starts_with(k));
            match above {
                Some((_, above_writable, ..)) if *above_writable || !writable => continue,
                _ => {}
            }
            let nested = above.is_some();
            kept.push((path, writable, file, nested));
        }
        let under_bind = |p: &Path| kept.iter().any(|(k, ..)| p != k && p.starts_with(k));
        let symlinks: Vec<(PathBuf, PathBuf)> = self
            .symlinks
            .into_iter()
            .filter(|(link, _)| !under_bind(link) && !kept.iter().any(|(k, ..)| k == link))
            .collect();
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let mut skeletons: BTreeSet<PathBuf> = BTreeSet::new();
        for p in kept
            .iter()
            .filter(|k| !k.3)
            .map(|k| &k.0)
            .chain(symlinks.iter().map(|(l, _)| l))
        {
            let mut parent = p.parent();
            while let Some(d) = parent {
                if d == Path::new("/") || d == Path::new("/tmp") || under_bind(d) {
                    break;
                }
                if d.parent() == Some(Path::new("/tmp")) {
                    skeletons.insert(d.to_path_buf());
                }
                dirs.insert(d.to_path_buf());
                parent = d.parent();
            }
        }
        let inside = |base: &str, p: &Path| {
            let mut s = PathBuf::from(base);
            s.push(p.strip_prefix("/").unwrap_or(p));
            cpath(&s)
        };
        Root {
            tmp_options: CString::new(format!(
                "mode=1777,size={}m,nr_inodes={}",
                tmp_mib.max(1),
                tmp_inodes.max(16)
            ))
            .expect("no NUL"),
            skeletons: skeletons.iter().map(|s| inside(NEW_ROOT, s)).collect(),
            dirs: dirs
                .iter()
                .filter(|d| !skeletons.contains(*d))
                .map(|d| inside(NEW_ROOT, d))
                .collect(),
            symlinks: symlinks
                .iter()
                .map(|(l, t)| (cpath(t), inside(NEW_ROOT, l)))
                .collect(),
            binds: kept
                .iter()
                .map(|(p, writable, file, nested)| Bind {
                    src: inside(OLD_ROOT, p),
                    dst: inside(NEW_ROOT, p),
                    writable: *writable,
                    file: *file,
                    nested: *nested,
                })
                .collect(),
            workdir: cpath(workdir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[CString]) -> Vec<String> {
        v.iter().map(|c| c.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn nested_paths_are_bound_once_and_parents_are_made() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("b")).unwrap();
        std::fs::write(a.join("b/f"), "x").unwrap();
        let mut p = Planner::default();
        p.expose(&a.join("b/f"), false);
        p.expose(&a, false);
        let root = p.finish(&a, 256, 16384);
        assert_eq!(root.binds.len(), 1);
        assert_eq!(
            root.binds[0].dst.to_str().unwrap(),
            format!("/newroot{}", a.display())
        );
        assert!(names(&root.dirs).contains(&format!("/newroot{}", dir.path().display())));
        assert!(root.skeletons.is_empty());
    }

    #[test]
    fn a_symlink_on_the_way_is_recreated_and_its_target_bound() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let mut p = Planner::default();
        p.expose(&dir.path().join("link"), false);
        let root = p.finish(dir.path(), 256, 16384);
        assert_eq!(root.symlinks.len(), 1);
        assert_eq!(root.symlinks[0].0.to_str().unwrap(), "real");
        assert_eq!(
            root.binds[0].src.to_str().unwrap(),
            format!(
                "/oldroot{}/real",
                dir.path().canonicalize().unwrap().display()
            )
        );
    }

    #[test]
    fn paths_below_tmp_get_a_read_only_skeleton_and_a_writable_bind_wins() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        std::fs::create_dir_all(dir.path().join("run/in")).unwrap();
        let mut p = Planner::default();
        p.expose(&dir.path().join("run/in"), false);
        p.expose(&dir.path().join("run"), true);
        p.expose(Path::new("/proc/self"), false);
        let root = p.finish(&dir.path().join("run"), 256, 16384);
        assert_eq!(
            root.binds.len(),
            1,
            "the read path lies inside the writable one"
        );
        assert!(root.binds[0].writable);
        let top = dir.path().canonicalize().unwrap();
        assert_eq!(
            names(&root.skeletons),
            [format!("/newroot{}", top.display())]
        );
    }
}
