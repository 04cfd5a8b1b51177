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
