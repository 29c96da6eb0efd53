//! Catalogue lines: `{"product_id", "title", "description", "images": [...], ...metadata}`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// One valid catalogue line.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// 1-based line number in the catalogue file.
    pub line: usize,
    pub product_id: String,
    pub title: String,
    pub description: String,
    /// Resolved image paths (relative ones against the catalogue's directory).
    pub images: Vec<PathBuf>,
    pub metadata: Map<String, Value>,
}

impl CatalogEntry {
    /// The page-side text: title and description.
    pub fn text(&self) -> String {
        match (self.title.trim(), self.description.trim()) {
            ("", d) => d.to_string(),
            (t, "") => t.to_string(),
            (t, d) => format!("{t}. {d}"),
        }
    }
}

/// A catalogue file's non-blank lines, numbered from 1. A line that is not UTF-8 is an `Err` with the
/// reason, so it is skipped and reported like any bad line instead of failing the whole file; a UTF-8
/// byte-order mark before the first line is ignored.
pub fn numbered_lines(bytes: &[u8]) -> Vec<(usize, Result<&str, String>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, l)| {
            let text = std::str::from_utf8(l.strip_suffix(b"\r").unwrap_or(l))
                .map_err(|e| format!("not UTF-8 text ({e}): save the catalogue as UTF-8"));
            (i + 1, text)
        })
        .collect()
}

/// Parses one line; the error is the reason the line is skipped.
pub fn parse_line(line: &str, number: usize, base: &Path) -> Result<CatalogEntry, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut obj) = value else { return Err("not a JSON object".into()) };
    let product_id = match obj.remove("product_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("\"product_id\" must be a non-empty string".into()),
        None => return Err("missing \"product_id\"".into()),
    };
    let mut text_field = |key: &str| match obj.remove(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    };
    let title = text_field("title")?;
    let description = text_field("description")?;
    let images = match obj.remove("images") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(base.join(s)),
                _ => Err("\"images\" entries must be non-empty strings".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err("\"images\" is empty".into()),
        Some(_) => return Err("\"images\" must be an array of paths".into()),
        None => return Err("missing \"images\"".into()),
    };
    Ok(CatalogEntry { line: number, product_id, title, description, images, metadata: obj })
}
