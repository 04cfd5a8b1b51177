//! One function per command: read the input (scenario file → plan → [`Overrides`]),
//! call the library, print the outcome, and return the exit code the README documents.

use std::path::{Path, PathBuf};

use fleetsim::gate::GateOutcome;
use fleetsim::gate::compare as baseline;
use fleetsim::plan::{Overrides, Plan};
use fleetsim::run::RunOptions;
use fleetsim::scenario;

use super::args::{CompareArgs, GateArgs, ProxyArgs, RunArgs, SweepArgs};
use super::runtime;

/// The options of a run of `file` into `out` (default `results/`).
fn run_options(file: PathBuf, out: Option<PathBuf>) -> RunOptions {
    RunOptions {
        scenario_text: std::fs::read_to_string(&file).unwrap_or_default(),
        scenario_path: Some(file),
        results_base: out.unwrap_or_else(fleetsim::run::default_results_base),
        run_dir: None,
        proxy_program: None,
    }
}

/// `fleetsim run`: one run, or an A/B run when the file has `[[variants]]`.
pub fn run(args: RunArgs) -> u8 {
    let output = &args.output;
    let stem = args.file.file_stem().map_or_else(
        || "scenario".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut plan = match scenario::parse_file(&args.file) {
        Ok(plan) => plan,
        Err(e) => return output.fail_early(&stem, 2, &e.to_string()),
    };
    let name = plan.name.clone();
    if let Err(e) = args.overrides().apply(&mut plan) {
        let message = format!("{}: {e}", args.file.display());
        return output.fail_early(&name, 2, &message);
    }
    let options = run_options(args.file.clone(), args.out.clone());
    let (runtime, ctrl_c) = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            return output.fail_early(&name, 3, &message);
        }
    };
    let outcome = if plan.variants.is_empty() {
        runtime
            .block_on(fleetsim::run::run(plan, options, ctrl_c))
            .map(|r| GateOutcome::from_run(&name, r))
    } else {
        runtime
            .block_on(fleetsim::ab::run_ab(plan, options, ctrl_c))
            .map(|r| GateOutcome::from_ab(&name, r))
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // Interrupted before anything was measured (1); broker, provisioning, host
        // limits, results directory: the environment, not the run (3).
        Err(e) => return output.fail_early(&name, e.exit_code(), &format!("error: {e:#}")),
    };
    let text = format!("{}\nresults: {}", outcome.summary, outcome.dir.display());
    output.print(&text, || serde_json::to_string_pretty(&outcome));
    for reason in &outcome.reasons {
        eprintln!("run failed: {reason}");
    }
    for failure in outcome.failures() {
        eprintln!("threshold failed: {failure}");
    }
    if !output.write_junit("fleetsim", &outcome.junit_suites()) {
        return 3;
    }
    outcome.exit_code
}

/// `fleetsim sweep`: the file's plan at every size, with the same overrides and checks
/// as `run` (the smallest size stands for `--agents`).
pub fn sweep(args: SweepArgs) -> u8 {
    let file = args.file.display();
    let plan = scenario::parse_file(&args.file)
        .map_err(|e| e.to_string())
        .and_then(|plan| sweep_plan(plan, &args).map_err(|e| format!("{file}: {e}")));
    let plan = match plan {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let options = run_options(args.file.clone(), args.out.clone());
    let (runtime, ctrl_c) = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 3;
        }
    };
    let sizes = &args.agents.0;
    let swept = fleetsim::sweep::sweep(plan, sizes, options, args.stop_at_knee, ctrl_c);
    match runtime.block_on(swept) {
        Ok(report) => {
            println!("{}", report.summary);
            println!("results: {}", report.dir.display());
            // A knee is a finding, not a failure: the sweep did its job. Exit 1 only
            // when not a single size passed.
            if report.rows.iter().any(|r| r.status == "ok") {
                0
            } else {
                eprintln!("sweep failed: no fleet size passed");
                1
            }
        }
        // Stopped before the first size was measured (1), or the environment (3).
        Err(e) => {
            eprintln!("error: {e:#}");
            e.exit_code()
        }
    }
}

/// Why a plan cannot be swept: it has variants, or an override does not fit it.
#[derive(Debug, thiserror::Error)]
enum SweepInputError {
    #[error(
        "a sweep runs one scenario at several sizes; this file has [[variants]] (or repeat): sweep each variant from its own file"
    )]
    Variants,
    #[error(transparent)]
    Override(#[from] fleetsim::plan::OverrideError),
}

