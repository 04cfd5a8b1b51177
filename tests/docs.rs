//! The documentation stays true to the code: every TOML example in `README.md`,
//! `results/README.md` and `docs/*.md` is read by the scenario parser `fleetsim validate` and `fleetsim run` use
//! ([`fleetsim::scenario::parse_str`]), every relative link resolves (to a file, and to a
//! heading of it when it names one), every page of `docs/` is reachable from its index,
//! and every repository path the pages name (a script, a scenario, a test, a source file,
//! a benchmark's results file) exists, so a figure keeps pointing at what produced it.
//!
//! A ```` ```toml ```` block must be a whole scenario. A ```` ```toml fragment ```` block
//! (a `[thresholds]` table, `[[variants]]`) is checked inside a minimal scenario: its
//! tables are merged over [`MINIMAL`], the fragment winning, and the result parsed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a fragment is completed with: a fleet and a start, as every scenario needs.
const MINIMAL: &str = r#"
name = "docs-fragment"

[fleet]
agents = 10

[[steps]]
kind = "start"

[[steps]]
kind = "wait_ready"
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md`, `results/README.md` (the files of a run directory) and every
/// `docs/*.md`, as (path relative to the root, text).
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![
        PathBuf::from("README.md"),
        PathBuf::from("results/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("file name")))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root().join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// A fenced code block: its info string, the line of its opening fence, its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: i + 1,
                    text: String::new(),
                })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    out
}

/// `over` merged into `base`: tables recursively, any other value replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Why the scenario of a block is rejected, if it is.
fn check_block(origin: &str, block: &Block) -> Result<(), String> {
    let text = match block.info.as_str() {
        "toml" => block.text.clone(),
        "toml fragment" => {
            let fragment: toml::Table = block.text.parse().map_err(|e| format!("not TOML: {e}"))?;
            let mut scenario: toml::Table = MINIMAL.parse().expect("minimal scenario");
            merge(&mut scenario, fragment);
            toml::to_string(&scenario).map_err(|e| e.to_string())?
        }
        other => return Err(format!("unknown TOML block kind {other:?}")),
    };
    fleetsim::scenario::parse_str(&text, origin)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn every_toml_example_is_a_valid_scenario() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, text) in pages() {
        for block in blocks(&text).iter().filter(|b| b.info.starts_with("toml")) {
            let origin = format!("{}:{}", path.display(), block.line);
            if let Err(e) = check_block(&origin, block) {
                problems.push(format!("{origin} ({}): {e}", block.info));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scenario example, the README's, the variants, thresholds and tolerances.
    assert!(checked >= 5, "only {checked} TOML examples found");
}

#[test]
fn the_checker_rejects_what_the_parser_rejects() {
    let block = |info: &str, text: &str| Block {
        info: info.into(),
        line: 1,
        text: text.into(),
    };
    let whole = "name = \"x\"\n[fleet]\nagents = 10\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(check_block("x.md:1", &block("toml", whole)), Ok(()));
    let e = check_block("x.md:1", &block("toml", "[fleet]\nagnets = 10\n")).expect_err("typo");
    assert!(e.contains("x.md:1") && e.contains("agnets"), "{e}");
    // A fragment is completed, and then checked as strictly.
    let fragment = "[thresholds]\nchecks = [\"ready.p99 < 15s\"]\n";
    assert_eq!(
        check_block("x.md:1", &block("toml fragment", fragment)),
        Ok(())
    );
    let e = check_block(
        "x.md:1",
        &block(
            "toml fragment",
            "[thresholds]\nchecks = [\"ready.p99 < 15\"]\n",
        ),
    )
    .expect_err("a latency without a unit");
    assert!(e.contains("thresholds"), "{e}");
    let e = check_block("x.md:1", &block("toml fragment", "[fleet\n")).expect_err("syntax");
    assert!(e.contains("not TOML"), "{e}");
    assert!(check_block("x.md:1", &block("tomll", whole)).is_err());
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            !fenced
        })
        .filter_map(|line| {
            let text = line.trim_start_matches('#');
            (line.starts_with('#') && text.starts_with(' ')).then(|| anchor(text))
        })
        .collect()
}

/// The targets of a page's inline links `[text](target)` outside code blocks and code
/// spans.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in pages() {
        let dir = path.parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            let full = root().join(&target);
            if !full.exists() {
                problems.push(format!(
                    "{}: {link}: no {}",
                    path.display(),
                    target.display()
                ));
                continue;
            }
            if !fragment.is_empty() {
                let target_text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&target_text).contains(fragment) {
                    problems.push(format!(
                        "{}: {link}: no heading #{fragment} in {}",
                        path.display(),
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} links checked");
}

#[test]
fn the_readme_links_every_docs_page_through_the_index() {
    let pages = pages();
    let text_of = |name: &str| {
        &pages
            .iter()
            .find(|(p, _)| p == Path::new(name))
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    let readme_links = links(text_of("README.md"));
    assert!(
        readme_links.iter().any(|l| l == "docs/README.md"),
        "the README links the docs index"
    );
    let index = links(text_of("docs/README.md"));
    for (path, _) in &pages {
        let Ok(page) = path.strip_prefix("docs") else {
            continue;
        };
        let page = page.display().to_string();
        if page == "README.md" {
            continue;
        }
        assert!(index.contains(&page), "docs/README.md does not link {page}");
        assert!(
            readme_links.iter().any(|l| *l == format!("docs/{page}")),
            "README.md does not link docs/{page}"
        );
    }
}

/// Repository paths a page names in code spans: `scripts/bench.sh`, `tests/sweep.rs`,
/// `results/bench/core.csv`; a leading `./` and trailing arguments are dropped.
fn named_paths(markdown: &str) -> Vec<String> {
    const ROOTS: [&str; 8] = [
        "scripts/",
        "scenarios/",
        "tests/",
        "src/",
        "examples/",
        "docker/",
        "results/bench/",
        "results/baseline/",
    ];
    let mut out = Vec::new();
    for (i, span) in markdown.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        for word in span.split_whitespace() {
            let word = word.trim_start_matches("./");
            let word = word.trim_end_matches([',', ';', ':', ')']);
            if ROOTS.iter().any(|r| word.starts_with(r))
                && !word.contains(['*', '<', '{', '$'])
                && word.len() > word.find('/').unwrap_or(0) + 1
            {
                out.push(word.to_string());
            }
        }
    }
    out
}

#[test]
fn every_path_the_pages_name_exists() {
    let mut problems = Vec::new();
    let mut named = 0;
    for (path, text) in pages() {
        for file in named_paths(&text) {
            named += 1;
            // `examples/bare_agents`: the example built from `examples/bare_agents.rs`.
            let example =
                file.starts_with("examples/") && root().join(format!("{file}.rs")).is_file();
            if !root().join(&file).exists() && !example {
                problems.push(format!("{}: `{file}` does not exist", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(named >= 20, "only {named} paths named");
}

#[test]
fn every_benchmark_figure_names_its_script_and_file() {
    let text = std::fs::read_to_string(root().join("docs/benchmarks.md")).expect("benchmarks");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| `./scripts/"))
        .collect();
    assert!(rows.len() >= 4, "benchmark rows: {rows:?}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let script = cells[1]
            .trim_matches('`')
            .split_whitespace()
            .next()
            .expect("script");
        let file = cells[2].trim_matches('`');
        assert!(root().join(script).is_file(), "{script} of {row}");
        assert!(
            root().join("results/bench").join(file).is_file(),
            "results/bench/{file} of {row}"
        );
    }
}
