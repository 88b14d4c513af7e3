//! Booting a built kernel: KVM or TCG, hard timeouts, scratch disks, the
//! console's kernel reports, and the boot itself.

pub mod boot;
pub mod console;
pub mod disks;
pub mod vm;
