//! Embeddings as text: little-endian f32, base64. Exact, unlike decimal floats; used where a vector
//! travels in JSON (the cluster's catalogue records, the gallery's `background.json`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub fn encode(v: &[f32]) -> String {
    B64.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

pub fn decode(text: &str) -> Result<Vec<f32>, String> {
    let bytes = B64.decode(text).map_err(|e| e.to_string())?;
    if bytes.len() % 4 != 0 {
        return Err("length is not a multiple of 4 bytes".into());
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_exactly_and_refuses_partial_floats() {
        let v = vec![0.25f32, -1.5, 3.0e-7, f32::MIN_POSITIVE];
        assert_eq!(super::decode(&super::encode(&v)).unwrap(), v);
        assert!(super::decode("AQID").unwrap_err().contains("multiple of 4"));
        assert!(super::decode("not base64!").is_err());
    }
}
