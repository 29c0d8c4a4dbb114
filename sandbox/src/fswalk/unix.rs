//! The Unix walk: without ever following a link.
//!
//! Every step is relative to an open directory descriptor: directories are opened with
//! `openat(…, O_NOFOLLOW | O_DIRECTORY)` and entries are examined with
//! `fstatat(…, AT_SYMLINK_NOFOLLOW)`, so a symbolic link swapped in for a directory
//! between two looks is found as a link (and not entered), never resolved. Nothing but
//! directories is opened: a FIFO, a device or a socket is reported, not touched. The walk
//! stops as soon as the visitor says so (a quota that is already exceeded need not be
//! counted further) and at a depth bound, so a script's deep nesting cannot make the
//! server hold thousands of descriptors.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Entry, Flow, Kind, Options, Walked};

impl Kind {
    fn of(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            _ => Kind::BlockDevice,
        }
    }
}

/// Walks everything below `root` (not `root` itself). `root` must be a real directory:
/// a link there is an error.
pub fn walk(
    root: &Path,
    options: Options,
    mut visit: impl FnMut(&Entry) -> Flow,
) -> std::io::Result<Walked> {
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    let fd = open_dir(libc::AT_FDCWD, &c)?;
    let mut walked = Walked::default();
    let mut rel = PathBuf::new();
    walk_dir(fd, &mut rel, 1, options, &mut visit, &mut walked);
    Ok(walked)
}

/// Returns false when the walk is to stop.
fn walk_dir(
    dir: OwnedFd,
    rel: &mut PathBuf,
    depth: usize,
    options: Options,
    visit: &mut impl FnMut(&Entry) -> Flow,
    walked: &mut Walked,
) -> bool {
    let Ok(mut names) = Names::open(dir) else {
        walked.unreadable += 1;
        return true;
    };
    let dirfd = names.fd();
    let mut handle = |name: &CStr, rel: &mut PathBuf, walked: &mut Walked| -> bool {
        let Some(st) = stat_at(dirfd, name) else {
            return true;
        };
        rel.push(OsStr::from_bytes(name.to_bytes()));
        let entry = Entry {
            path: rel.clone(),
            kind: Kind::of(st.st_mode),
            len: st.st_size.max(0) as u64,
            allocated: (st.st_blocks.max(0) as u64).saturating_mul(512),
            inode: st.st_ino,
            links: st.st_nlink,
        };
        let go_on = match visit(&entry) {
            Flow::Stop => {
                walked.stopped = true;
                false
            }
            Flow::Skip => true,
            Flow::Continue if entry.kind == Kind::Dir => {
                if depth >= options.max_depth {
                    walked.too_deep = true;
                    true
                } else {
                    match open_dir(dirfd, name) {
                        Ok(sub) => walk_dir(sub, rel, depth + 1, options, visit, walked),
                        Err(_) => {
                            walked.unreadable += 1;
                            true
                        }
                    }
                }
            }
            Flow::Continue => true,
        };
        rel.pop();
        go_on
    };
    if options.sorted {
        let mut all: Vec<OsString> = Vec::new();
        while let Some(n) = names.next_name() {
            all.push(n);
        }
        all.sort();
        for n in all {
            let Ok(c) = CString::new(n.into_vec()) else {
                continue;
            };
            if !handle(&c, rel, walked) {
                return false;
            }
        }
    } else {
        while let Some(n) = names.next_name() {
            let Ok(c) = CString::new(n.into_vec()) else {
                continue;
            };
            if !handle(&c, rel, walked) {
                return false;
            }
        }
    }
    true
}

/// `openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW)`: fails on a link or a non-directory.
fn open_dir(dirfd: libc::c_int, name: &CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags open no device or FIFO
    // (O_DIRECTORY fails on anything but a directory, O_NOFOLLOW on a link).
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY
                | libc::O_DIRECTORY
                | libc::O_NOFOLLOW
                | libc::O_CLOEXEC
                | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dirfd: libc::c_int, name: &CStr) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` is a valid out pointer; the flag keeps a
    // link from being followed.
    let r = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    (r == 0).then_some(st)
}

/// The names in an open directory (`fdopendir` + `readdir`), without `.` and `..`.
struct Names {
    dir: *mut libc::DIR,
}

impl Names {
    fn open(fd: OwnedFd) -> std::io::Result<Names> {
        let raw = fd.as_raw_fd();
        // SAFETY: `raw` is an open directory descriptor; on success the DIR owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        std::mem::forget(fd);
        Ok(Names { dir })
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: `self.dir` is a live DIR stream.
        unsafe { libc::dirfd(self.dir) }
    }

    fn next_name(&mut self) -> Option<OsString> {
        loop {
            // SAFETY: `self.dir` is a live DIR stream used by this thread only; the
            // returned entry is read before the next call.
            let e = unsafe { libc::readdir(self.dir) };
            if e.is_null() {
                return None;
            }
            // SAFETY: `d_name` of a returned entry is a NUL-terminated string.
            let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                return Some(OsString::from_vec(bytes.to_vec()));
            }
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // SAFETY: `self.dir` is live and closed once, here (closing its descriptor too).
        unsafe { libc::closedir(self.dir) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(root: &Path, options: Options) -> (Vec<(String, Kind)>, Walked) {
        let mut seen = Vec::new();
        let w = walk(root, options, |e| {
            seen.push((e.path.to_string_lossy().into_owned(), e.kind));
            Flow::Continue
        })
        .unwrap();
        (seen, w)
    }

    #[test]
    fn links_fifos_and_sockets_are_reported_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a.txt"), "a").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("..", d.path().join("sub/up")).unwrap();
        let fifo = CString::new(d.path().join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        let (seen, w) = all(
            d.path(),
            Options {
                sorted: true,
                ..Options::default()
            },
        );
        assert_eq!(
            seen,
            [
                ("etc".to_string(), Kind::Symlink),
                ("pipe".to_string(), Kind::Fifo),
                ("sock".to_string(), Kind::Socket),
                ("sub".to_string(), Kind::Dir),
                ("sub/a.txt".to_string(), Kind::File),
                ("sub/up".to_string(), Kind::Symlink),
            ]
        );
        assert_eq!(w, Walked::default());
    }

    #[test]
    fn a_link_as_the_root_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("root")).unwrap();
        assert!(
            walk(&d.path().join("root"), Options::default(), |_| {
                Flow::Continue
            })
            .is_err()
        );
    }

    #[test]
    fn nesting_past_the_bound_is_not_entered_and_stop_ends_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let deep: PathBuf = (0..10).map(|i| format!("d{i}")).collect();
        std::fs::create_dir_all(d.path().join(&deep)).unwrap();
        let (seen, w) = all(
            d.path(),
            Options {
                max_depth: 4,
                sorted: false,
            },
        );
        assert_eq!(seen.len(), 4);
        assert!(w.too_deep);
        let mut n = 0;
        let w = walk(d.path(), Options::default(), |_| {
            n += 1;
            if n == 2 { Flow::Stop } else { Flow::Continue }
        })
        .unwrap();
        assert!(w.stopped);
        assert_eq!(n, 2);
    }

    #[test]
    fn a_sparse_file_counts_its_blocks() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        let mut got = None;
        walk(d.path(), Options::default(), |e| {
            got = Some((e.len, e.allocated));
            Flow::Continue
        })
        .unwrap();
        let (len, allocated) = got.unwrap();
        assert_eq!(len, 1 << 30);
        assert!(allocated < 1 << 20, "{allocated}");
    }
}
