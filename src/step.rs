//! What a step runner is handed, and the step the run is in, as the samplers see it.
//!
//! Each step kind is run by the room that owns it (`herd::run_step`,
//! `writes::run_step`); `run.rs` only sequences them. A runner gets a [`StepEnv`] (the
//! plan, the control connection's JetStream context, the metrics, the roster, the run's
//! clock, and the list of reasons the run failed) plus the handles of its own kind.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;

use crate::fleet::Roster;
use crate::metrics::Metrics;
use crate::plan::{Plan, Step, StepAction};

/// What every step runner may use.
pub struct StepEnv<'a> {
    pub plan: &'a Plan,
    /// JetStream on the control connection, which never goes through the fault proxy.
    pub js: &'a jetstream::Context,
    pub metrics: &'a Arc<Metrics>,
    pub roster: &'a Arc<Roster>,
    /// Origin of the run's clock (`steps.csv`, `timeseries.csv`).
    pub run_start: Instant,
    /// Why the run failed, one line per problem, in the order found.
    pub reasons: Vec<String>,
}

impl StepEnv<'_> {
    /// The label of step `index` (`"3:write"`), as results name it.
    pub fn label(&self, index: usize) -> String {
        self.plan
            .steps
            .iter()
            .find(|s| s.index == index)
            .map_or_else(|| format!("{index}:?"), |s| s.label())
    }
}

/// The step a run is in, broadcast to the samplers and the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// The step's 1-based index; 0 before the first step (setup).
    pub index: usize,
    /// The step's kind (`"write"`, `"broker_restart"`), `"setup"` or `"end"`.
    pub kind: &'static str,
    /// A herd step: things move fast, the broker is sampled more often.
    pub is_herd: bool,
}

impl StepInfo {
    /// Before the first step: provisioning.
    pub const SETUP: StepInfo = StepInfo {
        index: 0,
        kind: "setup",
        is_herd: false,
    };
    /// After the last step (and its background writes).
    pub const END: StepInfo = StepInfo {
        index: usize::MAX,
        kind: "end",
        is_herd: false,
    };

    pub fn of(step: &Step) -> StepInfo {
        StepInfo {
            index: step.index,
            kind: step.action.kind(),
            is_herd: matches!(step.action, StepAction::Herd { .. }),
        }
    }

    /// The label results and logs use: `"3:write"`, `"0:setup"`, `"end"`.
    pub fn label(&self) -> String {
        if *self == StepInfo::END {
            "end".to_string()
        } else {
            format!("{}:{}", self.index, self.kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_the_plan_and_herds_are_typed() {
        let plan = crate::scenario::parse_str(
            "[fleet]\nagents = 1\n[[steps]]\nkind = \"start\"\n[[steps]]\nkind = \"client_reconnect\"\n",
            "t.toml",
        )
        .expect("valid");
        let infos: Vec<StepInfo> = plan.steps.iter().map(StepInfo::of).collect();
        for (info, step) in infos.iter().zip(&plan.steps) {
            assert_eq!(info.label(), step.label());
        }
        assert_eq!(
            infos.iter().map(|i| i.is_herd).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(StepInfo::SETUP.label(), "0:setup");
        assert_eq!(StepInfo::END.label(), "end");
    }
}
