//! The built-in `kanade` profile against what the real agent does, from the broker's
//! side: the JetStream API requests a run records (`[broker] record_api`, from the
//! server's API audit advisories and the direct-get requests) are compared with the
//! expected sequence written in `docs/fidelity.md`; a reconnect herd reads nothing but
//! the groups-triggered schedules walk; and the core subscriptions and periodic
//! publishes reach the broker at their rates and come back after a reconnect.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{Listener, num, own_broker, project_root, read_csv, run_against, run_scenario};

/// One request as the expected sequence and `api.csv` both name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Req {
    request: String,
    stream: String,
    /// The JetStream error code the request fails with, if it should.
    error: Option<u64>,
}

impl std::fmt::Display for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.request, self.stream)?;
        if let Some(code) = self.error {
            write!(f, " !{code}")?;
        }
        Ok(())
    }
}

/// The expected requests of `docs/fidelity.md`'s block ```` ```text api:<name> ````:
/// one line per task, `task: REQ STREAM[ !code][ xN]; …`.
fn expected(name: &str) -> Vec<(String, Vec<Req>)> {
    let doc = std::fs::read_to_string(project_root().join("docs/fidelity.md")).expect("doc");
    let fence = format!("```text api:{name}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("docs/fidelity.md has no {fence:?} block"))
        + fence.len();
    let block = &doc[start..start + doc[start..].find("```").expect("block ends")];
    block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (task, calls) = line.split_once(':').expect("`task: calls`");
            let mut reqs = Vec::new();
            for call in calls.split(';').map(str::trim).filter(|c| !c.is_empty()) {
                let mut words: Vec<&str> = call.split_whitespace().collect();
                let times = match words.last().and_then(|w| w.strip_prefix('x')) {
                    Some(n) => {
                        let n = n.parse().expect("xN");
                        words.pop();
                        n
                    }
                    None => 1,
                };
                let error = match words.last().and_then(|w| w.strip_prefix('!')) {
                    Some(code) => {
                        let code = code.parse().expect("!code");
                        words.pop();
                        Some(code)
                    }
                    None => None,
                };
                let [request, stream] = words[..] else {
                    panic!("`REQUEST STREAM` in {call:?}")
                };
                for _ in 0..times {
                    reqs.push(Req {
                        request: request.to_string(),
                        stream: stream.to_string(),
                        error,
                    });
                }
            }
            (task.trim().to_string(), reqs)
        })
        .collect()
}

fn req(row: &HashMap<String, String>) -> Req {
    Req {
        request: row["request"].clone(),
        stream: row["stream"].clone(),
        error: row["error"].parse().ok(),
    }
}

/// Whether `seen` is an interleaving of the `tasks`' sequences: every request of every
/// task, each task's in its order, nothing else. Depth-first over positions, memoised.
fn is_interleaving(seen: &[Req], tasks: &[Vec<Req>]) -> bool {
    fn go(
        seen: &[Req],
        tasks: &[Vec<Req>],
        at: &mut Vec<usize>,
        dead: &mut HashSet<Vec<usize>>,
    ) -> bool {
        let done: usize = at.iter().sum();
        if done == seen.len() {
            return at.iter().zip(tasks).all(|(i, t)| *i == t.len());
        }
        if dead.contains(at) {
            return false;
        }
        for t in 0..tasks.len() {
            if tasks[t].get(at[t]) == Some(&seen[done]) {
                at[t] += 1;
                if go(seen, tasks, at, dead) {
                    return true;
                }
                at[t] -= 1;
            }
        }
        dead.insert(at.clone());
        false
    }
    let mut at = vec![0; tasks.len()];
    go(seen, tasks, &mut at, &mut HashSet::new())
}

fn sorted(mut reqs: Vec<Req>) -> Vec<Req> {
    reqs.sort();
    reqs
}

