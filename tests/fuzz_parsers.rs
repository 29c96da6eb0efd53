//! Property tests of the two parsers that read operators' files: catalogue JSONL lines and the service's
//! TOML config. Arbitrary and mutated input never panics; a bad catalogue line is reported with its line
//! number (never silently dropped, never costing the other lines); a bad config names its key or line.

use std::path::Path;

use livesku::gallery::catalog::parse_line;
use livesku::service::ServiceConfig;
use livesku::train::data::read_catalog;
use proptest::prelude::*;

const GOOD_LINE: &str = r#"{"product_id": "sku-1", "title": "Red cup", "description": "Porcelain, 90 ml.", "images": ["cup.png", "cup2.jpg"], "category": "kitchen", "price": 12.5}"#;

/// A few edits of a string's bytes: deletions, insertions, duplicated or swapped ranges.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<u8>(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>());
    prop::collection::vec(edit, 1..8).prop_map(move |edits| {
        let mut b = base.as_bytes().to_vec();
        for (op, at, to, byte) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let (i, j) = (at.index(b.len()), to.index(b.len()));
            let (lo, hi) = (i.min(j), i.max(j));
            match op % 5 {
                0 => drop(b.drain(lo..hi)),
                1 => b.insert(i, byte),
                2 => b[i] = byte,
                3 => {
                    let dup = b[lo..hi].to_vec();
                    b.splice(i..i, dup);
                }
                _ => b.swap(i, j),
            }
        }
        b
    })
}

/// JSON values of any shape, for a catalogue field.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(Into::into),
        any::<i64>().prop_map(Into::into),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Into::into),
        ".{0,12}".prop_map(Into::into),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn write_catalog(lines: &[Vec<u8>]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.jsonl");
    std::fs::write(&path, lines.join(&b'\n')).unwrap();
    (dir, path)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_catalogue_line_parses_or_says_why(line in ".{0,200}") {
        if let Err(reason) = parse_line(&line, 1, Path::new("/c")) {
            prop_assert!(!reason.is_empty());
        }
    }

    #[test]
    fn a_field_of_any_type_is_accepted_or_named(
        key in prop::sample::select(vec!["product_id", "title", "description", "images"]),
        value in json_value(),
    ) {
        let mut obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GOOD_LINE).unwrap();
        obj.insert(key.to_string(), value);
        let line = serde_json::Value::Object(obj).to_string();
        if let Err(reason) = parse_line(&line, 1, Path::new("/c")) {
            prop_assert!(reason.contains(key), "the error does not name \"{}\": {}", key, reason);
        }
    }

    /// Every non-blank line of a file of good and mutated lines (invalid UTF-8 included) is either an
    /// entry or a skipped line with its own number and a reason; the good lines all survive.
    #[test]
    fn no_catalogue_line_is_silently_dropped(lines in prop::collection::vec(prop_oneof![
        Just(None),
        mutated(GOOD_LINE).prop_map(Some),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ], 1..12)) {
        // Each generated line is one line of the file.
        let lines: Vec<Option<Vec<u8>>> = lines.into_iter()
            .map(|l| l.map(|l| l.into_iter().map(|b| if b == b'\n' { b' ' } else { b }).collect()))
            .collect();
        // `None` is a good line with its own id.
        let lines: Vec<Vec<u8>> = lines.into_iter().enumerate().map(|(i, l)| {
            l.unwrap_or_else(|| GOOD_LINE.replace("sku-1", &format!("good-{i}")).into_bytes())
        }).collect();
        let (_dir, path) = write_catalog(&lines);
        let parsed = read_catalog(&path).unwrap();
        // Blank lines are the only ones left out.
        let expected: Vec<usize> =
            (1..=lines.len()).filter(|n| !lines[n - 1].trim_ascii().is_empty()).collect();
        let entries = parsed.items.iter().map(|e| e.line);
        let mut seen: Vec<usize> = entries.chain(parsed.skipped.iter().map(|s| s.line)).collect();
        seen.sort();
        prop_assert_eq!(&seen, &expected);
        prop_assert!(parsed.skipped.iter().all(|s| !s.reason.is_empty()));
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with(br#"{"product_id": "good-"#) {
                let kept = parsed.items.iter().any(|e| e.line == i + 1);
                prop_assert!(kept, "good line {} lost: {:?}", i + 1, parsed.skipped);
            }
        }
    }
}

const EXAMPLE: &str = include_str!("../config/livesku.example.toml");

/// `key = value` lines of the example config: (0-based line, full key `section.key`).
fn settings() -> Vec<(usize, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, line) in EXAMPLE.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim_matches(['[', ']']).to_string();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            out.push((i, if section.is_empty() { key.to_string() } else { format!("{section}.{key}") }));
        }
    }
    out
}

fn with_line(i: usize, replacement: &str) -> String {
    EXAMPLE
        .lines()
        .enumerate()
        .map(|(j, l)| if j == i { replacement } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error's key names `key`: it is that key, or one of the tables around it.
fn names(error_key: &str, key: &str) -> bool {
    key == error_key || key.starts_with(&format!("{error_key}."))
}

/// TOML values of several types, sensible and not.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_nan() {
            "nan".into()
        } else if f.is_infinite() {
            (if f > 0.0 { "inf" } else { "-inf" }).into()
        } else {
            format!("{f:?}")
        }),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,16}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            "\"10s\"",
            "\"-1s\"",
            "\"0ms\"",
            "\"1000000h\"",
            "[]",
            "[1, 2]",
            "{}",
            "0",
            "-1",
            "1e309"
        ])
        .prop_map(str::to_string),
    ]
}

#[test]
fn the_example_config_is_valid() {
    ServiceConfig::parse(EXAMPLE).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_a_config_or_an_error(text in "(?s).{0,300}") {
        if let Err(e) = ServiceConfig::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.problem.is_empty(), "{e}");
        }
    }

    #[test]
    fn a_mutated_example_config_does_not_panic(bytes in mutated(EXAMPLE)) {
        if let Ok(text) = String::from_utf8(bytes) && let Err(e) = ServiceConfig::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.problem.is_empty(), "{e}");
        }
    }

    /// One setting set to a value of any type: accepted, or refused naming that key or its line.
    #[test]
    fn a_bad_value_names_its_key_or_line(setting in prop::sample::select(settings()), value in toml_value()) {
        let (i, key) = setting;
        let name = key.rsplit('.').next().unwrap();
        let text = with_line(i, &format!("{name} = {value}"));
        if let Err(e) = ServiceConfig::parse(&text) {
            let section = key.rsplit_once('.').map_or("", |(s, _)| s);
            // Its key (or a flattened table around it), or (a rule between two settings) another key of
            // its table.
            let sibling = !section.is_empty() && e.key.starts_with(&format!("{section}."));
            let names_it = names(&e.key, &key) || sibling;
            prop_assert!(names_it, "{} = {}: {}", key, value, e);
        }
    }

    /// An unknown key anywhere is refused with its own line and name.
    #[test]
    fn an_unknown_key_names_its_line(setting in prop::sample::select(settings()), name in "zz_[a-z]{1,8}") {
        let (i, key) = setting;
        let text = with_line(i, &format!("{name} = 1"));
        let e = ServiceConfig::parse(&text).expect_err("an unknown key is refused");
        // Its own path, or an enclosing table where that is flattened (serde cannot see through one).
        let full = key.rsplit_once('.').map_or_else(|| name.clone(), |(t, _)| format!("{t}.{name}"));
        prop_assert!(names(&e.key, &full), "replacing {}: {}", key, e);
        prop_assert!(e.problem.contains(&name), "{}", e);
    }
}
