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
fn cpu_quota_is_a_share_of_one_cpu() {
    let fleet = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(plan(fleet).broker.cpu_quota, None);
    let quota = |text: &str| {
        plan(&format!("[broker]\ncpu_quota = {text:?}\n\n{fleet}"))
            .broker
            .cpu_quota
            .expect("cpu_quota")
    };
    assert_eq!(quota("50%").share(), 0.5);
    assert_eq!(quota("150%").share(), 1.5);
    assert_eq!(quota("1%").quota_us(100_000), 1_000);
    assert_eq!(quota("20%").quota_us(100_000), 20_000);
    assert_eq!(quota(" 12.5% ").quota_us(100_000), 12_500);
    assert_eq!(quota("12.50%").to_string(), "12.5%");
    assert_eq!(quota("7.05%").to_string(), "7.05%");
    // With cpus, up to all of them.
    let both = plan(&format!(
        "[broker]\ncpus = \"0-1\"\ncpu_quota = \"200%\"\n\n{fleet}"
    ));
    assert_eq!(both.broker.cpu_quota.map(|q| q.share()), Some(2.0));
    // Recorded in the manifest's settings as the share.
    let settings = serde_json::to_value(plan(&format!("[broker]\ncpu_quota = \"50%\"\n\n{fleet}")))
        .expect("serializes");
    assert_eq!(settings["broker"]["cpu_quota"], 0.5);
}

#[test]
fn cpu_quotas_say_what_is_wrong() {
    let err = |text: &str| crate::scenario::broker::parse_cpu_quota(text).expect_err(text);
    assert!(err("50").contains("no % at the end"));
    assert!(err("%").contains("\"\" is not a number"));
    assert!(err("-5%").contains("\"-5\" is not a number"));
    assert!(err("1.%").contains("\"1.\" is not a number"));
    assert!(err("0%").contains("below 1%"));
    assert!(err("0.99%").contains("below 1%"));
    assert!(err("102401%").contains("above 102400%"));
    assert!(err("99999999999%").contains("above 102400%"));
    assert!(
        err("half").ends_with(
            "use a percentage of one CPU: \"50%\" is half a core, \"150%\" one and a half"
        )
    );
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