fn show(reqs: &[Req]) -> String {
    reqs.iter()
        .map(|r| format!("  {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a direct get asks for the herd's probe key in a catalog: a walk after a
/// reconnect sees that key only if the herd wrote it before the walk listed the keys, a
/// race the measurement itself adds (counts.csv counts these apart, not exact).
fn is_probe_get(row: &HashMap<String, String>) -> bool {
    row["request"] == "DIRECT.GET" && row["detail"].ends_with(".fleetsim.probe")
}

/// Advisory requests (by the agent) in `phases`, and direct gets (no client) there,
/// but for the probe key's.
fn requests_in(
    api: &[HashMap<String, String>],
    phases: &[&str],
    agent: &str,
) -> (Vec<Req>, Vec<Req>) {
    let rows = api
        .iter()
        .filter(|r| phases.contains(&r["phase"].as_str()) && !is_probe_get(r));
    let (gets, advised): (Vec<_>, Vec<_>) = rows.partition(|r| r["request"] == "DIRECT.GET");
    let advised = advised
        .into_iter()
        .filter(|r| r["client"] == agent)
        .map(req)
        .collect();
    (advised, gets.into_iter().map(req).collect())
}

/// Splits an expected task list into its advisory requests and its direct gets.
fn split(tasks: &[(String, Vec<Req>)]) -> (Vec<Vec<Req>>, Vec<Req>) {
    let advised = tasks
        .iter()
        .map(|(_, reqs)| {
            reqs.iter()
                .filter(|r| r.request != "DIRECT.GET")
                .cloned()
                .collect()
        })
        .collect();
    let gets = tasks
        .iter()
        .flat_map(|(_, reqs)| reqs.iter().filter(|r| r.request == "DIRECT.GET").cloned())
        .collect();
    (advised, gets)
}

const ONE_AGENT: &str = r#"
name = "fidelity-one-agent"
[broker]
record_api = true
[fleet]
agents = 1
groups = 1
catalog_entries = 2
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "broker_restart"
downtime = "1s"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#;

/// One kanade agent's JetStream API requests, recorded by the broker, are exactly
/// those `docs/fidelity.md` lists: at cold start an interleaving of its tasks'
/// sequences, across a broker restart async-nats' recreation of each watch plus the
/// groups-triggered schedules walk. The profile runs async-nats 0.50, the real agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kanade_agent_makes_the_api_requests_the_fidelity_map_lists() {
    let api = one_agent_api(ONE_AGENT).await;
    check_cold_start(&api);
    let advised = check_restart(&api, "restart");
    assert!(
        !advised.iter().any(|r| r.request == "CONSUMER.DELETE"),
        "async-nats 0.50 deletes nothing"
    );
}

/// The same agent on async-nats 0.51 (`[fleet] async_nats = "0.51"`): the same cold
/// start, and each watch's recreation is a failing `CONSUMER.DELETE` then a
/// `CONSUMER.CREATE` (the experiment in docs/fidelity.md, reproduced by fleetsim's own
/// agents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_async_nats_0_51_each_recreated_watch_deletes_before_it_creates() {
    let scenario = ONE_AGENT.replace("groups = 1\n", "groups = 1\nasync_nats = \"0.51\"\n");
    assert!(scenario.contains("async_nats = \"0.51\""));
    let api = one_agent_api(&scenario).await;
    check_cold_start(&api);
    let advised = check_restart(&api, "restart_0.51");
    let first = |what: &str| advised.iter().position(|r| r.request == what);
    assert!(first("CONSUMER.DELETE") < first("CONSUMER.CREATE"));
}

async fn one_agent_api(scenario: &str) -> Vec<HashMap<String, String>> {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(scenario, out.path()).await;
    assert!(report.reasons.is_empty(), "{:?}", report.reasons);
    let api = read_csv(&report.dir, "api.csv");
    assert!(!api.is_empty(), "api.csv recorded requests");
    api
}

fn check_cold_start(api: &[HashMap<String, String>]) {
    let (advised, gets) = requests_in(api, &["1:start", "2:wait_ready"], "pc-00000");
    let cold = expected("cold_start");
    let (tasks, expected_gets) = split(&cold);
    assert!(
        is_interleaving(&advised, &tasks),
        "cold start: recorded\n{}\nis not an interleaving of docs/fidelity.md's tasks\n{cold:#?}",
        show(&advised)
    );
    assert_eq!(
        sorted(gets),
        sorted(expected_gets),
        "cold start: direct gets"
    );
}

/// The restart's requests against block `api:<block>`; returns them in recorded order.
fn check_restart(api: &[HashMap<String, String>], block: &str) -> Vec<Req> {
    let (advised, gets) = requests_in(api, &["3:broker_restart", "4:wait_ready"], "pc-00000");
    let restart = expected(block);
    let (tasks, expected_gets) = split(&restart);
    assert_eq!(
        sorted(advised.clone()),
        sorted(tasks.concat()),
        "restart ({block}): recorded\n{}",
        show(&advised)
    );
    assert_eq!(sorted(gets), sorted(expected_gets), "restart: direct gets");
    advised
}

/// A reconnect herd of 20 kanade agents asks the broker for no KV get and opens no
/// `keys()` consumer except the schedules walk each agent's agent_groups replay
/// triggers: nothing on agent_config, agent_groups, fleet_config or jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kanade_reconnect_herd_reads_only_the_groups_triggered_schedules_walk() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = ONE_AGENT
        .replace("agents = 1", "agents = 20")
        .replace("groups = 1", "groups = 4")
        .replace("fidelity-one-agent", "fidelity-herd");
    let report = run_scenario(&scenario, out.path()).await;
    let api = read_csv(&report.dir, "api.csv");
    let herd: Vec<&HashMap<String, String>> = api
        .iter()
        .filter(|r| r["phase"] == "3:broker_restart" || r["phase"] == "4:wait_ready")
        .collect();
    let agents: Vec<&&HashMap<String, String>> = herd
        .iter()
        .filter(|r| r["client"].starts_with("pc-"))
        .collect();
    assert!(!agents.is_empty(), "the herd made requests");
    let gets: Vec<&str> = herd
        .iter()
        .filter(|r| r["request"] == "DIRECT.GET")
        .map(|r| r["stream"].as_str())
        .collect();
    assert!(
        gets.iter().all(|s| *s == "KV_schedules"),
        "only schedules is read: {gets:?}"
    );
    // Every agent walks schedules once (its agent_groups watch had never delivered): a
    // get per catalog entry, and the herd's probe key for those whose walk listed the
    // keys after the probe was written (at most one each).
    let keys: HashSet<&str> = herd
        .iter()
        .filter(|r| r["request"] == "DIRECT.GET" && !is_probe_get(r))
        .map(|r| r["detail"].as_str())
        .collect();
    assert_eq!(keys.len(), 2, "the 2 catalog entries: {keys:?}");
    let probe_gets = herd.iter().filter(|r| is_probe_get(r)).count();
    assert_eq!(
        gets.len() - probe_gets,
        20 * 2,
        "each agent walks schedules once"
    );
    assert!(probe_gets <= 20, "{probe_gets} probe-key gets");
    // keys() consumers are headers-only; watches are not.
    let walks: Vec<&str> = agents
        .iter()
        .filter(|r| r["request"] == "CONSUMER.CREATE" && r["detail"].ends_with("headers_only"))
        .map(|r| r["stream"].as_str())
        .collect();
    assert_eq!(
        walks,
        vec!["KV_schedules"; 20],
        "one schedules walk per agent"
    );
    let binds: Vec<&str> = agents
        .iter()
        .filter(|r| r["request"] == "STREAM.INFO")
        .map(|r| r["stream"].as_str())
        .collect();
    assert_eq!(
        binds,
        vec!["KV_schedules"; 20],
        "the walk's task binds schedules"
    );
}

