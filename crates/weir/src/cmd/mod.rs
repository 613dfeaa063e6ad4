//! The subcommands.

pub mod read;
pub mod serve;
pub mod tls;
