//! Walking a directory tree that a hostile script wrote, without ever following a link:
//! the entry kinds, the visitor's answers and the options, shared by the platform walks
//! ([`walk`] is `unix.rs`'s or `windows.rs`'s).

use std::path::PathBuf;

/// What an entry is, by its own metadata (a link is a link, whatever it points at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link (on Windows also a junction: any name-surrogate reparse point).
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    /// A word for the user: why an entry is not an artifact.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symbolic link",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
        }
    }
}

/// One entry below the root.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the root.
    pub path: PathBuf,
    pub kind: Kind,
    /// The length in bytes (`st_size`).
    pub len: u64,
    /// What it occupies on disk (`st_blocks * 512`): a sparse file counts its data only.
    pub allocated: u64,
    pub inode: u64,
    pub links: u64,
}

/// What the visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Do not enter this directory (ignored for other kinds).
    Skip,
    /// End the walk.
    Stop,
}

/// How a walk went, besides what the visitor saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walked {
    /// The visitor ended the walk.
    pub stopped: bool,
    /// Directories nested deeper than the bound were not entered.
    pub too_deep: bool,
    /// Directories that could not be opened (and so were not counted).
    pub unreadable: u64,
}

/// Walk options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Directories below this many levels are not entered.
    pub max_depth: usize,
    /// Visit each directory's entries in name order (costs reading a directory whole
    /// before visiting it); else in the order the file system gives.
    pub sorted: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_depth: 64,
            sorted: false,
        }
    }
}

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::walk;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::walk;