/// A profile whose agents subscribe to commands and publish a heartbeat (core) and an
/// event (acked, into a stream) at fixed periods; a `client_reconnect` herd midway.
const CHATTY: &str = r#"
name = "fidelity-traffic"
[fleet]
agents = 5
profile = "chatty"
[profiles.chatty]
[[profiles.chatty.streams]]
name = "EVENTS_TEST"
subjects = ["event.>"]
[[profiles.chatty.consumers]]
name = "exec_replay"
exec_replay = {}
[[profiles.chatty.publishes]]
name = "heartbeat"
subject = "heartbeat.{pc}"
every = "200ms"
size = 100
[[profiles.chatty.publishes]]
name = "event"
subject = "event.{pc}"
every = "500ms"
size = 50
ack = true
[[profiles.chatty.cold_start]]
task = "main"
calls = [{ subscribe = "commands.all" }, { subscribe = "commands.pc.{pc}" }]
[[profiles.chatty.cold_start]]
task = "replay"
calls = [{ open = "exec_replay" }]
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
[[steps]]
kind = "exec"
target = "all"
count = 3
[[steps]]
kind = "hold"
duration = "2s"
[[steps]]
kind = "client_reconnect"
[[steps]]
kind = "exec"
target = "all"
count = 4
[[steps]]
kind = "hold"
duration = "2s"
"#;

