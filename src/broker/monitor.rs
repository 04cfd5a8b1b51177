//! A minimal HTTP client for nats-server's monitoring port (`/healthz`, `/varz`, `/jsz`),
//! and the broker's traffic counters ([`Traffic`]) with the rates between two readings.
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
    get_as(base, path, timeout).await
}

/// GETs `base` + `path` and deserializes the body into `T`: serde skips the fields `T`
/// does not name without building them, so a sample allocates only what it keeps. For the
/// small answers read every tick (`/varz`, `/jsz`, `/healthz`: a few KiB); a large one
/// goes through [`get_typed`], which never holds the body.
pub async fn get_as<T: serde::de::DeserializeOwned>(
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<T, BrokerError> {
    let fail = |message: String| BrokerError::Monitor {
        url: format!("{}{}", base.trim_end_matches('/'), path),
        message,
    };
    let body = tokio::time::timeout(timeout, get(base, path))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(fail)?;
    serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
}

/// GETs `base` + `path` and deserializes the body into `T` as it arrives, so neither the
/// body nor the fields `T` does not name are ever held: a `/jsz?consumers=true` body is
/// ~2.3 KiB per consumer (16 MiB at 7,000 consumers), and as a `serde_json::Value` tree it
/// was the peak of a 1,000-agent run's RSS. A blocking socket on a blocking-pool thread,
/// because serde_json streams only from `std::io::Read`.
async fn get_typed<T: serde::de::DeserializeOwned + Send + 'static>(
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<T, BrokerError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let fail = |message: String| BrokerError::Monitor {
        url: url.clone(),
        message,
    };
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// monitoring URLs are supported".to_string()))?
        .trim_end_matches('/')
        .to_string();
    let path = path.to_string();
    let read = tokio::task::spawn_blocking(move || stream_json::<T>(&hostport, &path, timeout));
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)
}

/// The blocking half of [`get_typed`]: every socket operation waits at most `timeout`.
fn stream_json<T: serde::de::DeserializeOwned>(
    hostport: &str,
    path: &str,
    timeout: Duration,
) -> Result<T, String> {
    use std::io::{BufRead, Write};
    use std::net::ToSocketAddrs;
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // One write of the whole request: `write!` on an unbuffered stream would send
    // each format fragment as its own segment.
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nAccept: application/json\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.contains(" 200") {
        return Err(format!("HTTP status {:?}", line.trim_end()));
    }
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("malformed HTTP response".to_string());
        }
        if line == "\r\n" {
            break;
        }
    }
    serde_json::from_reader(reader).map_err(|e| format!("not JSON: {e}"))
}

/// The body of an HTTP/1.0 GET, in the one buffer it was read into.
async fn get(base: &str, path: &str) -> Result<Vec<u8>, String> {
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
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "malformed HTTP response".to_string())?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status_line = head.lines().next().unwrap_or_default();
    // /healthz answers 503 with a JSON body when unhealthy: the body is still useful.
    if !(status_line.contains(" 200") || status_line.contains(" 503")) {
        return Err(format!("HTTP status {status_line:?}"));
    }
    drop(head);
    raw.drain(..head_end + 4);
    Ok(raw)
}

/// The broker's cumulative traffic counters from one `/varz` answer: messages and bytes
/// in (from clients, routes, leaf nodes and gateways) and out (delivered to them).
///
/// nats-server counts a message's bytes as its headers plus payload: the protocol line
/// (`PUB`/`MSG` with subject and reply), TCP/IP and TLS are not counted, so the wire
/// carries more, most of all for small messages. Messages between the server's internal
/// clients (JetStream storing a publish) are not counted either.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Traffic {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// When the server process started (`/varz` `start`): a different value means the
    /// counters began again at zero in between.
    #[serde(default)]
    pub start: String,
}

/// Per-second traffic between two readings of [`Traffic`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// The seconds divided by, rounded to µs: what `interval_secs` writes, so that
    /// `rate × interval_secs` gives the counter's difference back (to the integer).
    pub interval_secs: f64,
    pub in_msgs_per_sec: f64,
    pub out_msgs_per_sec: f64,
    pub in_bytes_per_sec: f64,
    pub out_bytes_per_sec: f64,
}

