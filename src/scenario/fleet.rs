//! `[fleet]`: the simulated agents: how many, their profile, timeouts, reconnect
//! backoff, the startup splay and the fault proxy between them and the broker, with the
//! link it shapes (`link_latency`).

use std::time::Duration;

use toml::de::DeValue;

use super::walk::{self, Ctx, Node};
use super::{NON_NEGATIVE, POSITIVE};
use crate::plan::{
    AsyncNats, Backoff, ClientOptions, FleetPlan, LinkShape, Profile, ProxyMode, Splay,
    SplayPlacement, Stall,
};

const FLEET_KEYS: [&str; 26] = [
    "agents",
    "groups",
    "profile",
    "catalog_entries",
    "connect_timeout",
    "request_timeout",
    "ping_interval",
    "async_nats",
    "setup_retries",
    "reconnect_base",
    "reconnect_cap",
    "reconnect_jitter",
    "reconnect_wait",
    "reconnect_wait_jitter",
    "max_reconnects",
    "splay",
    "splay_placement",
    "splay_on_start",
    "proxy",
    "link_latency",
    "link_jitter",
    "link_bandwidth",
    "link_stall_every",
    "link_stall_for",
    "read_buffer_capacity",
    "exec_ack_wait",
];

/// `[fleet] read_buffer_capacity` default, bytes (async-nats' own is 65535).
pub const DEFAULT_READ_BUFFER_CAPACITY: u16 = 8192;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// async-nats' own `ping_interval`.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(100);
const DEFAULT_RECONNECT_CAP: Duration = Duration::from_secs(4);
/// The longest splay window: the splay spreads a fleet's re-sync over a few seconds.
const MAX_SPLAY: Duration = Duration::from_secs(300);
/// The longest `link_latency`: a one-way delay, and a geostationary satellite hop is
/// about 0.3 s; past this a value is a slip of the unit (`"25s"` for `"25ms"`).
const MAX_LINK_LATENCY: Duration = Duration::from_secs(10);
const SPLAY_PLACEMENTS: [(&str, SplayPlacement); 3] = [
    ("before_gets", SplayPlacement::BeforeGets),
    ("reopen_watches", SplayPlacement::ReopenWatches),
    ("reconnect_delay", SplayPlacement::ReconnectDelay),
];

/// What `[fleet]` says: the plan with defaults for the connection options, the span of
/// `fleet.profile` for resolving it later, and the connection options the file gives,
/// which win over the profile's `[client]` ([`resolve_client`]).
pub(super) struct ReadFleet {
    pub(super) fleet: FleetPlan,
    pub(super) profile_span: Option<std::ops::Range<usize>>,
    pub(super) client: ClientOptions,
}

/// The connection options of a run: each one given in `[fleet]`, else the profile's
/// `[client]` value, else fleetsim's default (already in `fleet`).
pub(super) fn resolve_client(fleet: &mut FleetPlan, given: &ClientOptions, profile: &Profile) {
    let shipped = &profile.client;
    if let Some(d) = given.connect_timeout.or(shipped.connect_timeout) {
        fleet.connect_timeout = d;
    }
    if let Some(d) = given.request_timeout.or(shipped.request_timeout) {
        fleet.request_timeout = d;
    }
    if let Some(d) = given.ping_interval.or(shipped.ping_interval) {
        fleet.ping_interval = d;
    }
    if let Some(n) = given.read_buffer_capacity.or(shipped.read_buffer_capacity) {
        fleet.read_buffer_capacity = n;
    }
    if let Some(b) = given.reconnect.or(shipped.reconnect) {
        fleet.reconnect = b;
    }
    if let Some(v) = given.async_nats.or(shipped.async_nats) {
        fleet.async_nats = v;
    }
}

