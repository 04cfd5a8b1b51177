//! `broker.rs`: `[broker]`. Invalid files: `tests/scenarios/invalid/broker`.

use super::*;

#[test]
fn embedded_broker_limits() {
    let text = "[broker]\nmax_connections = 20000\nrequest_queue_limit = 500\ndefault_max_consumers = 1000\n\n\
                [fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    let plan = plan(text);
    assert_eq!(plan.broker.max_connections, 20_000);
    assert_eq!(plan.broker.request_queue_limit, 500);
    assert_eq!(plan.broker.default_max_consumers, 1000);
}

#[test]
fn transport_security_of_the_embedded_broker_and_an_external_ca() {
    let fleet = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    let plain = plan(fleet);
    assert!(!plain.broker.tls);
    assert_eq!(plain.broker.auth, crate::plan::AuthMode::None);
    let secured = plan(&format!("[broker]\ntls = true\nauth = \"nkey\"\n\n{fleet}"));
    assert!(secured.broker.tls);
    assert_eq!(secured.broker.auth, crate::plan::AuthMode::Nkey);
    let external = plan(&format!(
        "[broker]\nurl = \"tls://broker:4222\"\ntls_ca = \"certs/ca.pem\"\n\n{fleet}"
    ));
    assert_eq!(
        external.broker.tls_ca.as_deref(),
        Some(std::path::Path::new("certs/ca.pem"))
    );
}