/// The core subscriptions and the periodic publishes reach the broker at their rates
/// and come back after a reconnect: every heartbeat an agent published arrived at a
/// subscriber on the broker, every acked event is in its stream, the rates are the
/// profile's within 25 %, and the commands published after the reconnect reached the
/// agents' core subscriptions as the ones before did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_subscriptions_and_periodic_publishes_keep_their_rates_across_a_reconnect() {
    let broker = own_broker().await;
    let client = async_nats::connect(broker.url()).await.expect("connect");
    let counting = Listener::start(
        &client,
        "heartbeat.>",
        BTreeMap::<String, u64>::new(),
        |per_agent, m| *per_agent.entry(m.subject.to_string()).or_default() += 1,
    )
    .await;

    let out = tempfile::tempdir().expect("tempdir");
    let report = run_against(CHATTY, broker.url(), None, out.path()).await;
    assert!(report.reasons.is_empty(), "{:?}", report.reasons);

    // What reached the broker: heartbeats seen by a subscriber there, events stored.
    client.flush().await.expect("flush");
    let js = async_nats::jetstream::new(client.clone());
    let events = js
        .get_stream("EVENTS_TEST")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .messages;
    let heard = counting.finish().await;

    let summary = read_csv(&report.dir, "summary.csv");
    let count = |metric: &str| -> u64 {
        summary
            .iter()
            .filter(|r| r["metric"] == metric)
            .map(|r| num(r, "count"))
            .sum()
    };
    let (published_heartbeats, published_events) =
        (count("publish.heartbeat"), count("publish.event"));
    // Every publish reached the broker, but for at most each agent's last one, which
    // the fleet's stop can catch in flight (a core publish counted, not yet flushed; an
    // event stored, its ack not yet back).
    let heard_total = heard.values().sum::<u64>();
    assert!(
        heard_total <= published_heartbeats && heard_total + 5 >= published_heartbeats,
        "heartbeats: {published_heartbeats} published, {heard_total} reached the broker"
    );
    assert!(
        events >= published_events && events <= published_events + 5,
        "events: {published_events} acked, {events} stored"
    );
    assert_eq!(heard.len(), 5, "every agent's heartbeats: {heard:?}");

    // Rates: from the first step's start to the run's end, every agent lives the whole
    // run but its start-up; the count is one per period plus the first at start.
    let steps = read_csv(&report.dir, "steps.csv");
    let secs = |r: &HashMap<String, String>, col: &str| r[col].parse::<f64>().expect("secs");
    let span = secs(steps.last().expect("steps"), "ended_secs") - secs(&steps[0], "began_secs");
    let agents = read_csv(&report.dir, "agents.csv");
    for (subject, n) in &heard {
        let expected = span / 0.2;
        let ratio = *n as f64 / expected;
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{subject}: {n} heartbeats in {span:.2} s, expected about {expected:.0}"
        );
    }
    let per_agent_events = published_events as f64 / 5.0;
    let ratio = per_agent_events / (span / 0.5);
    assert!(
        (0.75..=1.25).contains(&ratio),
        "{per_agent_events} events per agent in {span:.2} s"
    );

    // Core subscriptions: the 3 commands before the reconnect, the herd's probe
    // command (it probes the exec_replay consumer on EXEC) and the 4 after the
    // reconnect reached every agent's command subscriptions.
    for agent in &agents {
        assert_eq!(num(agent, "core_received"), 3 + 1 + 4, "{}", agent["pc"]);
        assert_eq!(num(agent, "connects"), 2, "{}", agent["pc"]);
    }
}

/// Per command, a kanade agent makes the real agent's calls: the checks' two KV gets
/// (recorded by the broker as direct gets on the script buckets) and two acked
/// publishes (its started event and its result, stored in EVENTS and RESULTS), and none
/// for the herd's probe command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_costs_two_gets_and_two_acked_publishes() {
    let broker = own_broker().await;
    let scenario = r#"
name = "fidelity-commands"
[broker]
record_api = true
[fleet]
agents = 3
groups = 1
catalog_entries = 2
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
[[steps]]
kind = "client_reconnect"
[[steps]]
kind = "wait_ready"
[[steps]]
kind = "exec"
target = "all"
count = 2
"#;
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_against(scenario, broker.url(), None, out.path()).await;
    assert!(report.reasons.is_empty(), "{:?}", report.reasons);

    // 3 agents x 2 commands: each agent's gets of the script's current version and status.
    let api = read_csv(&report.dir, "api.csv");
    let gets = |stream: &str| {
        api.iter()
            .filter(|r| r["request"] == "DIRECT.GET" && r["stream"] == stream)
            .count()
    };
    assert_eq!(
        gets("KV_script_current"),
        6,
        "one get per agent and command"
    );
    assert_eq!(gets("KV_script_status"), 6, "one get per agent and command");
    // The script buckets are bound once per agent (at its first command), not per
    // command: the real agent's command loop holds its binds.
    let binds = api
        .iter()
        .filter(|r| {
            r["phase"] == "5:exec"
                && r["request"] == "STREAM.INFO"
                && r["stream"].starts_with("KV_script")
        })
        .count();
    assert_eq!(binds, 3 * 2, "two binds per agent");

    // Their started events and results, acked, are in the streams: the herd's probe
    // command (commands.all) made none.
    let client = async_nats::connect(broker.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    for stream in ["EVENTS", "RESULTS"] {
        let stored = js
            .get_stream(stream)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .state
            .messages;
        assert_eq!(stored, 6, "{stream}: one per agent and command");
    }
    let summary = read_csv(&report.dir, "summary.csv");
    let done: u64 = summary
        .iter()
        .filter(|r| r["metric"] == "on_command")
        .map(|r| num(r, "count"))
        .sum();
    assert_eq!(done, 6, "every command's calls completed");
}