/// The plan a sweep runs: checked as `run` checks it, against its smallest size.
fn sweep_plan(mut plan: Plan, args: &SweepArgs) -> Result<Plan, SweepInputError> {
    if !plan.variants.is_empty() {
        return Err(SweepInputError::Variants);
    }
    let overrides = Overrides {
        agents: args.agents.0.iter().min().copied(),
        ..args.broker.overrides()
    };
    overrides.apply(&mut plan)?;
    if args.broker.server.is_some() {
        // The sweep resets an external broker's state between sizes.
        plan.broker.reset = true;
    }
    Ok(plan)
}

/// `fleetsim compare`: a run against a baseline run; 1 when a figure regressed.
pub fn compare(args: CompareArgs) -> u8 {
    let output = &args.output;
    let loaded = baseline::load(&args.run).and_then(|r| {
        let b = baseline::load(&args.baseline)?;
        baseline::comparable(&r, &b)?;
        Ok((r, b))
    });
    let (now, before) = match loaded {
        Ok(sides) => sides,
        Err(e) => return output.fail_early("compare", 2, &e.to_string()),
    };
    // Per-metric tolerances: the scenario named on the command line, else the one the
    // run kept in its manifest.
    let plan = match &args.scenario {
        Some(file) => match scenario::parse_file(file) {
            Ok(plan) => Some(plan),
            Err(e) => return output.fail_early("compare", 2, &e.to_string()),
        },
        None => now.scenario_text.as_deref().and_then(|text| {
            scenario::parse_str(text, "manifest.json scenario")
                .map_err(|e| {
                    eprintln!("warning: the run's scenario does not parse, its [thresholds] tolerances are not used:\n{e}")
                })
                .ok()
        }),
    };
    let settings = baseline::Settings::resolve(
        plan.as_ref().map(|p| &p.thresholds.baseline),
        args.tolerance,
        args.floor,
    );
    let comparison = baseline::compare(&now, &before, &settings);
    let passed = comparison.regressed() == 0;
    let text = format!(
        "{}(run: {}; baseline: {})",
        baseline::render(&comparison, args.all),
        now.kind,
        before.kind
    );
    output.print(&text, || {
        let value = serde_json::json!({
            "passed": passed,
            "exit_code": if passed { 0 } else { 1 },
            "comparison": comparison,
        });
        serde_json::to_string_pretty(&value)
    });
    if !output.write_junit("fleetsim compare", &[baseline::junit_suite(&comparison)]) {
        return 3;
    }
    if passed { 0 } else { 1 }
}

/// `fleetsim gate`: the reference and the candidate interleaved, judged; 0 pass, 1 fail,
/// 4 inconclusive.
pub fn gate(args: GateArgs) -> u8 {
    use fleetsim::gate::same_runner;
    let output = &args.output;
    let read = |file: &Path, server: &Option<PathBuf>| -> Result<Plan, String> {
        let mut plan = scenario::parse_file(file).map_err(|e| e.to_string())?;
        if let Some(server) = server {
            if plan.broker.url.is_some() || args.broker.server.is_some() {
                return Err(format!(
                    "{}: --reference-server and --candidate-server choose the embedded \
                     broker's nats-server; this run drives an external broker",
                    file.display()
                ));
            }
            plan.broker.server = Some(server.clone());
        }
        args.overrides()
            .apply(&mut plan)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some(repeat) = args.repeat {
            plan.gate.repeat = usize::from(repeat);
        }
        Ok(plan)
    };
    if let Some(dir) = &args.judge {
        return judge_again(&args, dir, read(&args.file, &None));
    }
    let candidate_file = args.candidate.clone().unwrap_or_else(|| args.file.clone());
    let plan = read(&args.file, &args.reference_server).and_then(|reference| {
        let candidate = read(&candidate_file, &args.candidate_server)?;
        same_runner::gate_plan(reference, candidate).map_err(|e| format!("error: {e}"))
    });
    let plan = match plan {
        Ok(plan) => plan,
        Err(message) => return output.fail_early("gate", 2, &message),
    };
    let name = plan.name.clone();
    let options = run_options(args.file.clone(), args.out.clone());
    if plan.repeat < fleetsim::ab_stats::MIN_REPEAT_FOR_CI {
        eprintln!(
            "warning: {} run(s) per side, fewer than {}: no interval, so every measured figure will be inconclusive (the exact counts still decide)",
            plan.repeat,
            fleetsim::ab_stats::MIN_REPEAT_FOR_CI
        );
    }
    let (runtime, ctrl_c) = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            return output.fail_early(&name, 3, &message);
        }
    };
    let report = match runtime.block_on(same_runner::run_gate(plan, options, ctrl_c)) {
        Ok(report) => report,
        Err(e) => return output.fail_early(&name, e.exit_code(), &format!("error: {e:#}")),
    };
    let decision = report.decision;
    let outcome = GateOutcome::from_ab(&name, report.ab);
    let text = format!(
        "{}\n{}\nresults: {}",
        outcome.summary,
        decision.text(),
        outcome.dir.display()
    );
    let code = gate_exit_code(&decision, args.allow_inconclusive);
    output.print(&text, || {
        let value = serde_json::json!({
            "scenario": name,
            "verdict": decision.verdict,
            "exit_code": code,
            "dir": outcome.dir,
            "runs": outcome.runs,
            "figures": decision.rows,
        });
        serde_json::to_string_pretty(&value)
    });
    let mut suites = outcome.junit_suites();
    suites.push(decision.junit_suite(&name));
    if !output.write_junit("fleetsim gate", &suites) {
        return 3;
    }
    code
}

