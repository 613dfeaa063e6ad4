//! Sources: where the agent's data comes from. Each source is a module holding its
//! config struct next to the code that runs it (DESIGN.md, Parts), so what a user writes
//! under `[sources.NAME]` and what runs are read together.
//!
//! - [`file`](mod@file): tails files matched by globs, follows rotation, keeps checkpoints that
//!   move only on end-to-end acknowledgement (`type = "file"`).

pub mod file;
pub mod registry;
pub mod socket;
pub mod stdin;
