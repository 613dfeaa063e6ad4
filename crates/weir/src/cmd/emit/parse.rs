//! Parsers of `weir emit`'s arguments: tags, gauge metrics and durations.

use std::time::Duration;

/// `KEY=VALUE` (the value may be empty, the key may not).
pub fn tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// One gauge metric: `NAME=VALUE[:UNIT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeMetric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// Parses `NAME=VALUE[:UNIT]`, e.g. `memory=1024:bytes` or `cpu=12.5`.
pub fn gauge(s: &str) -> Result<GaugeMetric, String> {
    let (name, rest) = s
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE[:UNIT]"))?;
    let (value, unit) = rest.split_once(':').unwrap_or((rest, ""));
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
    Ok(GaugeMetric {
        name: name.to_string(),
        value,
        unit: unit.to_string(),
    })
}

/// A duration: a whole number with a unit, `ns`, `us`, `ms`, `s`, `m` or `h` (e.g.
/// `250ms`, `3s`).
pub fn duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} needs a unit: ns, us, ms, s, m or h"))?;
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} does not start with a whole number"))?;
    let bad = || format!("{s:?}: too large");
    match unit {
        "ns" => Ok(Duration::from_nanos(n)),
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or_else(bad),
        _ => Err(format!(
            "{s:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(tag("env=prod").unwrap(), ("env".into(), "prod".into()));
        assert_eq!(tag("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(tag("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(tag("novalue").is_err());
        assert!(tag("=x").is_err());
    }

    #[test]
    fn gauges() {
        let g = gauge("memory=1024:bytes").unwrap();
        assert_eq!(
            (g.name.as_str(), g.value, g.unit.as_str()),
            ("memory", 1024.0, "bytes")
        );
        let g = gauge("cpu=12.5").unwrap();
        assert_eq!((g.value, g.unit.as_str()), (12.5, ""));
        assert!(gauge("cpu").is_err());
        assert!(gauge("cpu=lots").unwrap_err().contains("not a number"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("7ns").unwrap(), Duration::from_nanos(7));
        assert!(duration("5").is_err());
        assert!(duration("5 parsecs").is_err());
        assert!(duration("ms").is_err());
    }
}
