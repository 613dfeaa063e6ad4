//! The subcommands.

pub mod agent;
pub mod conn;
pub mod emit;
pub mod events;
pub mod format;
pub mod read;
pub mod run;
pub mod serve;
pub mod signal;
pub mod tail;
pub mod tls;
