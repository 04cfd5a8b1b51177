//! `[broker]`: where the broker comes from (an external `url`, or the embedded broker
//! fleetsim starts), the limits the embedded broker runs with, and its transport security
//! (`tls`, `auth`; `tls_ca` to trust an external broker's CA), and how its process runs
//! (`server`, the binary; `cpus`, the CPUs it is pinned to; `cpu_quota`, the share of one
//! CPU it may use).

use std::time::Duration;

use toml::de::DeValue;

use super::POSITIVE;
use super::walk::{self, Ctx, Node};
use crate::plan::{AuthMode, BrokerPlan, CpuList, CpuQuota};

const BROKER_KEYS: [&str; 20] = [
    "url",
    "monitor",
    "max_connections",
    "request_queue_limit",
    "default_max_consumers",
    "reset",
    "record_api",
    "lame_duck_duration",
    "lame_duck_grace_period",
    "tls",
    "tls_ca",
    "auth",
    "cpus",
    "cpu_quota",
    "server",
    "ping_interval",
    "ping_max",
    "write_deadline",
    "max_pending",
    "max_payload",
];
/// Broker keys that configure the embedded broker only.
const EMBEDDED_ONLY: [&str; 15] = [
    "max_connections",
    "request_queue_limit",
    "default_max_consumers",
    "lame_duck_duration",
    "lame_duck_grace_period",
    "tls",
    "auth",
    "cpus",
    "cpu_quota",
    "server",
    "ping_interval",
    "ping_max",
    "write_deadline",
    "max_pending",
    "max_payload",
];
/// nats-server's own ceiling on `max_payload` (it refuses a config above it).
const MAX_PAYLOAD_LIMIT: i128 = 64 << 20;
/// A CPU number must fit the kernel's fixed-size CPU set (`CPU_SETSIZE`).
const MAX_CPU: usize = 1023;
const AUTH_MODES: [(&str, AuthMode); 4] = [
    ("none", AuthMode::None),
    ("token", AuthMode::Token),
    ("user", AuthMode::User),
    ("nkey", AuthMode::Nkey),
];
/// nats-server refuses a config file with a shorter `lame_duck_duration` ("minimum is
/// 30 seconds"), so this is both the floor and the default.
const MIN_LAME_DUCK_DURATION: Duration = Duration::from_secs(30);

/// `ping_interval`, `ping_max`, `write_deadline`, `max_pending`, `max_payload`: the
/// embedded broker's, written into its config as given.
fn read_keepalive(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, broker: &mut BrokerPlan) {
    let k = &mut broker.keepalive;
    k.ping_interval = node.positive_duration(ctx, "ping_interval", "");
    k.write_deadline = node.positive_duration(ctx, "write_deadline", "");
    k.ping_max = node
        .whole(ctx, "ping_max", POSITIVE, 1, u32::MAX.into())
        .map(|(n, _)| n as u32);
    k.max_pending = node
        .whole(
            ctx,
            "max_pending",
            "a positive number of bytes",
            1,
            u64::MAX.into(),
        )
        .map(|(n, _)| n as u64);
    let payload = "a positive number of bytes, at most 67108864 (nats-server's limit)";
    if let Some((n, span)) = node.whole(ctx, "max_payload", payload, 1, MAX_PAYLOAD_LIMIT) {
        match k.max_pending {
            Some(pending) if n as u64 > pending => {
                let message = format!(
                    "must not exceed max_pending ({pending}): nats-server refuses a larger max_payload"
                );
                ctx.report(&span, node.key("max_payload"), message);
            }
            _ => k.max_payload = Some(n as u64),
        }
    }
}

