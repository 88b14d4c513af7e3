//! What a fresh Debian machine needs for the kernel loop, installed on demand.

use anyhow::{bail, Context, Result};

use crate::kernel::build::which;

/// Debian packages: kernel build, guest boot, guest tests.
pub const DEBIAN: &[&str] = &[
    "build-essential",
    "flex",
    "bison",
    "bc",
    "cpio",
    "kmod",
    "dwarves",
    "libelf-dev",
    "libssl-dev",
    "ccache",
    "qemu-system-x86",
    "busybox-static",
    "e2fsprogs",
    "dmsetup",
    "fio",
    "stress-ng",
    "git",
];

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The Debian packages of `pkgs` that dpkg does not have installed.
pub fn missing_debs<'a>(pkgs: &[&'a str]) -> Vec<&'a str> {
    pkgs.iter()
        .copied()
        .filter(|p| {
            !duct::cmd!("dpkg-query", "-W", "-f=${Status}", p)
                .stderr_null()
                .read()
                .map(|s| s.contains("ok installed"))
                .unwrap_or(false)
        })
        .collect()
}

/// Installs Debian packages with apt-get (as root; otherwise says how).
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "missing Debian packages: {}; install them with `sudo apt-get install {}`",
            pkgs.join(" "),
            pkgs.join(" ")
        );
    }
    log::info!("installing {} (apt-get)", pkgs.join(" "));
    // A fresh machine may have no package lists yet.
    duct::cmd!("apt-get", "update", "-qq")
        .stdout_to_stderr()
        .run()?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(pkgs.iter());
    duct::cmd("apt-get", &args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout_to_stderr()
        .run()
        .with_context(|| format!("apt-get install {} failed", pkgs.join(" ")))?;
    Ok(())
}

/// Installs missing Debian packages and virtme-ng; says what it does.
pub fn ensure() -> Result<()> {
    let missing = missing_debs(DEBIAN);
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if !which("vng") {
        pip_install(&["virtme-ng"], "")?;
        if !which("vng") {
            bail!("virtme-ng is installed but `vng` is not on PATH; add pip's script directory to PATH");
        }
    }
    // checkpatch.pl's spdxcheck.py needs them; without, it dies and
    // checkpatch goes on as if the SPDX lines were checked.
    let spdx = duct::cmd!("python3", "-c", "import ply, git")
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success());
    if !spdx {
        pip_install(&["ply", "GitPython"], ", for checkpatch.pl's spdxcheck.py")?;
    }
    Ok(())
}

/// Installs Python packages with pip; says what and (`why`) what for.
fn pip_install(pkgs: &[&str], why: &str) -> Result<()> {
    let names = pkgs.join(" ");
    log::info!("installing {names} (pip{why})");
    let mut args = vec!["-m", "pip", "install", "--quiet"];
    args.extend(pkgs);
    duct::cmd("python3", &args)
        .stdout_to_stderr()
        .run()
        .with_context(|| format!("pip install {names} failed"))?;
    Ok(())
}
