//! Stages chained over trees.

pub mod bisect;
pub mod matrix;
