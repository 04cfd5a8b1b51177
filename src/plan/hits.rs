//! Which agents a network fault hits: the whole fleet, or a set chosen by the scenario
//! (`fraction`, `groups`, `agents`) and fixed when the plan is made, so the fault proxy
//! (in this process or its own) and the results agree on who was hit.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rand::SeedableRng;
use serde::Serialize;

use crate::provision::group_of;

/// Which agents a network step names (`fraction`, `groups`, `agents`; none of them: every
/// agent), resolved to [`Hits`] when the step fires, once the fleet's size is known (a
/// `--agents` override changes it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    #[default]
    All,
    /// This share of the fleet, in (0, 1]: ceil(share × agents) agents drawn at random
    /// with the run's seed, so a rerun hits the same ones.
    Fraction(f64),
    /// The agents of these groups (agent `i` is in group `i % groups`).
    Groups(Vec<usize>),
    /// These agents.
    Agents(Vec<usize>),
}

impl FaultTarget {
    /// The agents hit in a fleet of `agents` in `groups` groups; `seed` draws a fraction.
    pub fn resolve(&self, agents: usize, groups: usize, seed: u64) -> Hits {
        match self {
            FaultTarget::All => Hits::All,
            FaultTarget::Fraction(share) => {
                let count = ((agents as f64) * share).ceil() as usize;
                if count >= agents {
                    return Hits::All;
                }
                let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
                let drawn = rand::seq::index::sample(&mut rng, agents, count);
                Hits::Agents(AgentSet::from_indices(drawn))
            }
            FaultTarget::Groups(wanted) => Hits::Agents(AgentSet::from_indices(
                (0..agents).filter(|&a| wanted.contains(&group_of(a, groups))),
            )),
            FaultTarget::Agents(list) => Hits::Agents(AgentSet::from_indices(
                list.iter().copied().filter(|&a| a < agents),
            )),
        }
    }
}

/// The agents a fault hits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hits {
    /// Every connection, including one whose agent is not known yet (it has not sent its
    /// CONNECT).
    #[default]
    All,
    /// Only connections whose CONNECT named one of these agents.
    Agents(AgentSet),
}

impl Hits {
    /// Whether a connection carrying `agent` (`None`: not identified yet) is hit.
    pub fn hits(&self, agent: Option<usize>) -> bool {
        match self {
            Hits::All => true,
            Hits::Agents(set) => agent.is_some_and(|a| set.contains(a)),
        }
    }

    /// Whether agent `index` is hit (an agent, not a connection: always known).
    pub fn hits_agent(&self, index: usize) -> bool {
        self.hits(Some(index))
    }
}

impl fmt::Display for Hits {
    /// `all`, or the agent ranges (`0-299,512`): the fault proxy's control protocol.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hits::All => f.write_str("all"),
            Hits::Agents(set) => set.fmt(f),
        }
    }
}

impl FromStr for Hits {
    type Err = String;

    fn from_str(s: &str) -> Result<Hits, String> {
        if s == "all" {
            Ok(Hits::All)
        } else {
            s.parse().map(Hits::Agents)
        }
    }
}

/// A set of agent indices, kept as sorted, disjoint, non-adjacent ranges: a fraction of a
/// fleet or a few groups is a few hundred ranges at most, cheap to test and to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct AgentSet {
    ranges: Vec<Range<usize>>,
}

impl AgentSet {
    /// The set of `indices`, in any order, duplicates allowed.
    pub fn from_indices(indices: impl IntoIterator<Item = usize>) -> AgentSet {
        let mut sorted: Vec<usize> = indices.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for i in sorted {
            match ranges.last_mut() {
                Some(last) if last.end == i => last.end = i + 1,
                _ => ranges.push(i..i + 1),
            }
        }
        AgentSet { ranges }
    }

    pub fn contains(&self, index: usize) -> bool {
        // The first range that ends after `index` is the only one that can hold it.
        let at = self.ranges.partition_point(|r| r.end <= index);
        self.ranges.get(at).is_some_and(|r| r.start <= index)
    }

    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }
}

impl fmt::Display for AgentSet {
    /// `0-299,512,600-601`: inclusive ranges, comma separated (`none` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("none");
        }
        for (n, r) in self.ranges.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if r.len() == 1 {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}-{}", r.start, r.end - 1)?;
            }
        }
        Ok(())
    }
}

impl From<AgentSet> for String {
    fn from(set: AgentSet) -> String {
        set.to_string()
    }
}

impl FromStr for AgentSet {
    type Err = String;

    fn from_str(s: &str) -> Result<AgentSet, String> {
        if s == "none" {
            return Ok(AgentSet::default());
        }
        let bad = |part: &str| format!("{part:?} is not an agent index or range (0-299)");
        let mut indices = Vec::new();
        for part in s.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let first: usize = first.parse().map_err(|_| bad(part))?;
            let last: usize = last.parse().map_err(|_| bad(part))?;
            if last < first {
                return Err(format!("{part:?}: the range ends before it starts"));
            }
            indices.extend(first..=last);
        }
        Ok(AgentSet::from_indices(indices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_merges_adjacent_indices_and_round_trips_as_text() {
        let set = AgentSet::from_indices([5, 3, 4, 10, 0, 4]);
        assert_eq!(set.to_string(), "0,3-5,10");
        assert_eq!(set.len(), 5);
        for (i, inside) in [
            (0, true),
            (1, false),
            (3, true),
            (5, true),
            (6, false),
            (10, true),
            (11, false),
        ] {
            assert_eq!(set.contains(i), inside, "index {i}");
        }
        assert_eq!(set.to_string().parse::<AgentSet>(), Ok(set.clone()));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3, 4, 5, 10]);
        assert_eq!("none".parse::<AgentSet>(), Ok(AgentSet::default()));
        assert!("3-1".parse::<AgentSet>().is_err());
        assert!("x".parse::<AgentSet>().is_err());
    }

    #[test]
    fn a_target_resolves_against_the_fleet_it_fires_on() {
        let Hits::Agents(third) = FaultTarget::Fraction(0.3).resolve(100, 4, 7) else {
            panic!("a fraction below 1 is a set");
        };
        assert_eq!(third.len(), 30);
        assert_eq!(
            FaultTarget::Fraction(0.3).resolve(100, 4, 7),
            Hits::Agents(third)
        );
        assert_eq!(FaultTarget::Fraction(1.0).resolve(100, 4, 7), Hits::All);
        assert_eq!(
            FaultTarget::Groups(vec![1]).resolve(10, 4, 0).to_string(),
            "1,5,9"
        );
        assert_eq!(
            FaultTarget::Agents(vec![3, 12])
                .resolve(10, 4, 0)
                .to_string(),
            "3"
        );
    }

    #[test]
    fn all_hits_unidentified_connections_and_a_set_only_its_agents() {
        let some = Hits::Agents(AgentSet::from_indices([2]));
        assert!(Hits::All.hits(None));
        assert!(!some.hits(None));
        assert!(some.hits(Some(2)));
        assert!(!some.hits(Some(3)));
        assert_eq!("all".parse::<Hits>(), Ok(Hits::All));
        assert_eq!("2".parse::<Hits>(), Ok(some));
    }
}
