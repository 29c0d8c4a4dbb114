//! [`RemoveDir`]: a directory removed, with everything in it, when the guard drops.

use std::path::PathBuf;

/// Removes the directory (and everything in it) when dropped, however the owner ends.
/// A directory that is already gone is no error.
#[derive(Debug)]
pub struct RemoveDir(pub PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_goes_with_the_guard() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("scratch");
        std::fs::create_dir_all(dir.join("deeper")).unwrap();
        std::fs::write(dir.join("deeper/file"), "x").unwrap();
        drop(RemoveDir(dir.clone()));
        assert!(!dir.exists());
        drop(RemoveDir(dir.clone()));
    }
}
