//! Stages chained over trees.

pub mod matrix;
