//! JSON forms of envelopes (filled in below).
