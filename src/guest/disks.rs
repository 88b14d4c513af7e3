//! Scratch disks for the guest: sparse image files in the cache, attached
//! with `vng --disk` as /dev/vda, /dev/vdb, ... Each boot gets new empty
//! images (the guest makes its filesystems), removed when the boot is over,
//! so runs side by side never share a disk.

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tempfile::TempPath;

pub struct Disk {
    /// Names the image file, for whoever finds one left behind.
    pub name: &'static str,
    pub bytes: u64,
}

/// The guest tests' disks: /dev/vda for ext4, /dev/vdb for ext2 (see
/// vm/tests/guest.h).
pub const TEST_DISKS: [Disk; 2] = [
    Disk {
        name: "ext4",
        bytes: 2 << 30,
    },
    Disk {
        name: "ext2",
        bytes: 1 << 30,
    },
];

/// The images that exist now. The signal handler ends the process
/// without running destructors, so it removes them from this list.
struct Live {
    paths: BTreeSet<PathBuf>,
    /// Set by `remove_all`: zcsplice is ending, no image may be made.
    closed: bool,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    paths: BTreeSet::new(),
    closed: false,
});

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch disk image, deleted when dropped.
pub struct Image(TempPath);

impl Drop for Image {
    fn drop(&mut self) {
        // The TempPath deletes the file after this.
        live().paths.remove(&self.0.to_path_buf());
    }
}

impl std::ops::Deref for Image {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Image {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Creates one empty sparse image per disk under `<cache>/disks`; each is
/// deleted when its Image is dropped.
pub fn fresh(cache: &Path, disks: &[Disk]) -> Result<Vec<Image>> {
    let dir = cache.join("disks");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let made = disks
        .iter()
        .map(|d| {
            let f = tempfile::Builder::new()
                .prefix(&format!("{}-", d.name))
                .suffix(".img")
                .tempfile_in(&dir)
                .with_context(|| format!("cannot create a disk image in {}", dir.display()))?;
            f.as_file()
                .set_len(d.bytes)
                .with_context(|| format!("cannot size {}", f.path().display()))?;
            Ok(f.into_temp_path())
        })
        .collect::<Result<Vec<TempPath>>>()?;
    let mut l = live();
    if l.closed {
        // `remove_all` has run: delete these here, the process is ending.
        drop(l);
        drop(made);
        crate::procs::halt();
    }
    l.paths.extend(made.iter().map(|p| p.to_path_buf()));
    Ok(made.into_iter().map(Image).collect())
}

/// For the signal handler, once the guests are dead: deletes every image
/// and forbids new ones; returns how many it deleted.
pub fn remove_all() -> usize {
    let mut l = live();
    l.closed = true;
    std::mem::take(&mut l.paths)
        .iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fresh_images_are_sparse_distinct_and_removed() {
        let cache = tempfile::tempdir().unwrap();
        let disks = [
            Disk {
                name: "a",
                bytes: 1 << 30,
            },
            Disk {
                name: "b",
                bytes: 4096,
            },
        ];
        let first = fresh(cache.path(), &disks).unwrap();
        let second = fresh(cache.path(), &disks).unwrap();
        assert_ne!(first[0].to_path_buf(), second[0].to_path_buf());
        let meta = std::fs::metadata(&first[0]).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        // Sparse: a gigabyte of size, next to nothing allocated.
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        assert_eq!(std::fs::metadata(&first[1]).unwrap().len(), 4096);
        assert!(first[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("a-"));
        let paths: Vec<_> = first.iter().map(|p| p.to_path_buf()).collect();
        drop(first);
        assert!(paths.iter().all(|p| !p.exists()));
        assert!(second.iter().all(|p| p.exists()));
    }
}
