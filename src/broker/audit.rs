//! The API audit (`[broker] record_api = true`): every JetStream API request the broker
//! received while the fleet ran, in order, written to `api.csv`.
//!
//! nats-server publishes an API audit advisory on exactly `$JS.EVENT.ADVISORY.API` for
//! every JetStream API request (`STREAM.INFO`, `CONSUMER.CREATE`, `CONSUMER.DELETE` …),
//! naming the client connection that sent it. KV gets are direct gets, which leave no
//! advisory; their requests (`$JS.API.DIRECT.GET.<stream>.<subject>`) are captured
//! themselves. Both are kept by a file-backed stream with `no_ack` (the server requires
//! it for a stream over `$JS.API` subjects), so nothing is lost while a client (fleetsim
//! included) is reconnecting after a broker restart, as a live subscription would lose
//! it. The stream is read back once the agents have stopped, then deleted.
//!
//! Recording costs the broker a stored message per API request: it is off by default and
//! meant for fidelity checks and small fleets, not for a run whose latencies matter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

/// The capture stream's name.
pub const AUDIT_STREAM: &str = "FLEETSIM_API_AUDIT";
/// What it captures.
const AUDIT_SUBJECTS: [&str; 2] = ["$JS.EVENT.ADVISORY.API", "$JS.API.DIRECT.GET.>"];
/// The capture's size limit; the oldest requests go first past it.
const AUDIT_MAX_BYTES: i64 = 512 * 1024 * 1024;
/// How long reading back one message may take before the audit is given up.
const READ_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("API audit: {0}")]
pub struct AuditError(String);

/// One JetStream API request as the broker received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// When the broker stored it (its advisory, or the direct-get request itself).
    pub at: SystemTime,
    /// The request type: `STREAM.INFO`, `CONSUMER.CREATE`, `CONSUMER.DELETE`,
    /// `CONSUMER.DURABLE.CREATE`, `DIRECT.GET`, …
    pub request: String,
    /// The stream it is about (`KV_jobs`, `EXEC`), empty for account-wide requests.
    pub target: String,
    /// The connection name of the client that sent it (an agent's pc id); empty for
    /// direct gets, whose requests carry no client.
    pub client: String,
    /// The JetStream error code of a failed request (`10014`: consumer not found).
    pub error: Option<u64>,
    /// Consumer creates: deliver policy and filter; direct gets: the subject asked for.
    pub detail: String,
}

/// The running capture.
pub struct ApiAudit {
    js: jetstream::Context,
}

impl ApiAudit {
    /// Creates the capture stream (a previous run's is deleted first).
    pub async fn start(js: &jetstream::Context) -> Result<ApiAudit, AuditError> {
        let _ = js.delete_stream(AUDIT_STREAM).await;
        js.create_stream(stream::Config {
            name: AUDIT_STREAM.to_string(),
            subjects: AUDIT_SUBJECTS.iter().map(|s| s.to_string()).collect(),
            no_ack: true,
            max_bytes: AUDIT_MAX_BYTES,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            AuditError(format!(
                "cannot create stream {AUDIT_STREAM} ({e}): the account needs room for one more stream of up to 512 MiB on file storage; free it, or leave out [broker] record_api = true"
            ))
        })?;
        Ok(ApiAudit { js: js.clone() })
    }

    /// Reads back every request captured so far, in the order the broker stored them,
    /// then deletes the capture.
    pub async fn collect(self) -> Result<Vec<ApiRequest>, AuditError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| AuditError(format!("{what}: {e}"));
        let mut stream = self
            .js
            .get_stream(AUDIT_STREAM)
            .await
            .map_err(|e| fail("cannot find the capture stream", &e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| fail("cannot read the capture's size", &e))?
            .state
            .last_sequence;
        let mut requests = Vec::new();
        if last > 0 {
            let reader = stream
                .create_consumer(consumer::pull::Config {
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::None,
                    inactive_threshold: Duration::from_secs(60),
                    ..Default::default()
                })
                .await
                .map_err(|e| fail("cannot read the capture", &e))?;
            let mut messages = reader
                .messages()
                .await
                .map_err(|e| fail("cannot read the capture", &e))?;
            loop {
                let next = tokio::time::timeout(READ_WAIT, messages.next()).await;
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(fail("reading the capture failed", &e)),
                    Ok(None) => break,
                    Err(_) => return Err(fail("reading the capture stalled", &"timed out")),
                };
                let (sequence, at) = match message.info() {
                    Ok(info) => (
                        info.stream_sequence,
                        to_system_time(info.published.unix_timestamp_nanos()),
                    ),
                    Err(e) => return Err(fail("a captured message has no metadata", &e)),
                };
                if let Some(request) = parse(message.subject.as_str(), &message.payload, at) {
                    requests.push(request);
                }
                if sequence >= last {
                    break;
                }
            }
        }
        let _ = self.js.delete_stream(AUDIT_STREAM).await;
        Ok(requests)
    }
}

