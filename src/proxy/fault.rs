//! The faults the proxy applies to its connections, and how one connection sees them.
//!
//! Every proxied connection watches one [`Faults`] value: the latest cut (a counter and
//! whom it hit) and the blackhole in force, if any. A connection learns which agent it
//! carries from the `name` in the client's first protocol line (`CONNECT {"name":
//! "pc-00042",...}`, [`Identify`]), so a fault can hit part of the fleet: the proxy itself
//! stays plain TCP and works the same in front of an external broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::plan::{Held, Hits};

/// The faults in force, as every connection sees them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Bumped by every cut.
    pub cut: u64,
    /// Whom the latest cut hit.
    pub cut_hits: Hits,
    /// The blackholes in force, each under the id it was made with: the connections any
    /// of them hits forward nothing, either way, or (a [`Held::ToAgent`] hole) nothing
    /// the broker sends (a herd's hole beside churn's one-agent flaps).
    pub holes: Vec<Hole>,
}

/// One blackhole: its id, whom it hits, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    pub id: u64,
    pub hits: Hits,
    pub held: Held,
}

impl Faults {
    fn blackholes(&self, agent: Option<usize>, to_agent: bool) -> bool {
        self.holes
            .iter()
            .any(|h| (to_agent || h.held == Held::Both) && h.hits.hits(agent))
    }
}

/// No agent known yet.
const UNKNOWN: usize = usize::MAX;

/// One connection's view of the faults: whether it may forward now, and which agent it
/// carries (learned by its client-to-server direction, read by the rest).
#[derive(Clone)]
pub struct Gate {
    faults: watch::Receiver<Faults>,
    agent: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new(faults: watch::Receiver<Faults>) -> Gate {
        Gate {
            faults,
            agent: Arc::new(AtomicUsize::new(UNKNOWN)),
        }
    }

    /// A gate no fault ever closes (for a delay line on its own).
    pub fn always_open() -> Gate {
        let (_, faults) = watch::channel(Faults::default());
        Gate::new(faults)
    }

    pub fn agent(&self) -> Option<usize> {
        match self.agent.load(Ordering::Relaxed) {
            UNKNOWN => None,
            agent => Some(agent),
        }
    }

    pub fn set_agent(&self, agent: usize) {
        self.agent.store(agent, Ordering::Relaxed);
    }

    /// Returns at once unless a blackhole holds this connection's direction (`to_agent`:
    /// broker to agent); then when it lifts (or the proxy is gone).
    pub async fn open(&mut self, to_agent: bool) {
        let agent = self.agent();
        // An error means the proxy is gone: the connection is about to end anyway.
        let _ = self
            .faults
            .wait_for(|f| !f.blackholes(agent, to_agent))
            .await;
    }

    /// The faults' receiver, for the connection's cut watch.
    pub fn faults(&self) -> watch::Receiver<Faults> {
        self.faults.clone()
    }
}

/// The longest first line a client sends that is still searched for its name: a
/// CONNECT with a user JWT is a few KiB.
const MAX_FIRST_LINE: usize = 16 << 10;

/// Finds the agent a connection carries in the client's first protocol line.
#[derive(Default)]
pub struct Identify {
    line: Vec<u8>,
}

impl Identify {
    /// Feeds the next bytes the client sent. `Some` once the first line is complete (or
    /// too long to be a CONNECT): the agent its `"name":"pc-NNNNN"` names, if any.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Option<usize>> {
        let take = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |end| end + 1);
        self.line.extend_from_slice(&bytes[..take]);
        let complete = self.line.ends_with(b"\n");
        if !complete && self.line.len() < MAX_FIRST_LINE {
            return None;
        }
        Some(agent_named(&self.line))
    }
}

/// The agent index in a CONNECT line's `"name":"pc-NNNNN"` (see `provision::pc_id`).
fn agent_named(line: &[u8]) -> Option<usize> {
    const KEY: &[u8] = br#""name":"pc-"#;
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AgentSet;

    #[test]
    fn the_agent_is_read_from_connect_split_over_reads() {
        let connect = br#"CONNECT {"verbose":false,"name":"pc-00042","lang":"rust"}"#;
        let mut identify = Identify::default();
        assert_eq!(identify.feed(&connect[..20]), None);
        assert_eq!(identify.feed(&connect[20..]), None);
        assert_eq!(identify.feed(b"\r\nPING\r\n"), Some(Some(42)));

        let mut other = Identify::default();
        assert_eq!(
            other.feed(b"CONNECT {\"name\":\"backend\"}\r\n"),
            Some(None)
        );
        let mut long = Identify::default();
        assert_eq!(long.feed(&vec![b'x'; MAX_FIRST_LINE]), Some(None));
    }

    #[tokio::test]
    async fn a_blackhole_closes_the_gate_of_the_agents_it_hits_only() {
        let (faults, receiver) = watch::channel(Faults::default());
        let mut hit = Gate::new(receiver.clone());
        hit.set_agent(1);
        let mut spared = Gate::new(receiver);
        spared.set_agent(2);
        faults.send_modify(|f| {
            f.holes.push(Hole {
                id: 7,
                hits: Hits::Agents(AgentSet::from_indices([1])),
                held: Held::Both,
            })
        });
        // The spared agent's gate is open now; the hit one's opens when the hole lifts.
        spared.open(true).await;
        let waiting = tokio::spawn(async move { hit.open(false).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the hit agent's gate stayed open");
        faults.send_modify(|f| f.holes.clear());
        waiting.await.expect("opens once the blackhole lifts");
    }

    #[tokio::test]
    async fn a_one_way_hole_holds_only_what_the_broker_sends() {
        let (faults, receiver) = watch::channel(Faults::default());
        let mut gate = Gate::new(receiver);
        gate.set_agent(3);
        faults.send_modify(|f| {
            f.holes.push(Hole {
                id: 1,
                hits: Hits::All,
                held: Held::ToAgent,
            })
        });
        // The agent's own bytes still go up.
        gate.open(false).await;
        let mut down = gate.clone();
        let waiting = tokio::spawn(async move { down.open(true).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the broker's bytes went through");
        faults.send_modify(|f| f.holes.clear());
        waiting.await.expect("opens once the hole lifts");
    }
}