/// The figures fleetsim reads of a `/varz` answer (the broker sampler's row, the time
/// series' traffic); serde skips the rest of it (the server's configuration, most of
/// its bytes) while parsing. Each is empty when the answer lacks it.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct Varz {
    pub connections: Option<u64>,
    pub total_connections: Option<u64>,
    pub slow_consumers: Option<u64>,
    pub mem: Option<u64>,
    pub cpu: Option<f64>,
    pub in_msgs: Option<u64>,
    pub out_msgs: Option<u64>,
    pub in_bytes: Option<u64>,
    pub out_bytes: Option<u64>,
    pub start: Option<String>,
}

impl Varz {
    /// The traffic counters; `None` when one is missing (not a nats-server).
    pub fn traffic(&self) -> Option<Traffic> {
        Some(Traffic {
            in_msgs: self.in_msgs?,
            out_msgs: self.out_msgs?,
            in_bytes: self.in_bytes?,
            out_bytes: self.out_bytes?,
            start: self.start.clone().unwrap_or_default(),
        })
    }
}

/// The figures fleetsim reads of a `/jsz` answer (without `?consumers`: counts, no
/// per-consumer walk).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct Jsz {
    /// A new one each time the server starts: counters from another id began at zero.
    #[serde(default)]
    pub server_id: String,
    pub streams: Option<u64>,
    pub consumers: Option<u64>,
    #[serde(default)]
    pub api: JszApi,
}

/// `/jsz`'s `api`: JetStream API requests since the server started.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct JszApi {
    pub total: Option<u64>,
    pub errors: Option<u64>,
    /// nats-server leaves it out when 0.
    pub inflight: Option<u64>,
}

/// A `/healthz` answer: `status`, and `error` when unhealthy.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct Healthz {
    pub status: Option<String>,
    pub error: Option<String>,
}

impl Traffic {
    /// The rates from `earlier` to `self`, read `secs` apart. `None` when the broker
    /// restarted in between (another start time, or a counter went down): the
    /// difference would not be this interval's traffic. The interval is rounded to µs
    /// first and the rates divide by that rounded value, then are rounded to 3
    /// decimals: `rate × interval_secs` is within `0.0005 × interval_secs` of the
    /// counter's difference, so rounding it gives the difference back exactly for any
    /// interval below 1,000 s.
    pub fn rates_since(&self, earlier: &Traffic, secs: f64) -> Option<Rates> {
        if self.start != earlier.start {
            return None;
        }
        let interval_secs = (secs * 1e6).round() / 1e6;
        if interval_secs <= 0.0 {
            return None;
        }
        let rate = |now: u64, then: u64| {
            let delta = now.checked_sub(then)?;
            Some((delta as f64 / interval_secs * 1000.0).round() / 1000.0)
        };
        Some(Rates {
            interval_secs,
            in_msgs_per_sec: rate(self.in_msgs, earlier.in_msgs)?,
            out_msgs_per_sec: rate(self.out_msgs, earlier.out_msgs)?,
            in_bytes_per_sec: rate(self.in_bytes, earlier.in_bytes)?,
            out_bytes_per_sec: rate(self.out_bytes, earlier.out_bytes)?,
        })
    }
}

/// Reads the broker's traffic counters from `/varz`.
pub async fn traffic(base: &str, timeout: Duration) -> Result<Traffic, BrokerError> {
    get_as(base, "/varz", timeout).await
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

/// Consumers on the broker now, from `/jsz`'s count (no per-consumer walk).
pub async fn consumers(base: &str) -> Result<u64, BrokerError> {
    let jsz: Jsz = get_as(base, "/jsz", Duration::from_secs(10)).await?;
    Ok(jsz.consumers.unwrap_or(0))
}

/// Client connections the broker holds now, from `/varz`.
pub async fn connections(base: &str) -> Result<u64, BrokerError> {
    let varz: Varz = get_as(base, "/varz", Duration::from_secs(10)).await?;
    Ok(varz.connections.unwrap_or(0))
}

/// The broker's counts after each step (`steps.csv`), read by one reader through a run.
///
/// The long-lived consumer count needs `/jsz?consumers=true&config=true`, which makes
/// the server walk every consumer and write ~2.3 KiB of JSON for each (16 MiB at 7,000
/// consumers): the costliest thing fleetsim asks of the broker, and it ran after every
/// step, inside the step's CPU window. A consumer is created only by a JetStream API
/// request and removed either by one or by the server reaping it, which changes the
/// count; so while the server (`server_id`), its API request total and its consumer
/// count are what they were at the last walk, the set of consumers is the same and the
/// last walk's answer stands. An idle hold does no walk.
#[derive(Debug, Default)]
pub struct StepCounts {
    /// What the last walk found, and the `/jsz` figures it was read beside.
    last_walk: Option<(WalkKey, u64)>,
}

/// What must be unchanged for the set of consumers to be the same.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WalkKey {
    server_id: String,
    api_total: u64,
    consumers: u64,
}

