//! Numbers and settings as the page shows them: latencies with their unit (`418.8 ms`,
//! `8.12 s`, as the A/B verdicts write them), ratios as `×0.52`, counts with thousands
//! separators, the splay in words. The CSVs keep the raw values; only the page rounds.

use serde_json::Value;

/// A latency in ms as text with its unit: `0.8 ms`, `418.8 ms`, `8.12 s`.
pub fn ms(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// A difference in ms with its sign: `−418.8 ms`, `+1.20 s` (a true minus sign, so a
/// column of them lines up and does not read as a dash).
pub fn signed_ms(v: f64) -> String {
    if v < 0.0 {
        format!("\u{2212}{}", ms(-v))
    } else {
        format!("+{}", ms(v))
    }
}

/// A ratio to the first variant: `×0.52`.
pub fn ratio(v: f64) -> String {
    format!("×{v:.2}")
}

/// A whole count with thousands separators: `1,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A cell of a table shown as written, except a number with more than three decimals
/// (floating-point noise such as `-418.81600000000003`), which is rounded to three, as
/// every CSV fleetsim writes itself has them.
pub fn cell(text: &str) -> String {
    let decimals = text.split_once('.').map_or(0, |(_, frac)| {
        frac.chars().take_while(char::is_ascii_digit).count()
    });
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && decimals > 3 && !text.contains(['e', 'E']) => {
            format!("{v:.3}")
        }
        _ => text.to_string(),
    }
}

/// The splay of a plan's `fleet.splay` (`{"window":"5s","placement":...,"on_start":...}`,
/// or null) in words: `off`, `5s in the reconnect delay, on start too`.
pub fn splay(value: Option<&Value>) -> String {
    let Some(splay) = value.filter(|v| v.is_object()) else {
        return "off".to_string();
    };
    let window = splay.get("window").and_then(Value::as_str).unwrap_or("?");
    let placement = match splay.get("placement").and_then(Value::as_str) {
        Some("before_gets") => "before the re-sync's gets".to_string(),
        Some("reopen_watches") => "before the watches are reopened".to_string(),
        Some("reconnect_delay") => "in the reconnect delay".to_string(),
        Some(other) => format!("placement {other}"),
        None => "placement unknown".to_string(),
    };
    let on_start = if splay.get("on_start").and_then(Value::as_bool) == Some(true) {
        ", on start too"
    } else {
        ""
    };
    format!("{window} {placement}{on_start}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_ratios_and_counts_read_as_words() {
        assert_eq!(ms(0.81234), "0.8 ms");
        assert_eq!(ms(418.81600000000003), "418.8 ms");
        assert_eq!(ms(8123.0), "8.12 s");
        assert_eq!(signed_ms(-418.81600000000003), "\u{2212}418.8 ms");
        assert_eq!(signed_ms(1200.0), "+1.20 s");
        assert_eq!(ratio(0.5234), "×0.52");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn only_long_decimals_are_rounded() {
        assert_eq!(cell("-418.81600000000003"), "-418.816");
        assert_eq!(cell("2.5"), "2.5");
        assert_eq!(cell("1.000"), "1.000");
        assert_eq!(cell("300"), "300");
        assert_eq!(cell("1:start"), "1:start");
        assert_eq!(cell("v1.2.3456"), "v1.2.3456");
        assert_eq!(cell("1.5e-7"), "1.5e-7");
    }

    #[test]
    fn the_splay_in_words() {
        let splay =
            serde_json::json!({"on_start":false,"placement":"reconnect_delay","window":"5s"});
        assert_eq!(super::splay(Some(&splay)), "5s in the reconnect delay");
        let splay = serde_json::json!({"on_start":true,"placement":"before_gets","window":"10s"});
        assert_eq!(
            super::splay(Some(&splay)),
            "10s before the re-sync's gets, on start too"
        );
        assert_eq!(super::splay(Some(&Value::Null)), "off");
        assert_eq!(super::splay(None), "off");
    }
}
