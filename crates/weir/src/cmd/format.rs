//! The one-line, human-readable form of a live envelope (`weir tail`).

use weir_core::Envelope;
use weir_core::json::format_rfc3339_nanos;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::lv2::log::Type as LogType;

/// `TIME SOURCE[/INSTANCE] KIND DETAILS` on one line: a log's payload has its trailing
/// newline removed and any other line break or control character escaped, so one
/// envelope is always one line.
pub fn envelope_line(env: &Envelope) -> String {
    let mut line = format_rfc3339_nanos(env.timestamp);
    line.push(' ');
    line.push_str(if env.source_id.is_empty() {
        "-"
    } else {
        &env.source_id
    });
    if !env.instance_id.is_empty() {
        line.push('/');
        line.push_str(&env.instance_id);
    }
    line.push(' ');
    match &env.message {
        Some(Body::Log(l)) => {
            let kind = match LogType::try_from(l.r#type) {
                Ok(LogType::Err) => "ERR",
                _ => "OUT",
            };
            line.push_str("log ");
            line.push_str(kind);
            line.push(' ');
            let text = String::from_utf8_lossy(&l.payload);
            push_escaped(&mut line, text.strip_suffix('\n').unwrap_or(&text));
        }
        Some(Body::Counter(c)) => {
            line.push_str(&format!(
                "counter {} delta={} total={}",
                c.name, c.delta, c.total
            ));
        }
        Some(Body::Gauge(g)) => {
            line.push_str("gauge");
            let mut metrics: Vec<_> = g.metrics.iter().collect();
            metrics.sort_by(|a, b| a.0.cmp(b.0));
            for (name, v) in metrics {
                line.push_str(&format!(" {name}={}", v.value));
                if !v.unit.is_empty() {
                    line.push(':');
                    line.push_str(&v.unit);
                }
            }
        }
        Some(Body::Timer(t)) => {
            let ms = (t.stop as f64 - t.start as f64) / 1e6;
            line.push_str(&format!("timer {} {ms:.3} ms", t.name));
        }
        Some(Body::Event(e)) => {
            line.push_str("event ");
            push_escaped(&mut line, &e.title);
            line.push_str(": ");
            push_escaped(&mut line, &e.body);
        }
        None => line.push_str("none"),
    }
    line
}

/// Appends `s` with line breaks, tabs and other control characters escaped.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{Counter, Gauge, GaugeValue, Log};

    fn env(message: Body) -> Envelope {
        Envelope {
            timestamp: 1_000_000_001,
            source_id: "app".into(),
            instance_id: "2".into(),
            message: Some(message),
            ..Default::default()
        }
    }

    #[test]
    fn one_line_per_envelope() {
        let l = envelope_line(&env(Body::Log(Log {
            payload: b"two\nlines\n".to_vec().into(),
            r#type: LogType::Err as i32,
        })));
        assert_eq!(
            l,
            "1970-01-01T00:00:01.000000001Z app/2 log ERR two\\nlines"
        );
        let c = envelope_line(&env(Body::Counter(Counter {
            name: "req".into(),
            delta: 1,
            total: 5,
        })));
        assert!(c.ends_with("app/2 counter req delta=1 total=5"), "{c}");
        let mut metrics = std::collections::HashMap::new();
        metrics.insert(
            "mem".to_string(),
            GaugeValue {
                unit: "bytes".into(),
                value: 1024.0,
            },
        );
        metrics.insert(
            "cpu".to_string(),
            GaugeValue {
                unit: String::new(),
                value: 12.5,
            },
        );
        let g = envelope_line(&env(Body::Gauge(Gauge { metrics })));
        assert!(g.ends_with("gauge cpu=12.5 mem=1024:bytes"), "{g}");
    }
}
