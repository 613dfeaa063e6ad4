//! How weir names map to NATS names: subject tokens, KV keys and message ids.
//!
//! A stream path becomes one *token* that is valid both as a subject token and as a KV
//! key: `p` followed by the path in unpadded base64url when the path is at most
//! [`MAX_INLINE_PATH`] bytes (so the subject stays well under NATS's 4 KiB control
//! line), otherwise `h` followed by the lowercase hex SHA-256 of the path (the LogDog
//! stream id); such records carry the path in a `Weir-Path` header and in the registry
//! value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Longest path kept readable in its token.
pub const MAX_INLINE_PATH: usize = 1024;

/// The token of a stream path.
pub fn token(path: &str) -> String {
    if path.len() <= MAX_INLINE_PATH {
        format!("p{}", URL_SAFE_NO_PAD.encode(path))
    } else {
        format!("h{}", stream_id(path))
    }
}

/// Whether the token hashes its path (the path must then be read from elsewhere).
pub fn is_hashed(token: &str) -> bool {
    token.starts_with('h')
}

/// The path of an inline token, `None` for hashed or malformed tokens.
pub fn inline_path(token: &str) -> Option<String> {
    let b64 = token.strip_prefix('p')?;
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The LogDog stream id: lowercase hex SHA-256 of the path.
pub fn stream_id(path: &str) -> String {
    hex::encode(Sha256::digest(path.as_bytes()))
}

/// The subject of a stream's records.
pub fn entry_subject(prefix: &str, token: &str) -> String {
    format!("{prefix}.e.{token}")
}

/// The token at the end of an entry subject.
pub fn token_of_subject<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix(".e.")
        .filter(|t| !t.is_empty() && !t.contains('.'))
}

/// Message id of the append record starting at `first`: stream + index, so the server
/// drops a resend inside its window.
pub fn append_msg_id(path: &str, first: u64) -> String {
    format!("{}:{first}", stream_id(path))
}

/// Message id of the termination marker at `next` (distinct from any append id).
pub fn terminate_msg_id(path: &str, next: u64, count: u64) -> String {
    format!("{}:{next}:t{count}", stream_id(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_subject_safe() {
        for path in ["a/+/b", "bb/123/+/x:y.z-w_v", "loggregator/app/+/0"] {
            let t = token(path);
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{t}"
            );
            assert_eq!(inline_path(&t).as_deref(), Some(path));
            let subject = entry_subject("weir", &t);
            assert_eq!(token_of_subject("weir", &subject), Some(t.as_str()));
        }
    }

    #[test]
    fn long_paths_are_hashed() {
        let long = format!("a/+/{}", "x".repeat(5000));
        let t = token(&long);
        assert!(is_hashed(&t));
        assert_eq!(t.len(), 65);
        assert_eq!(inline_path(&t), None);
    }
}