impl StepCounts {
    /// Reads connection and consumer counts from `/varz` and `/jsz`, and the long-lived
    /// consumers from a walk when they may have changed since the last one.
    pub async fn read(&mut self, base: &str) -> Result<BrokerCounts, BrokerError> {
        let timeout = Duration::from_secs(10);
        let varz: Varz = get_as(base, "/varz", timeout).await?;
        let jsz: Jsz = get_as(base, "/jsz", timeout).await?;
        let consumers = jsz.consumers.unwrap_or(0);
        let api_total = jsz.api.total.unwrap_or(0);
        let key = WalkKey {
            server_id: jsz.server_id,
            api_total,
            consumers,
        };
        let consumers_long_lived = match &self.last_walk {
            Some((last, long_lived)) if *last == key && !key.server_id.is_empty() => {
                Some(*long_lived)
            }
            _ if consumers <= DETAIL_LIMIT => {
                let detail: JszDetail =
                    get_typed(base, "/jsz?consumers=true&config=true", timeout).await?;
                let long_lived = detail.long_lived();
                self.last_walk = Some((key, long_lived));
                Some(long_lived)
            }
            _ => None,
        };
        Ok(BrokerCounts {
            connections: varz.connections.unwrap_or(0),
            consumers,
            consumers_long_lived,
            api_total,
            api_errors: jsz.api.errors.unwrap_or(0),
        })
    }
}

/// The part of `/jsz?consumers=true&config=true` that [`broker_counts`] reads; serde
/// skips everything else while parsing.
#[derive(Debug, Default, serde::Deserialize)]
struct JszDetail {
    #[serde(default)]
    account_details: Vec<JszAccount>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct JszAccount {
    #[serde(default)]
    stream_detail: Vec<JszStream>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct JszStream {
    #[serde(default)]
    consumer_detail: Vec<JszConsumer>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct JszConsumer {
    #[serde(default)]
    config: JszConsumerConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
struct JszConsumerConfig {
    #[serde(default)]
    headers_only: bool,
}

impl JszDetail {
    /// Consumers that are not headers-only (the `keys()` walks' short-lived ones are).
    fn long_lived(&self) -> u64 {
        self.account_details
            .iter()
            .flat_map(|a| &a.stream_detail)
            .flat_map(|s| &s.consumer_detail)
            .filter(|c| !c.config.headers_only)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_give_each_counter_difference_back_and_refuse_a_restart() {
        let varz = serde_json::json!({
            "server_id": "x", "start": "2026-12-01T17:00:00.1Z",
            "in_msgs": 1_000, "out_msgs": 5_000, "in_bytes": 64_000, "out_bytes": 320_123,
            "connections": 3
        });
        let varz: Varz = serde_json::from_value(varz).expect("a /varz");
        assert_eq!(varz.connections, Some(3));
        let earlier = varz.traffic().expect("counters");
        assert_eq!(earlier.out_bytes, 320_123);
        let now = Traffic {
            in_msgs: 1_007,
            out_msgs: 5_000,
            in_bytes: 64_448,
            out_bytes: 1_320_124,
            ..earlier.clone()
        };
        for secs in [0.1000004, 0.987_654_321, 1.0, 7.3, 999.9] {
            let r = now.rates_since(&earlier, secs).expect("rates");
            let back = |rate: f64| (rate * r.interval_secs).round() as u64;
            assert_eq!(
                [
                    back(r.in_msgs_per_sec),
                    back(r.out_msgs_per_sec),
                    back(r.in_bytes_per_sec),
                    back(r.out_bytes_per_sec)
                ],
                [7, 0, 448, 1_000_001],
                "{secs}: {r:?}"
            );
        }
        // A counter that went down, or another start time: the broker restarted.
        let restarted = Traffic {
            in_msgs: 3,
            ..now.clone()
        };
        assert_eq!(restarted.rates_since(&earlier, 1.0), None);
        let restarted = Traffic {
            start: "2026-12-01T17:00:09Z".to_string(),
            ..now.clone()
        };
        assert_eq!(restarted.rates_since(&earlier, 1.0), None);
        assert_eq!(now.rates_since(&earlier, 0.0), None);
        let partial: Varz =
            serde_json::from_value(serde_json::json!({"in_msgs": 1})).expect("parses");
        assert_eq!(partial.traffic(), None);
    }

    #[test]
    fn long_lived_consumers_skip_headers_only_ones_and_ignore_other_fields() {
        let body = br#"{
          "server_id": "x", "consumers": 3,
          "account_details": [{
            "name": "$G",
            "stream_detail": [
              {"name": "KV_jobs", "state": {"messages": 20},
               "consumer_detail": [
                 {"name": "a", "config": {"headers_only": true, "deliver_policy": "all"}},
                 {"name": "b", "config": {"deliver_policy": "last_per_subject"}}
               ]},
              {"name": "EXEC", "consumer_detail": [{"name": "agent_replay_pc-00001"}]},
              {"name": "KV_empty"}
            ]
          }]
        }"#;
        let detail: JszDetail = serde_json::from_slice(body).expect("parses");
        assert_eq!(detail.long_lived(), 2);
    }

    #[test]
    fn stream_json_reads_the_body_after_the_headers_and_refuses_other_statuses() {
        use std::io::{Read, Write};
        let serve = |response: &'static str| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().expect("accept");
                // Read the whole request head: closing with unread bytes would make
                // the kernel reset the connection before the client reads the answer.
                let mut request = Vec::new();
                let mut chunk = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                conn.write_all(response.as_bytes()).expect("write");
            });
            addr
        };
        let body =
            r#"{"account_details":[{"stream_detail":[{"consumer_detail":[{"config":{}}]}]}]}"#;
        let ok = Box::leak(
            format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}\n")
                .into_boxed_str(),
        );
        let detail: JszDetail =
            stream_json(&serve(ok), "/jsz", Duration::from_secs(5)).expect("parsed");
        assert_eq!(detail.long_lived(), 1);
        let err = stream_json::<JszDetail>(
            &serve("HTTP/1.0 404 Not Found\r\n\r\n"),
            "/jsz",
            Duration::from_secs(5),
        )
        .expect_err("404");
        assert!(err.contains("404"), "{err}");
    }