/// Nanoseconds since the Unix epoch as a `SystemTime`.
fn to_system_time(nanos: i128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// One captured message as a request: an advisory, or a direct-get request.
pub fn parse(subject: &str, payload: &[u8], at: SystemTime) -> Option<ApiRequest> {
    if let Some(rest) = subject.strip_prefix("$JS.API.") {
        let (request, target, detail) = split_api(rest);
        return Some(ApiRequest {
            at,
            request,
            target,
            client: String::new(),
            error: None,
            detail,
        });
    }
    let advisory: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let api_subject = advisory.get("subject")?.as_str()?;
    let (request, target, _) = split_api(api_subject.strip_prefix("$JS.API.")?);
    let client = advisory
        .pointer("/client/name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let body = |key: &str| -> Option<serde_json::Value> {
        serde_json::from_str(advisory.get(key)?.as_str()?).ok()
    };
    let error = body("response").and_then(|r| r.pointer("/error/err_code")?.as_u64());
    let detail = body("request")
        .map(|r| consumer_detail(&r))
        .unwrap_or_default();
    Some(ApiRequest {
        at,
        request,
        target,
        client,
        error,
        detail,
    })
}

/// `STREAM.INFO.KV_jobs` → (`STREAM.INFO`, `KV_jobs`, ""); a direct get's subject after
/// the stream goes to the detail.
fn split_api(rest: &str) -> (String, String, String) {
    let tokens: Vec<&str> = rest.split('.').collect();
    let verb_len = match tokens.as_slice() {
        ["CONSUMER", "DURABLE", ..] | ["CONSUMER", "MSG", ..] => 3,
        [family, _, ..]
            if matches!(
                *family,
                "STREAM" | "CONSUMER" | "DIRECT" | "META" | "SERVER" | "ACCOUNT"
            ) =>
        {
            2
        }
        _ => 1,
    };
    let verb_len = verb_len.min(tokens.len());
    let request = tokens[..verb_len].join(".");
    let target = tokens.get(verb_len).copied().unwrap_or("").to_string();
    let detail = if request == "DIRECT.GET" && tokens.len() > verb_len + 1 {
        tokens[verb_len + 1..].join(".")
    } else {
        String::new()
    };
    (request, target, detail)
}

/// A consumer create's deliver policy and filter, e.g. `new $KV.jobs.>`.
fn consumer_detail(request: &serde_json::Value) -> String {
    let Some(config) = request.get("config") else {
        return String::new();
    };
    let policy = config
        .get("deliver_policy")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let filters: Vec<&str> = match config.get("filter_subjects").and_then(|v| v.as_array()) {
        Some(list) => list.iter().filter_map(|v| v.as_str()).collect(),
        None => config
            .get("filter_subject")
            .and_then(|v| v.as_str())
            .into_iter()
            .collect(),
    };
    let mut detail = policy.to_string();
    if !filters.is_empty() {
        detail.push(' ');
        detail.push_str(&filters.join(","));
    }
    if config.get("headers_only").and_then(|v| v.as_bool()) == Some(true) {
        detail.push_str(" headers_only");
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_subjects_split_into_type_stream_and_detail() {
        let s = |r: &str| split_api(r);
        assert_eq!(s("STREAM.INFO.KV_jobs").0, "STREAM.INFO");
        assert_eq!(s("STREAM.INFO.KV_jobs").1, "KV_jobs");
        let create = s("CONSUMER.CREATE.KV_jobs.abc.$KV.jobs.>");
        assert_eq!(
            (create.0.as_str(), create.1.as_str()),
            ("CONSUMER.CREATE", "KV_jobs")
        );
        let durable = s("CONSUMER.DURABLE.CREATE.EXEC.agent_replay_pc-00000");
        assert_eq!(
            (durable.0.as_str(), durable.1.as_str()),
            ("CONSUMER.DURABLE.CREATE", "EXEC")
        );
        let get = s("DIRECT.GET.KV_agent_config.$KV.agent_config.pcs.pc-00001");
        assert_eq!(get.0, "DIRECT.GET");
        assert_eq!(get.1, "KV_agent_config");
        assert_eq!(get.2, "$KV.agent_config.pcs.pc-00001");
        assert_eq!(s("INFO").0, "INFO");
        assert_eq!(s("INFO").1, "");
    }

    #[test]
    fn an_advisory_names_its_client_error_and_consumer_config() {
        let advisory = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.api_audit",
            "client": {"name": "pc-00003"},
            "subject": "$JS.API.CONSUMER.DELETE.KV_jobs.abc",
            "request": "",
            "response": "{\"error\":{\"code\":404,\"err_code\":10014}}"
        });
        let payload = serde_json::to_vec(&advisory).unwrap();
        let r = parse("$JS.EVENT.ADVISORY.API", &payload, UNIX_EPOCH).expect("parsed");
        assert_eq!(r.request, "CONSUMER.DELETE");
        assert_eq!(r.client, "pc-00003");
        assert_eq!(r.error, Some(10014));
        let advisory = serde_json::json!({
            "client": {"name": "pc-00003"},
            "subject": "$JS.API.CONSUMER.CREATE.KV_jobs",
            "request": "{\"config\":{\"deliver_policy\":\"all\",\"filter_subject\":\"$KV.jobs.>\",\"headers_only\":true}}",
            "response": "{\"type\":\"io.nats.jetstream.api.v1.consumer_create_response\"}"
        });
        let payload = serde_json::to_vec(&advisory).unwrap();
        let r = parse("$JS.EVENT.ADVISORY.API", &payload, UNIX_EPOCH).expect("parsed");
        assert_eq!(r.detail, "all $KV.jobs.> headers_only");
        assert_eq!(r.error, None);
    }
}
