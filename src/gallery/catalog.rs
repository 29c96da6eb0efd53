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