/// The gate's exit code: 4 (inconclusive) is 0 with `--allow-inconclusive`.
fn gate_exit_code(decision: &fleetsim::gate::same_runner::GateDecision, allow: bool) -> u8 {
    match decision.exit_code() {
        4 if allow => 0,
        code => code,
    }
}

/// `fleetsim gate FILE --judge DIR`: the directory's runs judged again by FILE's `[gate]`.
fn judge_again(args: &GateArgs, dir: &Path, plan: Result<Plan, String>) -> u8 {
    let output = &args.output;
    let plan = match plan {
        Ok(plan) => plan,
        Err(message) => return output.fail_early("gate", 2, &message),
    };
    let decision = match fleetsim::gate::same_runner::judge_dir(dir, &plan.gate) {
        Ok(decision) => decision,
        Err(e) => {
            return output.fail_early(&plan.name, 2, &format!("error: {}: {e}", dir.display()));
        }
    };
    let code = gate_exit_code(&decision, args.allow_inconclusive);
    let text = format!("{}\nresults: {}", decision.text(), dir.display());
    output.print(&text, || {
        let value = serde_json::json!({
            "scenario": plan.name,
            "verdict": decision.verdict,
            "exit_code": code,
            "dir": dir,
            "figures": decision.rows,
        });
        serde_json::to_string_pretty(&value)
    });
    if !output.write_junit("fleetsim gate", &[decision.junit_suite(&plan.name)]) {
        return 3;
    }
    code
}

/// `fleetsim validate`: every file's problems, or a one-line summary of its plan.
pub fn validate(files: &[PathBuf]) -> u8 {
    let mut bad = false;
    for file in files {
        match scenario::parse_file(file) {
            Ok(plan) => println!("{}: ok ({})", file.display(), summary(&plan)),
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad { 2 } else { 0 }
}

/// `50 agents, profile kanade, 3 steps, 2 threshold checks; variants a, b x repeat 2 = 4 runs`
fn summary(plan: &Plan) -> String {
    let checks = match plan.thresholds.checks.len() {
        0 => String::new(),
        n => format!(", {n} threshold checks"),
    };
    let variants = if plan.variants.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        format!(
            "; variants {} x repeat {} = {} runs",
            names.join(", "),
            plan.repeat,
            names.len() * plan.repeat
        )
    };
    format!(
        "{} agents, profile {}, {} steps{checks}{variants}",
        plan.fleet.agents,
        plan.profile.name,
        plan.steps.len()
    )
}

/// `fleetsim report`: rewrites a finished run directory's report.
pub fn report(dir: &Path) -> u8 {
    match fleetsim::report::write_report(dir) {
        Ok(path) => {
            println!("{}", path.display());
            0
        }
        Err(e) => {
            eprintln!(
                "error: {e}\nfleetsim report needs a finished run directory (one with manifest.json)"
            );
            2
        }
    }
}

/// `fleetsim proxy`: serves until `quit`, Ctrl-C or (for a child) stdin closing.
/// Exit 0 when it stopped, 2 on flags that cannot shape a link, 3 when it could not bind.
pub fn proxy(args: ProxyArgs) -> u8 {
    use std::io::Write;
    let link = match args.link() {
        Ok(link) => link,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let options = fleetsim::proxy::process::ServeOptions {
        link,
        listen: args.listen,
        upstream: args.upstream,
        control: args.control,
        exit_on_stdin_close: args.exit_on_stdin_close,
    };
    let (runtime, ctrl_c) = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 3;
        }
    };
    let ready = |ready: &fleetsim::proxy::process::Ready| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", ready.line());
        let _ = stdout.flush();
    };
    let served = runtime.block_on(fleetsim::proxy::process::serve(options, ready, ctrl_c));
    // Connections still open are simply closed with the process.
    runtime.shutdown_background();
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            3
        }
    }
}