pub(super) fn read_broker(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> BrokerPlan {
    let mut broker = BrokerPlan {
        url: None,
        monitor_url: None,
        max_connections: 65_536,
        request_queue_limit: 10_000,
        default_max_consumers: -1,
        reset: true,
        record_api: false,
        lame_duck_duration: Duration::from_secs(30),
        lame_duck_grace_period: Duration::from_secs(1),
        system_url: None,
        tls: false,
        tls_ca: None,
        auth: AuthMode::None,
        cpus: None,
        cpu_quota: None,
        server: None,
        keepalive: Default::default(),
    };
    let Some(node) = root.table(ctx, "broker", "a table ([broker])") else {
        return broker;
    };
    node.check_keys(ctx, &BROKER_KEYS);
    if let Some((url, span)) = node.string(ctx, "url") {
        if has_scheme(url, &["nats://", "tls://"]) {
            broker.url = Some(url.to_string());
        } else {
            ctx.report(
                &span,
                node.key("url"),
                format!("must start with nats:// or tls://, got {url:?}"),
            );
        }
    }
    if let Some((monitor, span)) = node.string(ctx, "monitor") {
        if !has_scheme(monitor, &["http://", "https://"]) {
            let message = format!("must start with http:// or https://, got {monitor:?}");
            ctx.report(&span, node.key("monitor"), message);
        } else if node.get("url").is_none() {
            let message = "monitor only applies with url (an external broker); the embedded broker's is known";
            ctx.report(&span, node.key("monitor"), message);
        } else {
            broker.monitor_url = Some(monitor.to_string());
        }
    }
    // Without url, tls_ca is for the broker `--server` names; the embedded broker trusts
    // its own CA.
    if let Some((ca, span)) = node.string(ctx, "tls_ca") {
        if node.get("url").is_none() && node.get("tls").is_some() {
            let message = "tls_ca is an external broker's CA (url, or --server); the embedded \
                           broker's own CA is trusted with tls = true";
            ctx.report(&span, node.key("tls_ca"), message);
        } else if ca.is_empty() {
            ctx.report(&span, node.key("tls_ca"), "must be a file path, got \"\"");
        } else {
            broker.tls_ca = Some(ca.into());
        }
    }
    if node.get("url").is_some() {
        for key in EMBEDDED_ONLY {
            if node.get(key).is_some() {
                let hint = match key {
                    "tls" => "; an external broker's TLS is a tls:// url (and tls_ca for its CA)",
                    "auth" => "; an external broker's credentials go in its url",
                    "cpus" => {
                        "; pin an external broker where it runs (taskset, docker --cpuset-cpus)"
                    }
                    "cpu_quota" => {
                        "; limit an external broker where it runs (docker --cpus, systemd CPUQuota=)"
                    }
                    "server" => "; it is the nats-server binary fleetsim starts",
                    _ => "",
                };
                let message = format!("{key} only applies to the embedded broker (no url){hint}");
                node.report_at(ctx, key, message);
            }
        }
    }
    if let Some((n, _)) = node.whole(ctx, "max_connections", POSITIVE, 1, u64::MAX.into()) {
        broker.max_connections = n as u64;
    }
    if let Some((n, _)) = node.whole(ctx, "request_queue_limit", POSITIVE, 1, u64::MAX.into()) {
        broker.request_queue_limit = n as u64;
    }
    let what = "-1 (unlimited) or a positive whole number";
    if let Some((n, span)) = node.whole(ctx, "default_max_consumers", what, -1, i64::MAX.into()) {
        if n == 0 {
            ctx.report(
                &span,
                node.key("default_max_consumers"),
                format!("must be {what}, got 0"),
            );
        } else {
            broker.default_max_consumers = n as i64;
        }
    }
    if let Some(record) = node.boolean(ctx, "record_api") {
        broker.record_api = record;
    }
    if let Some(tls) = node.boolean(ctx, "tls") {
        broker.tls = tls;
    }
    if let Some((auth, _)) = node.choice(ctx, "auth", "auth mode", &AUTH_MODES) {
        broker.auth = auth;
    }
    if let Some(reset) = node.boolean(ctx, "reset") {
        broker.reset = reset;
    }
    if let Some((d, span)) = node.duration(ctx, "lame_duck_duration") {
        if d < MIN_LAME_DUCK_DURATION {
            let message = format!(
                "must be at least 30s (nats-server refuses a shorter lame_duck_duration), got {d:?}"
            );
            ctx.report(&span, node.key("lame_duck_duration"), message);
        } else {
            broker.lame_duck_duration = d;
        }
    }
    if let Some((d, _)) = node.duration(ctx, "lame_duck_grace_period") {
        broker.lame_duck_grace_period = d;
    }
    read_keepalive(ctx, &node, &mut broker);
    if let Some(value) = node.get("cpus") {
        // A number is refused rather than read as one CPU: `cpus = 2` reads as "two
        // CPUs" (docker's --cpus), which a list of CPU numbers is not.
        let parsed = match value.get_ref() {
            DeValue::String(text) => parse_cpu_list(text),
            other => Err(format!(
                "expected a list of CPU numbers as a string (\"0\", \"0-1\", \"0,2\"), \
                 got {}; it names which CPUs, not how many",
                walk::describe(other)
            )),
        };
        match parsed {
            Ok(cpus) => broker.cpus = Some(cpus),
            Err(message) => ctx.report(&value.span(), node.key("cpus"), message),
        }
    }
    if let Some(value) = node.get("cpu_quota") {
        // A number is refused rather than guessed at: `cpu_quota = 50` could be 50% or
        // fifty CPUs, `0.5` a share or half a percent.
        let parsed = match value.get_ref() {
            DeValue::String(text) => parse_cpu_quota(text),
            other => Err(format!(
                "expected a percentage of one CPU as a string (\"50%\", \"150%\"), got {}",
                walk::describe(other)
            )),
        };
        // More than the pinned CPUs can give is a quota that never bites: refused here,
        // where both are known; the machine's own CPUs are the run's check (exit 3).
        let parsed = parsed.and_then(|quota| match &broker.cpus {
            Some(cpus) if quota.share() > cpus.cpus().len() as f64 => Err(format!(
                "{quota} is more than the {} CPU(s) of cpus = \"{cpus}\" can give \
                 ({}% at most)",
                cpus.cpus().len(),
                cpus.cpus().len() * 100
            )),
            _ => Ok(quota),
        });
        match parsed {
            Ok(quota) => broker.cpu_quota = Some(quota),
            Err(message) => ctx.report(&value.span(), node.key("cpu_quota"), message),
        }
    }
    // Whether the file exists and runs is the run's check (exit 3), as for tls_ca: a
    // scenario is validated on one machine and may run on another.
    if let Some((path, span)) = node.string(ctx, "server") {
        if path.trim().is_empty() {
            let message = "must be the path of a nats-server binary, got \"\"";
            ctx.report(&span, node.key("server"), message);
        } else {
            broker.server = Some(path.into());
        }
    }
    broker
}

/// A CPU list as `taskset -c` takes it: CPU numbers and inclusive ranges, separated by
/// commas (`"0"`, `"0-1"`, `"0,2-3"`).
pub(super) fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let bad = |why: &str| {
        format!(
            "bad CPU list {text:?}: {why}; use CPU numbers and ranges as taskset -c takes \
             them: \"0\", \"0-1\", \"0,2\""
        )
    };
    let number = |s: &str| -> Result<usize, String> {
        let s = s.trim();
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(&format!("{s:?} is not a CPU number")));
        }
        match s.parse::<usize>() {
            Ok(n) if n <= MAX_CPU => Ok(n),
            _ => Err(bad(&format!("CPU {s} is beyond the highest, {MAX_CPU}"))),
        }
    };
    let mut cpus = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(bad(&format!("range {first}-{last} runs backwards")));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(number(item)?),
        }
    }
    CpuList::new(cpus).ok_or_else(|| bad("no CPU"))
}

