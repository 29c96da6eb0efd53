//! Training inputs: the catalogue (page side) and example files (live side, `eval`'s query format
//! `{"images": [...], "text": optional, "product_id": ...}`). Bad lines are reported with their line
//! number and reason, and left out; the rest still trains.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::gallery::Skipped;
use crate::gallery::catalog::{self, CatalogEntry, parse_line};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// One labelled live-domain example (several images = several views of the same product).
#[derive(Debug, Clone)]
pub struct Example {
    pub line: usize,
    /// Index into the catalogue's products.
    pub product: usize,
    pub images: Vec<PathBuf>,
}

/// What a file yielded: its good entries and its skipped lines.
#[derive(Debug)]
pub struct Parsed<T> {
    pub path: PathBuf,
    pub items: Vec<T>,
    pub skipped: Vec<Skipped>,
}

impl<T> Parsed<T> {
    /// One `path:line: skipped: reason` per bad line, for the report and stderr.
    pub fn skip_lines(&self) -> Vec<String> {
        self.skipped.iter().map(|s| format!("{}:{}: skipped: {}", self.path.display(), s.line, s.reason)).collect()
    }
}

fn numbered_lines(path: &Path) -> Result<Vec<(usize, Result<String, String>)>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    Ok(catalog::numbered_lines(&bytes).into_iter().map(|(n, l)| (n, l.map(str::to_string))).collect())
}

/// The catalogue, in file order; a product id seen twice keeps its first line (the second is reported).
pub fn read_catalog(path: &Path) -> Result<Parsed<CatalogEntry>, DataError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Parsed { path: path.to_path_buf(), items: Vec::new(), skipped: Vec::new() };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, text) in numbered_lines(path)? {
        match text.and_then(|text| parse_line(&text, line, base)) {
            Ok(e) => match seen.get(&e.product_id) {
                Some(first) => out.skipped.push(Skipped { line, reason: format!("product {:?} already on line {first}", e.product_id) }),
                None => {
                    seen.insert(e.product_id.clone(), line);
                    out.items.push(e);
                }
            },
            Err(reason) => out.skipped.push(Skipped { line, reason }),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleLine {
    images: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)] // part of the format (eval's queries); the visual head does not use it
    text: Option<String>,
    product_id: serde_json::Value,
}

/// Example (or validation query) lines whose product is in `products` (id -> index).
pub fn read_examples(path: &Path, products: &HashMap<String, usize>) -> Result<Parsed<Example>, DataError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Parsed { path: path.to_path_buf(), items: Vec::new(), skipped: Vec::new() };
    for (line, text) in numbered_lines(path)? {
        match text.and_then(|text| parse_example(&text, base, products)) {
            Ok((product, images)) => out.items.push(Example { line, product, images }),
            Err(reason) => out.skipped.push(Skipped { line, reason }),
        }
    }
    Ok(out)
}

fn parse_example(text: &str, base: &Path, products: &HashMap<String, usize>) -> Result<(usize, Vec<PathBuf>), String> {
    let e: ExampleLine = serde_json::from_str(text).map_err(|e| format!("invalid example: {e}"))?;
    let id = match e.product_id {
        serde_json::Value::String(s) if !s.trim().is_empty() => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("\"product_id\" must be a non-empty string".into()),
    };
    let product = *products
        .get(&id)
        .ok_or_else(|| format!("product {id:?} is not in the catalogue (add it there, or drop the example)"))?;
    if e.images.is_empty() || e.images.iter().any(|p| p.is_empty()) {
        return Err("\"images\" must be a non-empty array of paths".into());
    }
    Ok((product, e.images.iter().map(|p| base.join(p)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_example_lines_are_reported_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ex.jsonl");
        std::fs::write(
            &path,
            "{\"images\": [\"a.jpg\"], \"product_id\": \"p1\"}\n\n{\"images\": [\"b.jpg\"], \"product_id\": \"nope\"}\nnot json\n{\"images\": [], \"product_id\": \"p1\"}\n",
        )
        .unwrap();
        let products = HashMap::from([("p1".to_string(), 0)]);
        let parsed = read_examples(&path, &products).unwrap();
        assert_eq!(parsed.items.len(), 1);
        assert_eq!(parsed.items[0].images, vec![dir.path().join("a.jpg")]);
        let lines: Vec<usize> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(parsed.skipped[0].reason.contains("not in the catalogue"), "{:?}", parsed.skipped[0]);
    }
}
