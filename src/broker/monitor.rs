//! A minimal HTTP client for nats-server's monitoring port (`/healthz`, `/varz`, `/jsz`).
//!
//! The monitoring port is plain HTTP on a known host. A full HTTP client crate would be
//! the only reason to pull in hyper and TLS; an HTTP/1.0 GET (which makes the Go server
//! answer without chunked encoding and close the connection) is all we need.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BrokerError;

/// GETs `base` + `path` and returns the body as JSON.
pub async fn get_json(
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<serde_json::Value, BrokerError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let fail = |message: String| BrokerError::Monitor {
        url: url.clone(),
        message,
    };
    let body = tokio::time::timeout(timeout, get(base, path))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(fail)?;
    serde_json::from_str(&body).map_err(|e| fail(format!("not JSON: {e}")))
}

async fn get(base: &str, path: &str) -> Result<String, String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// monitoring URLs are supported".to_string())?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(hostport)
        .await
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nAccept: application/json\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "malformed HTTP response".to_string())?;
    let status_line = head.lines().next().unwrap_or_default();
    // /healthz answers 503 with a JSON body when unhealthy: the body is still useful.
    if !(status_line.contains(" 200") || status_line.contains(" 503")) {
        return Err(format!("HTTP status {status_line:?}"));
    }
    Ok(body.to_string())
}

/// Counts the broker reports about itself at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerCounts {
    pub connections: u64,
    /// Every consumer on the broker, including short-lived ones not yet reaped.
    pub consumers: u64,
    /// Consumers minus the `keys()` walks' short-lived ones (headers-only ordered
    /// consumers the server reaps ~30 s after they are dropped). `None` when the broker
    /// holds too many consumers to list them cheaply.
    pub consumers_long_lived: Option<u64>,
    pub api_total: u64,
    pub api_errors: u64,
}

/// Above this many consumers the per-consumer listing is skipped (it is one big JSON).
const DETAIL_LIMIT: u64 = 20_000;

/// Reads connection and consumer counts from `/varz` and `/jsz`.
pub async fn broker_counts(base: &str) -> Result<BrokerCounts, BrokerError> {
    let timeout = Duration::from_secs(10);
    let varz = get_json(base, "/varz", timeout).await?;
    let jsz = get_json(base, "/jsz", timeout).await?;
    let u = |v: &serde_json::Value, ptr: &str| v.pointer(ptr).and_then(|x| x.as_u64()).unwrap_or(0);
    let consumers = u(&jsz, "/consumers");
    let consumers_long_lived = if consumers <= DETAIL_LIMIT {
        let detail = get_json(base, "/jsz?consumers=true&config=true", timeout).await?;
        Some(count_long_lived(&detail))
    } else {
        None
    };
    Ok(BrokerCounts {
        connections: u(&varz, "/connections"),
        consumers,
        consumers_long_lived,
        api_total: u(&jsz, "/api/total"),
        api_errors: u(&jsz, "/api/errors"),
    })
}

fn count_long_lived(jsz: &serde_json::Value) -> u64 {
    let empty = Vec::new();
    let accounts = jsz
        .get("account_details")
        .and_then(|a| a.as_array())
        .unwrap_or(&empty);
    accounts
        .iter()
        .flat_map(|a| {
            a.get("stream_detail")
                .and_then(|s| s.as_array())
                .unwrap_or(&empty)
        })
        .flat_map(|s| {
            s.get("consumer_detail")
                .and_then(|c| c.as_array())
                .unwrap_or(&empty)
        })
        .filter(|c| c.pointer("/config/headers_only").and_then(|h| h.as_bool()) != Some(true))
        .count() as u64
}
