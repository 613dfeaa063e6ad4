//! The collector's own count of envelopes its live subscribers lost, read from
//! `GET /metrics` with a minimal HTTP/1.1 request (loopback only).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sum of `weir_egress_dropped_envelopes_total` over every egress.
pub async fn egress_dropped(http: SocketAddr) -> anyhow::Result<u64> {
    let text = tokio::time::timeout(Duration::from_secs(5), get_metrics(http))
        .await
        .context("GET /metrics timed out")??;
    Ok(sum_of(&text, "weir_egress_dropped_envelopes_total"))
}

async fn get_metrics(http: SocketAddr) -> anyhow::Result<String> {
    let mut conn = TcpStream::connect(http).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The sum of the samples of `metric` (any labels) in Prometheus text.
fn sum_of(text: &str, metric: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_label_set() {
        let text = "# HELP x\nweir_egress_dropped_envelopes_total{egress=\"v2_read\"} 3\n\
                    weir_egress_dropped_envelopes_total{egress=\"batched_receiver\"} 4\n\
                    weir_egress_dropped_envelopes_totalx 9\n";
        assert_eq!(
            super::sum_of(text, "weir_egress_dropped_envelopes_total"),
            7
        );
    }
}
