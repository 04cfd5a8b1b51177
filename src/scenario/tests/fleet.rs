//! `fleet.rs`: `[fleet]`. Invalid files: `tests/scenarios/invalid/fleet`.

use std::time::Duration;

use super::*;
use crate::plan::{Backoff, ProxyMode, Splay, SplayPlacement};

#[test]
fn read_buffer_capacity_is_set_within_async_nats_range() {
    let text = "[fleet]\nagents = 5\nread_buffer_capacity = 65535\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(plan(text).fleet.read_buffer_capacity, 65535);
}

#[test]
fn exec_ack_wait_is_set() {
    let plan =
        plan("[fleet]\nagents = 2\nexec_ack_wait = \"12s\"\n\n[[steps]]\nkind = \"start\"\n");
    assert_eq!(plan.fleet.exec_ack_wait, Some(Duration::from_secs(12)));
}

#[test]
fn reconnect_backoff() {
    let fleet = |keys: &str| {
        plan(&format!(
            "[fleet]\nagents = 5\n{keys}\n\n[[steps]]\nkind = \"start\"\n"
        ))
        .fleet
        .reconnect
    };
    let exponential = |base: u64, cap: u64, jitter: f64| Backoff::Exponential {
        base: Duration::from_millis(base),
        cap: Duration::from_millis(cap),
        jitter,
    };
    assert_eq!(fleet(""), Backoff::AsyncNatsDefault);
    // Any one key set: the others take their defaults (100ms, 4s, 0).
    assert_eq!(
        fleet("reconnect_jitter = 0.25"),
        exponential(100, 4000, 0.25)
    );
    assert_eq!(fleet("reconnect_jitter = 0"), exponential(100, 4000, 0.0));
    assert_eq!(
        fleet("reconnect_base = \"1s\"\nreconnect_cap = \"30s\"\nreconnect_jitter = 0.5"),
        exponential(1000, 30_000, 0.5)
    );
    assert_eq!(
        fleet("reconnect_base = \"250ms\"\nreconnect_cap = \"250ms\""),
        exponential(250, 250, 0.0)
    );
    // A base past the default cap raises the cap to it.
    assert_eq!(
        fleet("reconnect_base = \"10s\""),
        exponential(10_000, 10_000, 0.0)
    );
    // nats.go's model: a fixed wait, with jitter or without.
    assert_eq!(
        fleet("reconnect_wait = \"2s\"\nreconnect_wait_jitter = \"100ms\""),
        Backoff::Fixed {
            wait: Duration::from_secs(2),
            jitter: Duration::from_millis(100)
        }
    );
    assert_eq!(
        fleet("reconnect_wait = \"5s\""),
        Backoff::Fixed {
            wait: Duration::from_secs(5),
            jitter: Duration::ZERO
        }
    );
}

#[test]
fn max_reconnects_is_unlimited_unless_given() {
    let fleet = |keys: &str| {
        plan(&format!(
            "[fleet]\nagents = 5\n{keys}\n\n[[steps]]\nkind = \"start\"\n"
        ))
        .fleet
        .max_reconnects
    };
    assert_eq!(fleet(""), None);
    assert_eq!(fleet("max_reconnects = 60"), Some(60));
}

#[test]
fn splay() {
    let fleet = |keys: &str| {
        plan(&format!(
            "[fleet]\nagents = 5\n{keys}\n\n[[steps]]\nkind = \"start\"\n"
        ))
        .fleet
        .splay
    };
    assert_eq!(fleet(""), None);
    assert_eq!(fleet("splay = \"0s\""), None);
    assert_eq!(
        fleet("splay = \"5s\""),
        Some(Splay {
            window: Duration::from_secs(5),
            placement: SplayPlacement::BeforeGets,
            on_start: false,
        })
    );
    assert_eq!(
        fleet("splay = \"5m\"\nsplay_placement = \"reopen_watches\"\nsplay_on_start = true"),
        Some(Splay {
            window: Duration::from_secs(300),
            placement: SplayPlacement::ReopenWatches,
            on_start: true,
        })
    );
    assert_eq!(
        fleet("splay = \"1500ms\"\nsplay_placement = \"reconnect_delay\""),
        Some(Splay {
            window: Duration::from_millis(1500),
            placement: SplayPlacement::ReconnectDelay,
            on_start: false,
        })
    );
    assert_eq!(
        fleet("splay = \"2s\"\nsplay_placement = \"before_gets\"")
            .unwrap()
            .placement,
        SplayPlacement::BeforeGets
    );
}

#[test]
fn proxy_is_off_in_process_or_its_own_process() {
    let with = |value: &str| MINIMAL.replace("agents = 5", &format!("agents = 5\nproxy = {value}"));
    assert_eq!(plan(MINIMAL).fleet.proxy, ProxyMode::Off);
    assert_eq!(plan(&with("false")).fleet.proxy, ProxyMode::Off);
    assert_eq!(plan(&with("true")).fleet.proxy, ProxyMode::InProcess);
    assert_eq!(
        plan(&with("\"in_process\"")).fleet.proxy,
        ProxyMode::InProcess
    );
    assert_eq!(plan(&with("\"process\"")).fleet.proxy, ProxyMode::Process);
    // network_cut runs with the proxy in its own process too.
    let cut = format!(
        "{}\n[[steps]]\nkind = \"network_cut\"\nrefuse_for = \"2s\"\n",
        with("\"process\"")
    );
    assert_eq!(plan(&cut).steps.len(), 2);
}

#[test]
fn link_latency_is_a_shape_of_the_proxied_link() {
    let with = |keys: &str| MINIMAL.replace("agents = 5", &format!("agents = 5\n{keys}"));
    assert!(plan(MINIMAL).fleet.link.is_plain());
    let proxied = plan(&with("proxy = \"process\"\nlink_latency = \"25ms\""));
    assert_eq!(proxied.fleet.link.latency, Some(Duration::from_millis(25)));
    // "0s" is no latency, and needs no proxy.
    assert!(plan(&with("link_latency = \"0s\"")).fleet.link.is_plain());
    // Recorded with the fleet's settings in the manifest.
    let settings = serde_json::to_value(&proxied).expect("serializes");
    assert_eq!(settings["fleet"]["link"]["latency"], "25ms");
    // A variant may add the latency to a proxied file: the A/B of a slower link.
    let ab = format!(
        "{}\n[[variants]]\nname = \"near\"\n[[variants]]\nname = \"far\"\n\
         [variants.fleet]\nlink_latency = \"30ms\"\n",
        with("proxy = true")
    );
    let ab = plan(&ab);
    assert!(ab.variants[0].plan.fleet.link.is_plain());
    assert_eq!(
        ab.variants[1].plan.fleet.link.latency,
        Some(Duration::from_millis(30))
    );
}
