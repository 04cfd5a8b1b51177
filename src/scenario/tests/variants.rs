//! `variants.rs`: `[[variants]]` and `repeat`. Invalid variants:
//! `tests/scenarios/invalid/variants`.

use std::time::Duration;

use super::*;

const AB: &str = r#"name = "ab"
repeat = 3

[fleet]
agents = 5
splay_placement_unused = 1

[[variants]]
name = "off"

[[variants]]
name = "on"
[variants.fleet]
splay = "5s"
profile = "legacy"

[[steps]]
kind = "start"
"#;

#[test]
fn variants_override_fleet_settings_and_keep_the_rest() {
    let text = AB.replace("splay_placement_unused = 1\n", "groups = 2\n");
    let ab = plan(&text);
    assert_eq!(ab.repeat, 3);
    let names: Vec<&str> = ab.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["off", "on"]);
    let (off, on) = (&ab.variants[0].plan, &ab.variants[1].plan);
    assert_eq!(off.fleet.splay, None);
    assert_eq!(off.profile.name, "kanade");
    assert_eq!(
        on.fleet.splay.as_ref().map(|s| s.window),
        Some(Duration::from_secs(5))
    );
    assert_eq!(on.profile.name, "legacy");
    // Not overridden: inherited from [fleet].
    assert_eq!((off.fleet.agents, on.fleet.groups), (5, 2));
    assert!(on.variants.is_empty() && on.steps.len() == 1);
}

#[test]
fn repeat_without_variants_repeats_the_file_as_one_variant() {
    let text = format!("repeat = 3\n{MINIMAL}");
    let repeated = plan(&text);
    assert_eq!(repeated.repeat, 3);
    assert_eq!(repeated.variants.len(), 1);
    assert_eq!(repeated.variants[0].name, "default");
    assert!(plan(MINIMAL).variants.is_empty());
}