/// Reads `[fleet]`.
pub(super) fn read_fleet(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> ReadFleet {
    let mut fleet = FleetPlan {
        agents: 0,
        groups: 4,
        profile: "kanade".to_string(),
        catalog_entries: 20,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        ping_interval: DEFAULT_PING_INTERVAL,
        setup_retries: 3,
        reconnect: Backoff::AsyncNatsDefault,
        max_reconnects: None,
        splay: None,
        proxy: ProxyMode::Off,
        link: LinkShape::default(),
        read_buffer_capacity: DEFAULT_READ_BUFFER_CAPACITY,
        exec_ack_wait: None,
        async_nats: AsyncNats::default(),
    };
    let required = "required: the number of agents, a positive whole number";
    let Some(node) = root.table(ctx, "fleet", "a table ([fleet])") else {
        if root.get("fleet").is_none() {
            ctx.report(&root.span, "fleet.agents", required);
        }
        return ReadFleet {
            fleet,
            profile_span: None,
            client: ClientOptions::default(),
        };
    };
    let mut client = ClientOptions::default();
    node.check_keys(ctx, &FLEET_KEYS);
    let usize_max = usize::MAX as i128;
    match node.whole(ctx, "agents", POSITIVE, 1, usize_max) {
        Some((n, _)) => fleet.agents = n as usize,
        None if node.get("agents").is_none() => node.missing(ctx, "agents", None, required),
        None => {}
    }
    if let Some((n, _)) = node.whole(ctx, "groups", POSITIVE, 1, usize_max) {
        fleet.groups = n as usize;
    }
    let mut profile_span = None;
    if let Some((name, span)) = node.string(ctx, "profile") {
        fleet.profile = name.to_string();
        profile_span = Some(span);
    }
    if let Some((n, _)) = node.whole(ctx, "catalog_entries", NON_NEGATIVE, 0, usize_max) {
        fleet.catalog_entries = n as usize;
    }
    client.connect_timeout = node.positive_duration(ctx, "connect_timeout", "");
    client.request_timeout = node.positive_duration(ctx, "request_timeout", "");
    client.ping_interval = node.positive_duration(ctx, "ping_interval", "");
    client.async_nats = node
        .choice(ctx, "async_nats", "async-nats version", &AsyncNats::ALL)
        .map(|(v, _)| v);
    if let Some(d) = node.positive_duration(
        ctx,
        "exec_ack_wait",
        " (leave it out for the server's default, 30s)",
    ) {
        fleet.exec_ack_wait = Some(d);
    }
    if let Some((n, _)) = node.whole(ctx, "setup_retries", NON_NEGATIVE, 0, u32::MAX.into()) {
        fleet.setup_retries = n as u32;
    }
    client.reconnect = read_backoff(ctx, &node, "reconnect_");
    if let Some(fixed) = read_fixed_wait(ctx, &node) {
        client.reconnect = Some(fixed);
    }
    if let Some((n, _)) = node.whole(
        ctx,
        "max_reconnects",
        "a positive whole number of attempts (leave it out to never give up, as async-nats and the real agent do)",
        1,
        u32::MAX.into(),
    ) {
        fleet.max_reconnects = Some(n as usize);
    }
    fleet.splay = read_splay(ctx, &node);
    if let Some(proxy) = read_proxy(ctx, &node) {
        fleet.proxy = proxy;
    }
    fleet.link = read_link(ctx, &node);
    let bytes = "a whole number of bytes from 512 to 65535 (async-nats' default)";
    client.read_buffer_capacity = node
        .whole(ctx, "read_buffer_capacity", bytes, 512, 65535)
        .map(|(n, _)| n as u16);
    ReadFleet {
        fleet,
        profile_span,
        client,
    }
}

/// `proxy`: `false`, `true` (the proxy inside fleetsim's process, as before there was a
/// choice), or a string naming where the proxy runs.
fn read_proxy(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<ProxyMode> {
    let value = node.get("proxy")?;
    let mode = match value.get_ref() {
        DeValue::Boolean(false) => Some(ProxyMode::Off),
        DeValue::Boolean(true) => Some(ProxyMode::InProcess),
        DeValue::String(s) if s == "in_process" => Some(ProxyMode::InProcess),
        DeValue::String(s) if s == "process" => Some(ProxyMode::Process),
        _ => None,
    };
    if mode.is_none() {
        let message = format!(
            "expected true (the proxy inside fleetsim's process, also \"in_process\"), \
             \"process\" (the proxy as its own process, for bigger fleets) or false, got {}",
            walk::describe(value.get_ref())
        );
        ctx.report(&value.span(), node.key("proxy"), message);
    }
    mode
}

/// The `link_*` keys: what the fault proxy does to the bytes it forwards. The proxy must
/// be asked for: a shape without it would be silently not applied, so it is refused as
/// `network_cut` is, rather than the proxy turned on behind the user's back (which
/// changes the fleet's open files, see docs/fault-proxy.md).
fn read_link(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> LinkShape {
    let mut link = LinkShape::default();
    // A `proxy` with a wrong value is already a problem of its own.
    let proxy_asked = node
        .get("proxy")
        .is_some_and(|p| !matches!(p.get_ref(), DeValue::Boolean(false)));
    let mut needs_proxy = |ctx: &mut Ctx<'_>, key: &str, span: &std::ops::Range<usize>| {
        if proxy_asked {
            return true;
        }
        let message = format!(
            "{key} needs the fault proxy between agents and broker, which shapes the \
             link; set proxy = true (inside fleetsim's process) or proxy = \"process\" \
             (its own process) in [fleet]"
        );
        ctx.report(span, node.key(key), message);
        false
    };
    for (key, what) in [
        (
            "link_latency",
            "the one-way delay of the link (\"25ms\"; \"0s\" is none)",
        ),
        (
            "link_jitter",
            "the most a chunk waits past link_latency (\"10ms\"; \"0s\" is none)",
        ),
    ] {
        let Some((d, span)) = node.duration(ctx, key) else {
            continue;
        };
        if d > MAX_LINK_LATENCY {
            let message = format!("must be at most 10s, got {d:?}; it is {what}");
            ctx.report(&span, node.key(key), message);
        } else if !d.is_zero() && needs_proxy(ctx, key, &span) {
            match key {
                "link_latency" => link.latency = Some(d),
                _ => link.jitter = Some(d),
            }
        }
    }
    if let Some((text, span)) = node.string(ctx, "link_bandwidth") {
        match parse_bandwidth(text) {
            Ok(bw) if needs_proxy(ctx, "link_bandwidth", &span) => link.bandwidth = Some(bw),
            Ok(_) => {}
            Err(why) => ctx.report(&span, node.key("link_bandwidth"), why),
        }
    }
    link.stall = read_stall(ctx, node, &mut needs_proxy);
    link
}

/// `link_stall_every` and `link_stall_for`, given together, the stall shorter than the
/// period.
fn read_stall(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    needs_proxy: &mut impl FnMut(&mut Ctx<'_>, &str, &std::ops::Range<usize>) -> bool,
) -> Option<Stall> {
    let every = node
        .get("link_stall_every")
        .map(|_| node.positive_duration(ctx, "link_stall_every", ""));
    let stall_for = node
        .get("link_stall_for")
        .map(|_| node.positive_duration(ctx, "link_stall_for", ""));
    match (every, stall_for) {
        (None, None) => None,
        (Some(Some(every)), Some(Some(stall_for))) => {
            let span = node.get("link_stall_for").expect("given").span();
            if stall_for >= every {
                let message = format!(
                    "must be shorter than link_stall_every ({every:?}), got {stall_for:?}: \
                     a link stalled for the whole period never forwards (use a network_cut)"
                );
                ctx.report(&span, node.key("link_stall_for"), message);
                return None;
            }
            needs_proxy(ctx, "link_stall_for", &span).then_some(Stall { every, stall_for })
        }
        (Some(_), Some(_)) => None,
        (Some(_), None) | (None, Some(_)) => {
            let (given, missing) = if node.get("link_stall_every").is_some() {
                ("link_stall_every", "link_stall_for")
            } else {
                ("link_stall_for", "link_stall_every")
            };
            let message = format!(
                "{given} needs {missing}: a stall is how long (link_stall_for = \"2s\") once \
                 every period (link_stall_every = \"30s\")"
            );
            node.report_at(ctx, given, &message);
            None
        }
    }
}

/// A bandwidth as `link_bandwidth` writes it: a number and a unit per second, in bits
/// (`kbit/s`, `Mbit/s`, `Gbit/s`, decimal) or bytes (`B/s`, `KB/s`, `MB/s` decimal;
/// `KiB/s`, `MiB/s` binary); returns bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let help = "expected a rate such as \"1Mbit/s\", \"256kbit/s\", \"512KiB/s\" or \"2MB/s\"";
    let t = text.trim();
    let Some(unit_at) = t.find(|c: char| !(c.is_ascii_digit() || c == '.')) else {
        return Err(format!("{help}, got \"{text}\" (no unit)"));
    };
    let (number, unit) = t.split_at(unit_at);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{help}, got \"{text}\""))?;
    let bytes_per_unit = match unit.trim() {
        "bit/s" => 1.0 / 8.0,
        "kbit/s" => 1e3 / 8.0,
        "Mbit/s" => 1e6 / 8.0,
        "Gbit/s" => 1e9 / 8.0,
        "B/s" => 1.0,
        "KB/s" | "kB/s" => 1e3,
        "MB/s" => 1e6,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        other => return Err(format!("{help}, got unit \"{other}\"")),
    };
    let bytes = value * bytes_per_unit;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!(
            "must be at least 1 byte per second, got \"{text}\""
        ));
    }
    Ok(bytes.round() as u64)
}

