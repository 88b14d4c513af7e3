//! `zcsplice xfstests` up to the point where it would build and boot:
//! finding xfstests, the lists, the base of the series. No VM, no kernel.

mod common;

use common::{git, zcsplice};
use std::path::Path;

/// A built-looking xfstests tree: check, ltp/fsstress, a group list.
fn fake_xfstests(dir: &Path) {
    std::fs::create_dir_all(dir.join("tests/generic")).unwrap();
    std::fs::create_dir_all(dir.join("ltp")).unwrap();
    std::fs::write(dir.join("check"), "#!/bin/bash\n").unwrap();
    std::fs::write(dir.join("ltp/fsstress"), "").unwrap();
    std::fs::write(dir.join("tests/generic/group.list"), "001 auto quick\n").unwrap();
    std::fs::write(dir.join("tests/generic/001"), "#!/bin/bash\n").unwrap();
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn no_xfstests_is_an_infrastructure_error_that_says_how_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let series = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing = tmp.path().join("no-xfstests");
    let o = zcsplice(
        &[
            "xfstests",
            "--tree",
            tmp.path().to_str().unwrap(),
            "--xfstests",
            missing.to_str().unwrap(),
            "generic/001",
        ],
        series,
        &tmp.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(128), "{err}");
    assert!(err.contains("no usable xfstests"), "{err}");
    assert!(
        err.contains("git clone git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git"),
        "{err}"
    );
    assert!(err.contains("make -j$(nproc) && make install"), "{err}");

    // XFSTESTS_DIR is used when --xfstests is not given.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_zcsplice"))
        .args([
            "xfstests",
            "--tree",
            tmp.path().to_str().unwrap(),
            "generic/001",
        ])
        .env("ZCSPLICE_SERIES", series)
        .env("ZCSPLICE_CACHE", tmp.path().join("cache"))
        .env("XFSTESTS_DIR", &missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(128));
    assert!(
        stderr(&o).contains("(XFSTESTS_DIR) does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_expunge_line_and_a_missing_base_stop_before_any_build() {
    let tmp = tempfile::tempdir().unwrap();
    let xfs = tmp.path().join("xfstests");
    fake_xfstests(&xfs);
    // A series directory whose expunge list has a line without a reason.
    let series = tmp.path().join("series");
    std::fs::create_dir_all(series.join("vm/xfstests/expunge")).unwrap();
    std::fs::write(
        series.join("vm/xfstests/expunge/ext4"),
        "# why each test is left out\ngeneric/002  # ok\ngeneric/003\n",
    )
    .unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    git(&tree, &["init", "-q", "-b", "zcsplice/1.0"]);
    std::fs::write(tree.join("Makefile"), "VERSION = 1\n").unwrap();
    git(&tree, &["add", "Makefile"]);
    git(&tree, &["commit", "-q", "-m", "base"]);
    let args = [
        "xfstests",
        "--tree",
        tree.to_str().unwrap(),
        "--xfstests",
        xfs.to_str().unwrap(),
        "--baseline",
        "generic/001",
    ];
    let o = zcsplice(&args, &series, &tmp.path().join("cache"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("vm/xfstests/expunge/ext4:3: generic/003 has no reason"),
        "{err}"
    );

    std::fs::write(
        series.join("vm/xfstests/expunge/ext4"),
        "generic/002  # ok\n",
    )
    .unwrap();
    let o = zcsplice(&args, &series, &tmp.path().join("cache"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--baseline: branch zcsplice/1.0 has no recorded base"),
        "{err}"
    );
    // An unknown test is named.
    let mut bad = args.to_vec();
    bad[6] = "generic/999";
    let o = zcsplice(&bad, &series, &tmp.path().join("cache"));
    assert!(
        stderr(&o).contains("generic/999: no such test"),
        "{}",
        stderr(&o)
    );
    assert!(
        !tmp.path().join("cache/build").exists(),
        "nothing may be built"
    );
}
