//! The broker chart's consumers, told apart: a kanade agent keeps 7 long-lived
//! consumers (one per `[[consumers]]` entry of its profile) for as long as it is
//! connected, but each sync's catalog walks add one short-lived ordered consumer each
//! (`keys()`), which the server reaps only about 30 s after it is dropped. Without a
//! word the chart reads as 9 consumers per agent for the first half minute of a fleet.
//! The long-lived level is drawn dotted and the note under the chart says what lies
//! above it, from each run's manifest (its resolved profile and fleet size).

use std::fmt::Write as _;

use super::charts::Line;
use super::format;
use super::read::ChartRun;

/// What one agent of a run's profile holds on the broker: its long-lived consumers (one
/// per `[[consumers]]` entry, for as long as it is connected) and the transient ones
/// its cold start opens (one per catalog walk: `keys()` opens an ordered consumer, which the
/// server reaps about 30 s after it is dropped). From the run's manifest.
pub struct ConsumersPerAgent {
    /// The variant's name; empty for a single run.
    variant: String,
    profile: String,
    agents: u64,
    long_lived: u64,
    walks: u64,
}

impl ConsumersPerAgent {
    fn of(run: &ChartRun) -> Option<ConsumersPerAgent> {
        let settings = run.manifest.as_ref()?.get("settings")?;
        let profile = settings.get("profile")?;
        let is_walk =
            |op: &serde_json::Value| op.get("type").and_then(|t| t.as_str()) == Some("walk");
        // The cold start's walks (a profile in tasks, or the simple form's one task); a
        // manifest from before tasks has only the sync.
        let walks = match profile.get("cold_start").and_then(|t| t.as_array()) {
            Some(tasks) => tasks
                .iter()
                .filter_map(|t| t.get("calls").and_then(|c| c.as_array()))
                .flatten()
                .filter(|op| is_walk(op))
                .count(),
            None => profile
                .get("sync")
                .and_then(|s| s.as_array())
                .map_or(0, |ops| ops.iter().filter(|op| is_walk(op)).count()),
        };
        Some(ConsumersPerAgent {
            variant: run.variant.clone(),
            profile: profile.get("name")?.as_str()?.to_string(),
            agents: settings.pointer("/fleet/agents")?.as_u64()?,
            long_lived: profile.get("consumers")?.as_array()?.len() as u64,
            walks: walks as u64,
        })
    }
}

/// The level of a run's long-lived consumers on the broker chart (agents × the
/// profile's consumers), drawn dotted across the run's samples, so what lies above it
/// reads as transient.
pub fn level(v: usize, run: &ChartRun, lines: &[Line]) -> Option<(Line, ConsumersPerAgent)> {
    let per = ConsumersPerAgent::of(run)?;
    let single = run.variant.is_empty();
    let color = if single { 0 } else { v };
    let end = lines
        .iter()
        .filter(|l| l.color == color || single)
        .flat_map(|l| l.segments.iter().flatten())
        .map(|p| p.0)
        .fold(0.0_f64, f64::max);
    let level = (per.long_lived * per.agents) as f64;
    let label = format!("long-lived: {} per agent", per.long_lived);
    let line = Line {
        label: if single {
            label
        } else {
            format!("{} · {label}", run.variant)
        },
        color,
        dash: 2,
        right: false,
        underlay: false,
        segments: vec![vec![(0.0, level), (end, level)]],
    };
    Some((line, per))
}

/// The broker chart's note: which consumers are long-lived and why the count rises
/// above them for a while after every (re)sync.
pub fn note(levels: &[(Line, ConsumersPerAgent)]) -> Option<String> {
    if levels.is_empty() {
        return None;
    }
    let mut text = String::from("Consumers: ");
    let key = |per: &ConsumersPerAgent| (per.profile.clone(), per.long_lived, per.agents);
    // Variants alike in this are said once.
    let alike = levels.iter().all(|(_, per)| key(per) == key(&levels[0].1));
    let said = if alike { &levels[..1] } else { levels };
    for (i, (_, per)) in said.iter().enumerate() {
        let _ = write!(
            text,
            "{}{}the {} profile keeps {} long-lived consumers per agent ({} × {} agents = {}, \
             the dotted line)",
            if i > 0 { "; " } else { "" },
            if alike || per.variant.is_empty() {
                String::new()
            } else {
                format!("{}: ", per.variant)
            },
            per.profile,
            per.long_lived,
            per.long_lived,
            format::count(per.agents),
            format::count(per.long_lived * per.agents),
        );
    }
    text.push_str(". ");
    let mut walks: Vec<(u64, u64)> = levels
        .iter()
        .map(|(_, per)| (per.walks, per.long_lived))
        .filter(|(walks, _)| *walks > 0)
        .collect();
    walks.dedup();
    match walks[..] {
        [] => text.push_str(
            "The profile walks no catalog: no transient consumers are expected above it.",
        ),
        [(walks, long_lived)] => {
            let _ = write!(
                text,
                "Above it are transient ones: each sync's {walks} catalog walk{s} (keys()) \
                 open{verb} an ordered consumer that the server reaps about 30 s after it is \
                 dropped, so for about 30 s after a start or a reconnect the count reaches up \
                 to {peak} per agent.",
                s = if walks == 1 { "" } else { "s" },
                verb = if walks == 1 { "s" } else { "" },
                peak = long_lived + walks,
            );
        }
        _ => text.push_str(
            "Above it are transient ones: each catalog walk (keys()) of a sync opens an \
             ordered consumer that the server reaps about 30 s after it is dropped.",
        ),
    }
    Some(text)
}