/// `<prefix>base`, `<prefix>cap`, `<prefix>jitter` (`[fleet]`'s `reconnect_base`, …,
/// or `[client] reconnect`'s `base`, …): none written is `None` (the default backoff);
/// any written is an exponential backoff with defaults for the others.
pub(super) fn read_backoff(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    prefix: &str,
) -> Option<Backoff> {
    let [base_key, cap_key, jitter_key] = ["base", "cap", "jitter"].map(|k| format!("{prefix}{k}"));
    if [&base_key, &cap_key, &jitter_key]
        .iter()
        .all(|k| node.get(k).is_none())
    {
        return None;
    }
    // `None` when the written base is wrong: the cap is then not compared with it.
    let base = match node.get(&base_key) {
        None => Some(DEFAULT_RECONNECT_BASE),
        Some(_) => node.positive_duration(ctx, &base_key, ""),
    };
    let mut cap = DEFAULT_RECONNECT_CAP.max(base.unwrap_or(DEFAULT_RECONNECT_BASE));
    if let Some((d, span)) = node.duration(ctx, &cap_key) {
        match base {
            Some(base) if d < base => {
                let message = format!(
                    "must be at least {base_key} ({base:?}): the cap is the longest wait, got {d:?}"
                );
                ctx.report(&span, node.key(&cap_key), message);
            }
            _ => cap = d,
        }
    }
    let what = "a fraction in [0, 1), e.g. 0.25 for ±25 %";
    let jitter = node
        .number(ctx, &jitter_key, what)
        .and_then(|(j, span)| {
            if (0.0..1.0).contains(&j) {
                Some(j.abs())
            } else {
                let message = format!("must be {what}, got {j}");
                ctx.report(&span, node.key(&jitter_key), message);
                None
            }
        })
        .unwrap_or(0.0);
    Some(Backoff::Exponential {
        base: base.unwrap_or(DEFAULT_RECONNECT_BASE),
        cap,
        jitter,
    })
}

