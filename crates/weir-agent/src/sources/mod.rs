//! Sources: each a module with its config struct beside the code that runs it.
