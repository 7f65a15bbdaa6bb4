//! The embedded demo.

pub mod generator;
pub mod runner;
mod templates;
