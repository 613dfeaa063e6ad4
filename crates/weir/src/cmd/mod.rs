//! The subcommands.

pub mod read;
pub mod serve;
