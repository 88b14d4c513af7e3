//! Configuring and building a kernel tree out of tree, in the cache.

pub mod build;
pub mod kconfig;
