//! Start-up costs with the real default model: the empty-set references' vectors are cached next to the
//! gallery (used only when made by the same model from the same pictures), and the text tower's session
//! can wait until a text needs it.

mod support;

use image::RgbImage;
use livesku::encode::{Encoder, Side};
use livesku::matcher::background::CACHE_FILE;
use livesku::matcher::Background;

#[test]
fn background_vectors_are_cached_per_model_and_pictures() {
    let mut enc = Encoder::open(&support::encoder_config()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join(CACHE_FILE);

    let fresh = Background::load_or_build(&mut enc, &[], dir).unwrap();
    assert_eq!(fresh.vectors.len(), 15);
    assert!(fresh.vectors.iter().all(|v| v.len() == enc.dim()));
    assert!(path.exists(), "the first build writes the cache");
    let again = Background::load_or_build(&mut enc, &[], dir).unwrap();
    assert_eq!(again.vectors, fresh.vectors, "the cache is exact");

    // What the cache holds is what a start uses: a cache whose rows were swapped gives the swapped rows.
    let mut cache: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let rows = cache["vectors"].as_array_mut().unwrap();
    rows.swap(0, 1);
    std::fs::write(&path, cache.to_string()).unwrap();
    let swapped = Background::load_or_build(&mut enc, &[], dir).unwrap();
    assert_eq!(swapped.vectors[0], fresh.vectors[1]);
    assert_eq!(swapped.vectors[1], fresh.vectors[0]);

    // Another model's cache is not used (and is replaced).
    cache["model_version"] = serde_json::json!("another-model");
    std::fs::write(&path, cache.to_string()).unwrap();
    let other = Background::load_or_build(&mut enc, &[], dir).unwrap();
    assert_eq!(other.vectors, fresh.vectors);
    let rewritten: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rewritten["model_version"], serde_json::json!(enc.manifest.version));

    // A damaged cache is embedded again, not trusted.
    for damage in [b"{not json".to_vec(), cache.to_string().replace("\"dim\":", "\"dim\":1").into_bytes()] {
        std::fs::write(&path, damage).unwrap();
        assert_eq!(Background::load_or_build(&mut enc, &[], dir).unwrap().vectors, fresh.vectors);
    }

    // A snapshot of the real set changes the references: embedded again, one more vector.
    let snapshot = dir.join("studio.png");
    support::picture(5, 320, 180).save(&snapshot).unwrap();
    let with_studio = Background::load_or_build(&mut enc, std::slice::from_ref(&snapshot), dir).unwrap();
    assert_eq!(with_studio.vectors.len(), 16);
    assert_eq!(with_studio.vectors[..15], fresh.vectors[..]);
    // Same path, other pixels: the key is the pictures, not their names.
    support::picture(6, 320, 180).save(&snapshot).unwrap();
    let changed = Background::load_or_build(&mut enc, std::slice::from_ref(&snapshot), dir).unwrap();
    assert_ne!(changed.vectors[15], with_studio.vectors[15]);
}

#[test]
fn text_tower_waits_for_the_first_text() {
    let cfg = support::encoder_config();
    let mut eager = Encoder::open(&cfg).unwrap();
    let mut lazy = Encoder::open_deferring_text(&cfg).unwrap();
    assert!(eager.text_is_open());
    assert!(!lazy.text_is_open());

    let img: RgbImage = support::picture(3, 224, 224);
    let clip = [&img];
    let clips: [&[&RgbImage]; 1] = [&clip];
    let no_text = lazy.encode(&clips, &[None], Side::Query).unwrap();
    assert!(!lazy.text_is_open(), "no text, no text session");
    assert_eq!(no_text, eager.encode(&clips, &[None], Side::Query).unwrap());

    let texts = [Some("Oat milk, 1 litre")];
    let with_text = lazy.encode(&clips, &texts, Side::Query).unwrap();
    assert!(lazy.text_is_open());
    let expected = eager.encode(&clips, &texts, Side::Query).unwrap();
    assert!(support::max_abs_diff(&with_text[0], &expected[0]) < 1e-6);
    assert_ne!(with_text, no_text, "the text counts once the tower is open");
}
