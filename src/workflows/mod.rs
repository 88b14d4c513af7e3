//! Stages chained over trees.

pub mod bisect;
pub mod each_commit;
pub mod matrix;