/// A share of one CPU as a percentage: `"50%"` (half a core), `"150%"`, `"12.5%"`; from
/// 1% (the kernel's smallest quota, 1 ms per 100 ms period) to every CPU a CPU number
/// can name.
pub(super) fn parse_cpu_quota(text: &str) -> Result<CpuQuota, String> {
    let bad = |why: &str| {
        format!(
            "bad CPU quota {text:?}: {why}; use a percentage of one CPU: \"50%\" is half a \
             core, \"150%\" one and a half"
        )
    };
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err(bad("no % at the end"));
    };
    let number = number.trim();
    let (whole, part) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(part) {
        return Err(bad(&format!("{number:?} is not a number")));
    }
    if part.len() > 2 {
        return Err(bad("more than two decimals"));
    }
    let max_percent = (MAX_CPU as u32 + 1) * 100;
    let hundredths = whole
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= max_percent)
        .map(|w| w * CpuQuota::PER_PERCENT + format!("{part:0<2}").parse::<u32>().unwrap_or(0));
    match hundredths {
        Some(n) if n < CpuQuota::PER_PERCENT => {
            Err(bad("below 1%, the smallest quota the kernel takes"))
        }
        Some(n) if n <= max_percent * CpuQuota::PER_PERCENT => {
            CpuQuota::from_hundredths_of_percent(n).ok_or_else(|| bad("no CPU"))
        }
        _ => Err(bad(&format!(
            "above {max_percent}%, every CPU a CPU number can name"
        ))),
    }
}

/// `url` starts with one of `schemes` and has something after it.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
}
