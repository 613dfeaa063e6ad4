//! Checks of envelopes against [`Limits`]; each error names the field and the limit.

use prost::Message;
use weir_proto::lv2::{Envelope, envelope::Message as Body};

use crate::Limits;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnvelope {
    #[error("envelope has no message (one of log, counter, gauge, timer, event is required)")]
    NoMessage,
    #[error("{what} is {len} bytes, over the limit of {limit} (limits.{key})")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
        key: &'static str,
    },
    #[error("envelope has {count} tags, over the limit of {limit} (limits.max_tags)")]
    TooManyTags { count: usize, limit: usize },
    #[error("gauge has no metrics")]
    EmptyGauge,
}

fn check_len(
    what: &'static str,
    len: usize,
    limit: usize,
    key: &'static str,
) -> Result<(), InvalidEnvelope> {
    if len > limit {
        Err(InvalidEnvelope::TooLong {
            what,
            len,
            limit,
            key,
        })
    } else {
        Ok(())
    }
}

/// Checks one envelope.
pub fn validate_envelope(env: &Envelope, limits: &Limits) -> Result<(), InvalidEnvelope> {
    let name = |what, s: &str| check_len(what, s.len(), limits.max_name_bytes, "max_name_bytes");
    name("source_id", &env.source_id)?;
    name("instance_id", &env.instance_id)?;
    let tag_count = env.tags.len() + env.deprecated_tags.len();
    if tag_count > limits.max_tags {
        return Err(InvalidEnvelope::TooManyTags {
            count: tag_count,
            limit: limits.max_tags,
        });
    }
    for k in env.tags.keys().chain(env.deprecated_tags.keys()) {
        check_len(
            "tag key",
            k.len(),
            limits.max_tag_key_bytes,
            "max_tag_key_bytes",
        )?;
    }
    for v in env.tags.values() {
        check_len(
            "tag value",
            v.len(),
            limits.max_tag_value_bytes,
            "max_tag_value_bytes",
        )?;
    }
    for v in env.deprecated_tags.values() {
        check_len(
            "tag value",
            v.encoded_len(),
            limits.max_tag_value_bytes,
            "max_tag_value_bytes",
        )?;
    }
    let payload = |len| {
        check_len(
            "payload",
            len,
            limits.max_payload_bytes,
            "max_payload_bytes",
        )
    };
    match &env.message {
        None => return Err(InvalidEnvelope::NoMessage),
        Some(Body::Log(l)) => payload(l.payload.len())?,
        Some(Body::Counter(c)) => name("counter name", &c.name)?,
        Some(Body::Gauge(g)) => {
            if g.metrics.is_empty() {
                return Err(InvalidEnvelope::EmptyGauge);
            }
            for (k, v) in &g.metrics {
                name("gauge metric name", k)?;
                name("gauge unit", &v.unit)?;
            }
            payload(g.encoded_len())?;
        }
        Some(Body::Timer(t)) => name("timer name", &t.name)?,
        Some(Body::Event(e)) => {
            name("event title", &e.title)?;
            payload(e.body.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{Gauge, Log};

    fn log(n: usize) -> Envelope {
        Envelope {
            message: Some(Body::Log(Log {
                payload: vec![b'a'; n].into(),
                r#type: 0,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn payload_over_limit_names_the_limit() {
        let limits = Limits {
            max_payload_bytes: 10,
            ..Limits::default()
        };
        assert!(validate_envelope(&log(10), &limits).is_ok());
        let err = validate_envelope(&log(11), &limits).unwrap_err();
        assert!(err.to_string().contains("max_payload_bytes"), "{err}");
    }

    #[test]
    fn missing_message_and_empty_gauge_refused() {
        let limits = Limits::default();
        assert_eq!(
            validate_envelope(&Envelope::default(), &limits),
            Err(InvalidEnvelope::NoMessage)
        );
        let g = Envelope {
            message: Some(Body::Gauge(Gauge::default())),
            ..Default::default()
        };
        assert_eq!(
            validate_envelope(&g, &limits),
            Err(InvalidEnvelope::EmptyGauge)
        );
    }

    #[test]
    fn too_many_tags_refused() {
        let limits = Limits {
            max_tags: 2,
            ..Limits::default()
        };
        let mut e = log(1);
        for i in 0..3 {
            e.tags.insert(format!("k{i}"), "v".into());
        }
        assert!(matches!(
            validate_envelope(&e, &limits),
            Err(InvalidEnvelope::TooManyTags { count: 3, .. })
        ));
    }
}
