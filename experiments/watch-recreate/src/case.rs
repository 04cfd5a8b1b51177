// One version's side of the experiment. Included twice by main.rs, once with
// `nats` = async-nats 0.48 and once with `nats` = async-nats 0.51, so both
// versions run exactly the same code.

use futures::StreamExt;

use crate::{Log, Shared};

/// A client set up the way kanade's `nats_client::connect_inner` does it:
/// `retry_on_initial_connect`, a name, an event callback; all else default.
async fn agent_client(url: &str, name: &str, log: Log) -> nats::Client {
    let tag = name.to_string();
    nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .name(name)
        .event_callback(move |event| {
            let log = log.clone();
            let tag = tag.clone();
            async move { log.note(&tag, &format!("client event: {event}")) }
        })
        .connect(url)
        .await
        .expect("connect")
}

/// Polls a watch forever, noting every item.
fn poll_forever(mut watch: nats::jetstream::kv::Watch, tag: String, log: Log, shared: Shared) {
    tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            match item {
                Ok(entry) => {
                    let value = String::from_utf8_lossy(&entry.value).to_string();
                    log.note(
                        &tag,
                        &format!(
                            "watch delivered {}={} (revision {})",
                            entry.key, value, entry.revision
                        ),
                    );
                    shared.delivered(&tag, &value);
                }
                Err(err) => log.note(&tag, &format!("watch error: {err}")),
            }
        }
        log.note(&tag, "watch stream ended");
    });
}

pub struct Cases {
    // The unpolled watch is held here, untouched, across the restart.
    unpolled: Option<(nats::jetstream::kv::Watch, String)>,
    clients: Vec<nats::Client>,
}

/// Opens the three watches (each on its own client, named `<version>/<case>`).
/// `put` writes a key through the control client.
pub async fn open<P, F>(url: &str, version: &str, log: Log, shared: Shared, put: P) -> Cases
where
    P: Fn(&'static str, &'static str) -> F,
    F: std::future::Future<Output = ()>,
{
    let mut clients = Vec::new();

    // (a) delivered: watch("a") (DeliverPolicy::New, as kanade's watch(pc_id)),
    // then a put that it delivers.
    let tag = format!("{version}/delivered");
    let client = agent_client(url, &tag, log.clone()).await;
    let kv = nats::jetstream::new(client.clone())
        .get_key_value("exp")
        .await
        .expect("bind");
    let watch = kv.watch("a").await.expect("watch a");
    poll_forever(watch, tag.clone(), log.clone(), shared.clone());
    put("a", "a1").await;
    shared.wait_for(&tag, "a1", 10).await;
    clients.push(client);

    // (b) never delivered: watch("b") on a key that already has history (b0..b2,
    // written before the watch opened), polled all the time but never given a
    // new put before the restart. It is open for more than one idle-heartbeat
    // interval (5 s) before the kill, like any watch of an agent that has been up
    // a while.
    let tag = format!("{version}/never");
    let client = agent_client(url, &tag, log.clone()).await;
    let kv = nats::jetstream::new(client.clone())
        .get_key_value("exp")
        .await
        .expect("bind");
    let watch = kv.watch("b").await.expect("watch b");
    poll_forever(watch, tag.clone(), log.clone(), shared.clone());
    clients.push(client);

    // (c) delivered, then not polled from before the kill until after the
    // reconnect (a task busy elsewhere when the broker went away).
    let tag = format!("{version}/unpolled");
    let client = agent_client(url, &tag, log.clone()).await;
    let kv = nats::jetstream::new(client.clone())
        .get_key_value("exp")
        .await
        .expect("bind");
    let mut watch = kv.watch("c").await.expect("watch c");
    put("c", "c1").await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("c1 in time")
        .expect("watch c open")
        .expect("entry c1");
    log.note(
        &tag,
        &format!(
            "watch delivered c={} (revision {})",
            String::from_utf8_lossy(&first.value),
            first.revision
        ),
    );
    shared.delivered(&tag, "c1");
    clients.push(client);

    Cases {
        unpolled: Some((watch, tag)),
        clients,
    }
}

impl Cases {
    /// (d) young: watch("d") opened just before the kill (less than one 5 s
    /// idle-heartbeat interval earlier), polled all the time, never delivered.
    pub async fn open_young(&mut self, url: &str, version: &str, log: Log, shared: Shared) {
        let tag = format!("{version}/young");
        let client = agent_client(url, &tag, log.clone()).await;
        let kv = nats::jetstream::new(client.clone())
            .get_key_value("exp")
            .await
            .expect("bind");
        let watch = kv.watch("d").await.expect("watch d");
        poll_forever(watch, tag, log, shared);
        self.clients.push(client);
    }

    /// Starts polling the watch that was left alone across the restart.
    pub fn resume_unpolled(&mut self, log: Log, shared: Shared) {
        if let Some((watch, tag)) = self.unpolled.take() {
            log.note(&tag, "resumed polling");
            poll_forever(watch, tag, log, shared);
        }
    }
}
