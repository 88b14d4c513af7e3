//! What runs in a booted guest: the guest tests, the bench, the negative
//! controls and xfstests.

pub mod bench;
pub mod controls;
pub mod guest_tests;
pub mod xfstests;
