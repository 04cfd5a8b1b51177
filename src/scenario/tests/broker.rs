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

#[test]
fn the_embedded_broker_process_cpus_and_server() {
    let fleet = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    let plain = plan(fleet);
    assert_eq!(plain.broker.cpus, None);
    assert_eq!(plain.broker.server, None);
    let cpus = |list: &str| {
        plan(&format!("[broker]\ncpus = {list:?}\n\n{fleet}"))
            .broker
            .cpus
            .expect("cpus")
    };
    assert_eq!(cpus("0").cpus(), [0]);
    assert_eq!(cpus("0-1").cpus(), [0, 1]);
    assert_eq!(cpus("0,2").cpus(), [0, 2]);
    // Written back as the kernel writes Cpus_allowed_list: sorted, ranges merged.
    assert_eq!(cpus(" 3, 0-1,2 ,7").to_string(), "0-3,7");
    let chosen = plan(&format!(
        "[broker]\nserver = \"tools/nats-server-2.14\"\ncpus = \"1\"\n\n{fleet}"
    ));
    assert_eq!(
        chosen.broker.server.as_deref(),
        Some(std::path::Path::new("tools/nats-server-2.14"))
    );
    // Both are recorded with the plan in the manifest's settings.
    let settings = serde_json::to_value(&chosen).expect("serializes");
    assert_eq!(settings["broker"]["cpus"], "1");
    assert_eq!(settings["broker"]["server"], "tools/nats-server-2.14");
}

#[test]
fn cpu_lists_say_what_is_wrong() {
    let err = |text: &str| crate::scenario::broker::parse_cpu_list(text).expect_err(text);
    assert!(err("").contains("\"\" is not a CPU number"));
    assert!(err("0-").contains("\"\" is not a CPU number"));
    assert!(err("a").contains("\"a\" is not a CPU number"));
    assert!(err("-1").contains("\"\" is not a CPU number"));
    assert!(err("2-1").contains("range 2-1 runs backwards"));
    assert!(err("1024").contains("CPU 1024 is beyond the highest, 1023"));
    assert!(
        err("0,,1").ends_with(
            "use CPU numbers and ranges as taskset -c takes them: \"0\", \"0-1\", \"0,2\""
        )
    );
}
