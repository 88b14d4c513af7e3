//! The baseline: results of the unpatched base kernel, cached per test,
//! and how a test's series result compares with them.

use anyhow::{Context, Result};
use git2::{ObjectType, Oid};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::results::Res;

pub fn hash(bytes: &[u8]) -> String {
    Oid::hash_object(ObjectType::Blob, bytes)
        .expect("hashing cannot fail")
        .to_string()
}

/// Everything a baseline result depends on. Any change runs the test on
/// the base kernel again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The base commit the series applies on.
    pub base: String,
    /// Hash of the base kernel's .config.
    pub config: String,
    pub fs: String,
    pub mkfs_options: String,
    pub mount_options: String,
    /// The xfstests installation (see `Install::version`).
    pub xfstests: String,
    pub test: String,
    /// Hash of the test script and its golden output.
    pub test_hash: String,
}

impl Key {
    /// Names the cache file: a hash of every field.
    pub fn id(&self) -> String {
        hash(
            serde_json::to_string(self)
                .expect("a key serializes")
                .as_bytes(),
        )
    }
}

/// A cached baseline result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: Key,
    pub result: Res,
    pub seconds: f64,
    pub message: String,
    /// The log directory of the boot that ran it.
    pub logs: String,
}

/// `<cache>/xfstests/baseline/<key id>.json`, one file per test result.
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(cache: &Path) -> Cache {
        Cache {
            dir: cache.join("xfstests/baseline"),
        }
    }
    fn path(&self, k: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", k.id()))
    }
    /// The cached result for exactly this key (a file whose key differs,
    /// or that cannot be read, is a miss).
    pub fn get(&self, k: &Key) -> Option<Entry> {
        let text = std::fs::read_to_string(self.path(k)).ok()?;
        let e: Entry = serde_json::from_str(&text).ok()?;
        (e.key == *k).then_some(e)
    }
    /// Stores a finished result (incomplete runs are not results).
    pub fn put(&self, e: &Entry) -> Result<()> {
        if e.result == Res::Incomplete {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let p = self.path(&e.key);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(e)? + "\n")?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }
}

/// What a test's results mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Skip,
    /// Failed with the series; no baseline to compare with, or the
    /// baseline skipped it.
    Fail,
    /// Failed with the series and on the baseline too: not the series'.
    KnownFail,
    /// Passed on the baseline, failed with the series and in every retry.
    Regression,
    /// Passed on the baseline, failed with the series, passed in a retry.
    Flaky,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Fail => "fail",
            Status::KnownFail => "known-fail",
            Status::Regression => "REGRESSION",
            Status::Flaky => "flaky",
        }
    }
}

/// A failure with the series that passed on the baseline gets retried.
pub fn needs_retry(series: Res, baseline: Option<Res>) -> bool {
    series.bad() && baseline == Some(Res::Pass)
}

/// Classifies a test from its series result, its baseline result (None:
/// no baseline asked for) and its retries with the series.
pub fn classify(series: Res, baseline: Option<Res>, retries: &[Res]) -> Status {
    match series {
        Res::Pass => Status::Pass,
        Res::Skip => Status::Skip,
        Res::Fail | Res::Incomplete => match baseline {
            None | Some(Res::Skip) => Status::Fail,
            Some(Res::Fail | Res::Incomplete) => Status::KnownFail,
            Some(Res::Pass) if retries.contains(&Res::Pass) => Status::Flaky,
            Some(Res::Pass) => Status::Regression,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_to_fail_is_a_regression_fail_to_fail_is_not() {
        use Res::*;
        assert_eq!(
            classify(Fail, Some(Pass), &[Fail, Fail]),
            Status::Regression
        );
        assert_eq!(
            classify(Incomplete, Some(Pass), &[Fail, Incomplete]),
            Status::Regression
        );
        // Retries that could not run leave a regression a regression.
        assert_eq!(classify(Fail, Some(Pass), &[]), Status::Regression);
        assert_eq!(classify(Fail, Some(Fail), &[]), Status::KnownFail);
        assert_eq!(classify(Fail, Some(Incomplete), &[]), Status::KnownFail);
        assert_eq!(classify(Fail, Some(Skip), &[]), Status::Fail);
        assert_eq!(classify(Fail, None, &[]), Status::Fail);
        assert_eq!(classify(Pass, Some(Fail), &[]), Status::Pass);
        assert_eq!(classify(Skip, Some(Pass), &[]), Status::Skip);
    }

    #[test]
    fn a_failure_that_passes_a_retry_is_flaky() {
        use Res::*;
        assert!(needs_retry(Fail, Some(Pass)));
        assert!(needs_retry(Incomplete, Some(Pass)));
        assert!(!needs_retry(Fail, Some(Fail)));
        assert!(!needs_retry(Fail, None));
        assert!(!needs_retry(Pass, Some(Pass)));
        assert_eq!(classify(Fail, Some(Pass), &[Fail, Pass]), Status::Flaky);
        assert_eq!(classify(Fail, Some(Pass), &[Pass]), Status::Flaky);
    }

    fn key() -> Key {
        Key {
            base: "66d9a096b3bbb2f5223ffd25e639ad7101cefd7b".into(),
            config: "c0ffee".into(),
            fs: "ext4".into(),
            mkfs_options: String::new(),
            mount_options: String::new(),
            xfstests: "x1".into(),
            test: "generic/001".into(),
            test_hash: "t1".into(),
        }
    }

    #[test]
    fn every_field_is_part_of_the_key() {
        let k = key();
        assert_eq!(k.id(), key().id());
        let variants: [fn(&mut Key); 8] = [
            |k| k.base.push('0'),
            |k| k.config.push('0'),
            |k| k.fs = "ext2".into(),
            |k| k.mkfs_options = "-b 1024".into(),
            |k| k.mount_options = "-o dax".into(),
            |k| k.xfstests.push('0'),
            |k| k.test = "generic/002".into(),
            |k| k.test_hash.push('0'),
        ];
        for (i, f) in variants.iter().enumerate() {
            let mut v = key();
            f(&mut v);
            assert_ne!(v.id(), k.id(), "field {i} does not change the key");
        }
    }

    #[test]
    fn the_cache_returns_a_result_only_for_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path());
        let k = key();
        assert!(c.get(&k).is_none());
        let e = Entry {
            key: k.clone(),
            result: Res::Pass,
            seconds: 9.0,
            message: String::new(),
            logs: "/x".into(),
        };
        c.put(&e).unwrap();
        assert_eq!(c.get(&k).unwrap().result, Res::Pass);
        let mut other = key();
        other.config = "beef".into();
        assert!(c.get(&other).is_none());
        // A file under a key's name holding another key is a miss.
        std::fs::copy(c.path(&k), c.path(&other)).unwrap();
        assert!(c.get(&other).is_none());
        // Incomplete runs are not cached.
        let mut inc = e.clone();
        inc.key.test = "generic/003".into();
        inc.result = Res::Incomplete;
        c.put(&inc).unwrap();
        assert!(c.get(&inc.key).is_none());
    }
}
