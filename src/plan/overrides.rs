//! The command line's changes to a plan: `--agents`, `--server`/`--monitor`,
//! `--herd-command`, and `$FLEETSIM_SYSTEM_URL`.
//!
//! The second stage of reading the input (ripgrep's low → high args): the scenario file
//! is already a correct [`Plan`], and these are applied to it, each checked against the
//! whole plan the way the parser checks a file, so a plan is still one that can run.
//! `fleetsim run` (and with it the A/B path, whose variants each get the same changes)
//! and `fleetsim sweep` all go through [`Overrides::apply`].

use std::time::Duration;

use super::{Plan, StepAction, Trigger, WriteTarget};

/// How long a `--herd-command` may run before the step fails.
const HERD_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Command-line changes to a scenario's plan; `None` leaves the file's setting.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--agents`: the fleet size (a sweep passes its smallest size, so every size is
    /// checked).
    pub agents: Option<usize>,
    /// `--server`: drive this external broker instead of starting an embedded one.
    pub server: Option<String>,
    /// `--monitor`: the monitoring URL of `server`.
    pub monitor: Option<String>,
    /// `--herd-command`: replaces every `broker_restart` and `lame_duck` trigger.
    pub herd_command: Option<String>,
    /// A system-account user of an external broker, see [`system_url_from_env`]; set on
    /// every plan that drives one (from `--server` or the file's `[broker] url`).
    pub system_url: Option<String>,
}

/// An override the plan cannot take: bad input (exit 2), reported before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("--agents must be a positive whole number, got 0")]
    NoAgents,
    #[error(
        "step {step} names agent {index}, but a fleet of {agents} (--agents) has agents 0 to {last}; raise --agents or change the step",
        last = agents - 1
    )]
    AgentBeyondFleet {
        step: String,
        index: usize,
        agents: usize,
    },
    #[error("--herd-command must not be empty")]
    EmptyHerdCommand,
    #[error(
        "step {step} restarts the embedded broker, which --server replaces; pass --herd-command \"<command that restarts your broker>\" (e.g. \"docker restart nats\")"
    )]
    NeedsEmbeddedBroker { step: String },
}

impl Overrides {
    /// Applies every override to `plan` and each of its variants, or changes nothing
    /// and says why the plan cannot take them.
    pub fn apply(&self, plan: &mut Plan) -> Result<(), OverrideError> {
        self.check(plan)?;
        self.apply_one(plan);
        for variant in &mut plan.variants {
            self.apply_one(&mut variant.plan);
        }
        Ok(())
    }

    /// Every check, before anything changes. Variants share the file's steps, so the
    /// plan's own steps stand for theirs.
    fn check(&self, plan: &Plan) -> Result<(), OverrideError> {
        if let Some(agents) = self.agents {
            if agents == 0 {
                return Err(OverrideError::NoAgents);
            }
            if let Some((step, index)) = agent_index_beyond(plan, agents) {
                return Err(OverrideError::AgentBeyondFleet {
                    step,
                    index,
                    agents,
                });
            }
        }
        let herd_command = match &self.herd_command {
            Some(command) if command.trim().is_empty() => {
                return Err(OverrideError::EmptyHerdCommand);
            }
            Some(_) => true,
            None => false,
        };
        if self.server.is_some()
            && !herd_command
            && let Some(step) = plan.steps.iter().find(|s| needs_embedded(&s.action))
        {
            return Err(OverrideError::NeedsEmbeddedBroker { step: step.label() });
        }
        Ok(())
    }

    fn apply_one(&self, plan: &mut Plan) {
        if let Some(agents) = self.agents {
            plan.fleet.agents = agents;
        }
        if let Some(command) = &self.herd_command {
            replace_herd_triggers(plan, command);
        }
        if let Some(url) = &self.server {
            plan.broker.url = Some(url.clone());
            plan.broker.monitor_url = self.monitor.clone();
        }
        if plan.broker.url.is_some() {
            plan.broker.system_url = self.system_url.clone();
        }
    }
}

/// `$FLEETSIM_SYSTEM_URL`: a system-account user of an external broker, so the run can
/// count the API queue's LIMIT_REACHED advisories. An environment variable, not a flag
/// or a scenario key: it holds a password, which must not show in `ps` or a file.
pub fn system_url_from_env() -> Option<String> {
    std::env::var("FLEETSIM_SYSTEM_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// The first step that names an agent index outside a fleet of `agents`, as
/// `(step label, index)`. The parser checks indexes against the file's own
/// `fleet.agents`; this re-checks them when `--agents` changes the fleet size.
fn agent_index_beyond(plan: &Plan, agents: usize) -> Option<(String, usize)> {
    plan.steps.iter().find_map(|step| {
        let named: &[usize] = match &step.action {
            StepAction::Write {
                target: WriteTarget::Pcs { agents },
                ..
            } => agents,
            StepAction::DropConsumer { agent, .. } => std::slice::from_ref(agent),
            _ => &[],
        };
        named
            .iter()
            .find(|&&i| i >= agents)
            .map(|&i| (step.label(), i))
    })
}

/// A step only a broker fleetsim owns can run: it restarts or lame-ducks that broker.
fn needs_embedded(action: &StepAction) -> bool {
    matches!(
        action,
        StepAction::Herd {
            trigger: Trigger::BrokerRestart { .. } | Trigger::LameDuck,
            ..
        }
    )
}

/// `--herd-command`: every broker_restart and lame_duck step runs the command instead
/// (its phase label becomes `<n>:command`).
fn replace_herd_triggers(plan: &mut Plan, command: &str) {
    for step in &mut plan.steps {
        if let StepAction::Herd { trigger, .. } = &mut step.action
            && matches!(trigger, Trigger::BrokerRestart { .. } | Trigger::LameDuck)
        {
            *trigger = Trigger::Command {
                command: command.to_string(),
                timeout: HERD_COMMAND_TIMEOUT,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_str;

    const HERDS: &str = r#"[fleet]
agents = 10

[[steps]]
kind = "start"

[[steps]]
kind = "write"
target = "pcs"
agents = [1, 8]
count = 1

[[steps]]
kind = "broker_restart"

[[steps]]
kind = "lame_duck"
"#;

    fn herds() -> Plan {
        parse_str(HERDS, "herds.toml").unwrap()
    }

    fn ab() -> Plan {
        let text = format!("{HERDS}\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\n");
        parse_str(&text, "ab.toml").unwrap()
    }

    fn server() -> Overrides {
        Overrides {
            server: Some("nats://127.0.0.1:4222".into()),
            monitor: Some("http://127.0.0.1:8222".into()),
            system_url: Some("nats://sys:pw@127.0.0.1:4222".into()),
            ..Overrides::default()
        }
    }

    #[test]
    fn nothing_to_apply_changes_nothing() {
        let mut plan = herds();
        Overrides::default().apply(&mut plan).unwrap();
        assert_eq!(format!("{plan:?}"), format!("{:?}", herds()));
    }

    #[test]
    fn agents_resize_the_plan_and_every_variant() {
        let mut plan = ab();
        let over = Overrides {
            agents: Some(9),
            ..Overrides::default()
        };
        over.apply(&mut plan).unwrap();
        assert_eq!(plan.fleet.agents, 9);
        assert!(plan.variants.iter().all(|v| v.plan.fleet.agents == 9));
    }

    #[test]
    fn agents_below_a_named_index_or_zero_are_refused_and_change_nothing() {
        let mut plan = herds();
        let over = Overrides {
            agents: Some(5),
            ..Overrides::default()
        };
        let err = over.apply(&mut plan).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step 2:write names agent 8, but a fleet of 5 (--agents) has agents 0 to 4; raise --agents or change the step"
        );
        assert_eq!(plan.fleet.agents, 10);
        let zero = Overrides {
            agents: Some(0),
            ..Overrides::default()
        };
        assert_eq!(zero.apply(&mut plan), Err(OverrideError::NoAgents));
    }

    #[test]
    fn server_refuses_steps_that_restart_the_embedded_broker() {
        let mut plan = herds();
        assert_eq!(
            server().apply(&mut plan),
            Err(OverrideError::NeedsEmbeddedBroker {
                step: "3:broker_restart".into()
            })
        );
        assert_eq!(plan.broker.url, None, "nothing applied");
        // The A/B path: the same check, and its variants keep their embedded broker.
        let mut plan = ab();
        assert!(server().apply(&mut plan).is_err());
        assert!(plan.variants.iter().all(|v| v.plan.broker.url.is_none()));
    }

    #[test]
    fn server_with_a_herd_command_drives_an_external_broker_everywhere() {
        let mut plan = ab();
        let over = Overrides {
            herd_command: Some("docker restart nats".into()),
            ..server()
        };
        over.apply(&mut plan).unwrap();
        for plan in std::iter::once(&plan).chain(plan.variants.iter().map(|v| &v.plan)) {
            assert_eq!(plan.broker.url.as_deref(), Some("nats://127.0.0.1:4222"));
            assert_eq!(
                plan.broker.monitor_url.as_deref(),
                Some("http://127.0.0.1:8222")
            );
            assert_eq!(
                plan.broker.system_url.as_deref(),
                Some("nats://sys:pw@127.0.0.1:4222")
            );
            let labels: Vec<String> = plan.steps.iter().map(|s| s.label()).collect();
            assert_eq!(labels, ["1:start", "2:write", "3:command", "4:command"]);
        }
    }

    #[test]
    fn an_empty_herd_command_is_refused() {
        let over = Overrides {
            herd_command: Some("  ".into()),
            ..Overrides::default()
        };
        assert_eq!(
            over.apply(&mut herds()),
            Err(OverrideError::EmptyHerdCommand)
        );
    }

    #[test]
    fn the_system_user_goes_only_to_an_external_broker() {
        let over = Overrides {
            system_url: Some("nats://sys:pw@h:4222".into()),
            ..Overrides::default()
        };
        let mut embedded = parse_str(
            "[fleet]\nagents = 1\n[[steps]]\nkind = \"start\"\n",
            "e.toml",
        )
        .unwrap();
        over.apply(&mut embedded).unwrap();
        assert_eq!(embedded.broker.system_url, None);
        let mut external = parse_str(
            "[broker]\nurl = \"nats://h:4222\"\n[fleet]\nagents = 1\n[[steps]]\nkind = \"start\"\n",
            "x.toml",
        )
        .unwrap();
        over.apply(&mut external).unwrap();
        assert_eq!(
            external.broker.system_url.as_deref(),
            Some("nats://sys:pw@h:4222")
        );
    }
}
