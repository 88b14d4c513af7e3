//! Where zcsplice finds the series and keeps its cache: resolved once, by
//! the caller, and passed to every stage.

use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};

use crate::kernel::build::Built;

#[derive(Debug, Clone)]
pub struct Env {
    /// The directory holding patches/, templates/ and vm/ (absolute: its
    /// files are read from other directories too, e.g. by make).
    pub series: PathBuf,
    /// Imported trees, builds, run logs, caches.
    pub cache: PathBuf,
}

impl Env {
    /// `series`: the given directory, else the current directory if it
    /// holds a series, else the source tree zcsplice was built from.
    /// `cache`: the given directory, else `$XDG_CACHE_HOME/zcsplice`.
    pub fn resolve(series: Option<&Path>, cache: Option<&Path>) -> Result<Env> {
        let series = match series {
            Some(s) => std::path::absolute(s).unwrap_or_else(|_| s.to_path_buf()),
            None => {
                let cwd = std::env::current_dir().unwrap_or_default();
                if cwd.join("patches/series.yaml").exists() {
                    cwd
                } else {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                }
            }
        };
        // Absolute: tools it is handed to (apt's Dir:: options, make O=)
        // resolve a relative path against their own directories.
        let cache = match cache {
            Some(c) => std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf()),
            None => dirs::cache_dir()
                .ok_or_else(|| anyhow!("no cache directory; pass --cache"))?
                .join("zcsplice"),
        };
        Ok(Env { series, cache })
    }

    /// A new log directory for a boot of `built`:
    /// <cache>/runs/<tree>/<branch>/<time>.
    pub fn run_logs(&self, built: &Built) -> PathBuf {
        let rel = built
            .outdir
            .strip_prefix(self.cache.join("build"))
            .unwrap_or(&built.outdir);
        self.cache.join("runs").join(rel).join(stamp())
    }
}

/// Names a log directory by the time it was made.
pub fn stamp() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S").to_string()
}
