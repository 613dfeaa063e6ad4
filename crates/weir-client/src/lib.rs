//! weir's client library, compatible with Cloud Foundry Loggregator v2 (go-loggregator's
//! behaviour, see PROTOCOLS.md section 4).