    /// A monitoring port that answers `/varz`, `/jsz` (with the API total `api_total`
    /// holds) and the consumer walk, counting the walks.
    fn fake_monitor(
        api_total: std::sync::Arc<std::sync::atomic::AtomicU64>,
        walks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> String {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut request = Vec::new();
                let mut chunk = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let body = if head.starts_with("GET /jsz?consumers=true") {
                    walks.fetch_add(1, Ordering::SeqCst);
                    r#"{"account_details":[{"stream_detail":[{"consumer_detail":[{"config":{}},{"config":{"headers_only":true}}]}]}]}"#.to_string()
                } else if head.starts_with("GET /jsz") {
                    let total = api_total.load(Ordering::SeqCst);
                    format!(
                        r#"{{"server_id":"S1","streams":1,"consumers":2,"api":{{"total":{total},"errors":0}}}}"#
                    )
                } else {
                    r#"{"connections":4,"in_msgs":1,"out_msgs":1,"in_bytes":1,"out_bytes":1}"#
                        .to_string()
                };
                let _ = conn.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes());
            }
        });
        base
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_consumer_walk_is_repeated_only_when_the_consumers_may_have_changed() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let api_total = Arc::new(AtomicU64::new(10));
        let walks = Arc::new(AtomicU64::new(0));
        let base = fake_monitor(api_total.clone(), walks.clone());
        let mut counts = StepCounts::default();
        let first = counts.read(&base).await.expect("counts");
        assert_eq!(
            (
                first.connections,
                first.consumers,
                first.consumers_long_lived
            ),
            (4, 2, Some(1))
        );
        // Nothing moved: the last walk's answer stands.
        let again = counts.read(&base).await.expect("counts");
        assert_eq!(again, first);
        assert_eq!(walks.load(Ordering::SeqCst), 1);
        // An API request since: a consumer may have been made, so it walks again.
        api_total.store(11, Ordering::SeqCst);
        let after = counts.read(&base).await.expect("counts");
        assert_eq!(after.consumers_long_lived, Some(1));
        assert_eq!(after.api_total, 11);
        assert_eq!(walks.load(Ordering::SeqCst), 2);
        // Another reader has no last walk of its own.
        StepCounts::default().read(&base).await.expect("counts");
        assert_eq!(walks.load(Ordering::SeqCst), 3);
    }
}
