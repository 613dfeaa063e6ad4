//! The Store conformance suite (the one the fjall backend passes) on JetStream, each
//! case against its own `nats-server`.

weir_store::conformance_tests!(weir_store_nats::test_support::conformance::NatsBackend::new);

/// The whole suite again with a dedupe window of one second: nothing in it may rest on
/// the server dropping duplicate message ids.
mod dedupe_window_1s {
    weir_store::conformance_tests!(|| {
        weir_store_nats::test_support::conformance::NatsBackend::with_duplicate_window(1)
    });
}
