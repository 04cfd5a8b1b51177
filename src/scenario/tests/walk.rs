//! The reading helpers in `walk.rs`: every problem of a file at once, each with its line.
//! Unknown keys, wrong types and syntax errors are data: `tests/scenarios/invalid/{walk,syntax}`.

use super::*;

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"name = "quick"

[fleet]
agents = -5
groups = 2

[[steps]]
kind = "start"
agnets = 3

[[steps]]
kind = "hold"
duration = "5 parsecs"
"#;
    let err = parse_str(text, "quick.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "quick.toml:4: fleet.agents: must be a positive whole number, got -5\n\
         quick.toml:9: steps[1].agnets: unknown key; allowed: kind, mode, rate, over, timeout, duration, target, agents, bucket, key, count, value_size, drain_timeout, background, retry, agent, consumer, recover_timeout, signal, downtime, refuse_for, command, command_timeout, after, fraction, groups\n\
         quick.toml:13: steps[2].duration: bad duration \"5 parsecs\"; use a number with a unit: 500ms, 10s, 2m, 1h"
    );
    let ScenarioError::Invalid(list) = err else {
        panic!("not Invalid")
    };
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0],
        Problem {
            file: "quick.toml".into(),
            line: 4,
            key: "fleet.agents".into(),
            message: "must be a positive whole number, got -5".into(),
        }
    );
}
