//! `gallery build` on a catalogue with bad lines: each is reported with its line number and reason, the
//! rest still builds. Uses the assembled default model.

mod support;

use livesku::encode::Encoder;
use livesku::gallery::{Gallery, add_catalog};

#[test]
fn bad_catalogue_lines_are_reported_and_skipped() {
    let cfg = support::encoder_config();
    let mut enc = Encoder::open(&cfg).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("img")).unwrap();
    support::picture(1, 320, 240).save(d.join("img/a.png")).unwrap();
    support::picture(2, 200, 300).save(d.join("img/b.jpg")).unwrap();
    std::fs::write(d.join("img/broken.jpg"), b"this is not a jpeg").unwrap();
    let abs_b = d.join("img/b.jpg");
    let lines = [
        r#"{"product_id": "a", "title": "Apple juice", "description": "1 l", "images": ["img/a.png"], "price": 2.5}"#.to_string(),
        r#"{"product_id": "bad-json", "images": ["img/a.png"]"#.to_string(),
        r#"{"product_id": "no-image", "title": "x", "images": ["img/missing.png"]}"#.to_string(),
        r#"{"product_id": "broken", "title": "x", "images": ["img/broken.jpg"]}"#.to_string(),
        r#"{"title": "no id", "images": ["img/a.png"]}"#.to_string(),
        String::new(),
        format!(r#"{{"product_id": "b", "title": "Oat milk", "images": ["{}", "img/a.png"]}}"#, abs_b.display()),
        r#"{"product_id": "no-images", "title": "x", "images": []}"#.to_string(),
    ];
    std::fs::write(d.join("catalog.jsonl"), lines.join("\n")).unwrap();
    let mut g = Gallery::create(&d.join("gallery"), &enc.manifest).unwrap();
    let report = add_catalog(&d.join("catalog.jsonl"), &mut g, &mut enc, false).unwrap();
    assert_eq!(report.added, 2);
    let skipped: Vec<(usize, &str)> = report.skipped.iter().map(|s| (s.line, s.reason.as_str())).collect();
    assert_eq!(skipped.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 3, 4, 5, 8], "{skipped:?}");
    assert!(skipped[0].1.contains("invalid JSON"), "{skipped:?}");
    assert!(skipped[1].1.contains("image not found") && skipped[1].1.contains("missing.png"), "{skipped:?}");
    assert!(skipped[2].1.contains("unreadable image") && skipped[2].1.contains("broken.jpg"), "{skipped:?}");
    assert!(skipped[3].1.contains("product_id"), "{skipped:?}");
    assert!(skipped[4].1.contains("images"), "{skipped:?}");

    let g = Gallery::open(&d.join("gallery"), Some(&enc.manifest)).unwrap();
    assert_eq!(g.len(), 2);
    let a = g.row_of("a").unwrap();
    assert_eq!(g.product(a).title, "Apple juice");
    assert_eq!(g.product(a).metadata["price"], serde_json::json!(2.5));
    assert!(g.row_of("b").is_some());
}

/// The command line: bad lines on stderr with their numbers, exit status 3, and `eval` ending with its
/// JSON line.
#[test]
fn gallery_build_and_eval_commands() {
    support::encoder_config();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        support::picture(10 + i as u32, 256, 256).save(d.join(format!("{name}.png"))).unwrap();
    }
    let catalog = [
        r#"{"product_id": "a", "title": "Red box", "images": ["a.png"]}"#,
        r#"{"product_id": "b", "title": "Blue tin", "images": ["b.png"]}"#,
        r#"not json"#,
        r#"{"product_id": "c", "title": "Green bag", "images": ["c.png"]}"#,
    ];
    std::fs::write(d.join("catalog.jsonl"), catalog.join("\n")).unwrap();
    let bin = env!("CARGO_BIN_EXE_livesku");
    let out = std::process::Command::new(bin)
        .args(["gallery", "build", "--threads", "2", "--catalog"])
        .arg(d.join("catalog.jsonl"))
        .arg("--out")
        .arg(d.join("g"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("catalog.jsonl:3: skipped: invalid JSON"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!((summary["added"].as_u64(), summary["skipped"].as_u64()), (Some(3), Some(1)));

    let queries = [
        r#"{"images": ["a.png"], "product_id": "a"}"#,
        r#"{"images": ["b.png", "b.png"], "text": "blue tin", "product_id": "b"}"#,
        r#"{"images": ["c.png"], "product_id": "c"}"#,
    ];
    std::fs::write(d.join("queries.jsonl"), queries.join("\n")).unwrap();
    let out = std::process::Command::new(bin)
        .args(["eval", "--threads", "2", "--k", "2", "--gallery"])
        .arg(d.join("g"))
        .arg("--queries")
        .arg(d.join("queries.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last, serde_json::json!({"n": 3, "r1": 1.0, "r5": 1.0}), "{stdout}");
}