/// `reconnect_wait` and `reconnect_wait_jitter`: the Go client's fixed wait with jitter
/// ([`Backoff::Fixed`]), instead of an exponential backoff (`reconnect_base`, ...), with
/// which it cannot be combined.
fn read_fixed_wait(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Backoff> {
    let given = ["reconnect_wait", "reconnect_wait_jitter"].map(|k| node.get(k).is_some());
    if !given.iter().any(|g| *g) {
        return None;
    }
    let wait = match node.get("reconnect_wait") {
        Some(_) => node.positive_duration(ctx, "reconnect_wait", " (nats.go's default: \"2s\")"),
        None => {
            let span = node.get("reconnect_wait_jitter").expect("given").span();
            let message = "reconnect_wait_jitter needs reconnect_wait, the fixed wait it is added to (nats.go: reconnect_wait = \"2s\", reconnect_wait_jitter = \"100ms\")";
            ctx.report(&span, node.key("reconnect_wait_jitter"), message);
            None
        }
    }?;
    let jitter = match node.duration(ctx, "reconnect_wait_jitter") {
        Some((d, _)) => d,
        None => Duration::ZERO,
    };
    if let Some(other) = ["reconnect_base", "reconnect_cap", "reconnect_jitter"]
        .into_iter()
        .find(|k| node.get(k).is_some())
    {
        let span = node.get("reconnect_wait").expect("given").span();
        let message = format!(
            "reconnect_wait (a fixed wait, nats.go's model) and {other} (an exponential \
             backoff) cannot both be given: keep one model"
        );
        ctx.report(&span, node.key("reconnect_wait"), message);
        return None;
    }
    Some(Backoff::Fixed { wait, jitter })
}

/// `splay` and the keys that only apply with it: `splay_placement`, `splay_on_start`.
fn read_splay(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Splay> {
    // `off`: no splay written, or "0s". A wrong value is neither (and already a problem).
    let (window, off) = match node.duration(ctx, "splay") {
        Some((d, span)) if d > MAX_SPLAY => {
            let message = format!(
                "must be at most 5m, got {d:?}; the splay spreads a fleet's re-sync over a few seconds (\"0s\" is off)"
            );
            ctx.report(&span, node.key("splay"), message);
            (None, false)
        }
        Some((d, _)) if d.is_zero() => (None, true),
        Some((d, _)) => (Some(d), false),
        None => (None, node.get("splay").is_none()),
    };
    let placement = match node.get("splay_placement") {
        None => Some(SplayPlacement::BeforeGets),
        Some(_) => node
            .choice(ctx, "splay_placement", "splay_placement", &SPLAY_PLACEMENTS)
            .map(|(p, _)| p),
    };
    let on_start = node.boolean(ctx, "splay_on_start");
    if off {
        for key in ["splay_placement", "splay_on_start"] {
            if node.get(key).is_some() {
                let message = format!("{key} only applies with splay > 0 (e.g. splay = \"5s\")");
                node.report_at(ctx, key, message);
            }
        }
    }
    Some(Splay {
        window: window?,
        placement: placement?,
        on_start: on_start.unwrap_or(false),
    })
}
