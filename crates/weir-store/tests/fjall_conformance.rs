//! The conformance suite run against the embedded fjall backend, each case on a real
//! store in its own temporary directory.

weir_store::conformance_tests!(weir_store::conformance::FjallBackend::new);
