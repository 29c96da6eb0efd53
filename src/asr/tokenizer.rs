//! Moonshine's `tokenizer.bin`: 32000 entries, each `[u8 length][bytes]`, in id order. Ids 3..=258 are the
//! 256 raw byte tokens, `▁` (U+2581) marks a word start; ids 0..=2 are `<unk>`, `<s>`, `</s>`.

use std::path::Path;

use super::AsrError;

const SPACE_MARK: &str = "\u{2581}";
/// `<unk>`, `<s>` (BOS) and `</s>` (EOS) are never printed.
const SPECIALS: u32 = 3;

pub struct Tokenizer {
    entries: Vec<Vec<u8>>,
}

impl Tokenizer {
    pub fn open(path: &Path) -> Result<Self, AsrError> {
        let data = std::fs::read(path)
            .map_err(|e| AsrError::Model(format!("{}: {e} (run scripts/setup.sh)", path.display())))?;
        Self::parse(&data).map_err(|reason| AsrError::Model(format!("{}: {reason}", path.display())))
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(32000);
        let mut rest = data;
        while let Some((&len, tail)) = rest.split_first() {
            let len = len as usize;
            if tail.len() < len {
                return Err(format!("entry {} is truncated", entries.len()));
            }
            entries.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        if entries.len() <= SPECIALS as usize {
            return Err(format!("only {} entries", entries.len()));
        }
        Ok(Tokenizer { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Text of a token sequence; unknown ids (the model's logits are wider than the vocabulary) and
    /// specials are skipped. Bytes are joined before UTF-8 decoding, so multi-byte characters split over
    /// byte tokens come out whole.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id < SPECIALS {
                continue;
            }
            if let Some(e) = self.entries.get(id as usize) {
                bytes.extend_from_slice(e);
            }
        }
        String::from_utf8_lossy(&bytes).replace(SPACE_MARK, " ").trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(entries: &[&[u8]]) -> Vec<u8> {
        entries.iter().flat_map(|e| std::iter::once(e.len() as u8).chain(e.iter().copied())).collect()
    }

    #[test]
    fn decodes_words_bytes_and_skips_specials() {
        let data = bin(&[
            b"<unk>",
            b"<s>",
            b"</s>",
            b"\xc3",
            b"\xa9",
            "\u{2581}caf".as_bytes(),
            "\u{2581}ok".as_bytes(),
        ]);
        let t = Tokenizer::parse(&data).unwrap();
        assert_eq!(t.len(), 7);
        // BOS, "▁caf", byte 0xc3, byte 0xa9 ("é"), "▁ok", EOS, an id past the vocabulary.
        assert_eq!(t.decode(&[1, 5, 3, 4, 6, 2, 40000]), "café ok");
        assert_eq!(t.decode(&[1, 2]), "");
    }

    #[test]
    fn rejects_truncated_files() {
        assert!(Tokenizer::parse(&[5, b'a']).is_err());
        assert!(Tokenizer::parse(&[]).is_err());
    }
}
