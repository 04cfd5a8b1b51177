//! The built-in `zester` profile on a broker the test owns: ten peels come up, their
//! heartbeats and fact syncs reach the broker (a subscriber there hears every peel's
//! heartbeats; the `facts` bucket ends with one key per peel, written by the peels'
//! acked `$KV.facts.<peel>` publishes, since the profile seeds none), and a settings
//! push (`target = "key"` on `settings-files/{pc}`) is delivered to every peel's watch
//! and reconciled.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Listener, num, own_broker, read_csv, run_against};
use futures::StreamExt;

const PEELS: usize = 10;

const SCENARIO: &str = r#"
name = "zester-small"

[fleet]
agents = 10
profile = "zester"

[[steps]]
kind = "start"

[[steps]]
kind = "wait_ready"
timeout = "60s"

[[steps]]
kind = "hold"
duration = "2s"

[[steps]]
kind = "write"
target = "key"
bucket = "settings-files"
key = "{pc}"
value_size = 5120
count = 10
rate = 50
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peels_heartbeat_sync_facts_and_receive_a_settings_push() {
    let broker = own_broker().await;
    let client = async_nats::connect(broker.url()).await.expect("connect");
    // Per peel: heartbeats heard, and the size of the last.
    let counting = Listener::start(
        &client,
        "zester.heartbeat.>",
        BTreeMap::<String, (u64, usize)>::new(),
        |per_peel, m| {
            let seen = per_peel.entry(m.subject.to_string()).or_default();
            seen.0 += 1;
            seen.1 = m.payload.len();
        },
    )
    .await;

    let out = tempfile::tempdir().expect("tempdir");
    let report = run_against(SCENARIO, broker.url(), None, out.path()).await;
    assert!(report.reasons.is_empty(), "{:?}", report.reasons);

    // Heartbeats: every peel's, 100 B each.
    client.flush().await.expect("flush");
    let heard = counting.finish().await;
    assert_eq!(heard.len(), PEELS, "every peel's heartbeats: {heard:?}");
    assert!(
        heard
            .values()
            .all(|&(count, size)| count >= 1 && size == 100),
        "{heard:?}"
    );

    // Fact syncs: the peels' first (at start) put one key per peel into `facts`, 2 KB.
    let js = async_nats::jetstream::new(client.clone());
    let facts = js.get_key_value("facts").await.expect("facts bucket");
    let keys: BTreeSet<String> = facts
        .keys()
        .await
        .expect("keys")
        .map(|k| k.expect("key"))
        .collect()
        .await;
    let peels: BTreeSet<String> = (0..PEELS).map(fleetsim::provision::pc_id).collect();
    assert_eq!(keys, peels);
    let first = facts
        .get(fleetsim::provision::pc_id(0))
        .await
        .expect("get")
        .expect("a fact sync");
    assert_eq!(first.len(), 2048);

    // The settings push: one write per peel, each delivered to that peel's watch.
    let reconcile = read_csv(&report.dir, "reconcile.csv");
    assert_eq!(reconcile.len(), PEELS, "{reconcile:?}");
    for row in &reconcile {
        assert_eq!(
            (
                num(row, "expected"),
                num(row, "received"),
                num(row, "missed")
            ),
            (1, 1, 0),
            "{row:?}"
        );
        assert_eq!(num(row, "unintended"), 0, "{row:?}");
    }
    let writes = read_csv(&report.dir, "writes.csv");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["kind"], "key");
    assert_eq!(num(&writes[0], "acked"), PEELS as u64);
    assert_eq!(num(&writes[0], "delivered"), PEELS as u64);
}
