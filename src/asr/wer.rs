//! Word error rate: word-level edit distance over the reference length, after normalising case and
//! punctuation (ASR output punctuation and casing are not errors for tagging).

/// Lowercase words with punctuation removed (apostrophes kept, hyphens split words).
pub fn normalise(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').flat_map(char::to_lowercase).collect()
        })
        .filter(|w: &String| !w.is_empty())
        .collect()
}

/// (substitutions + deletions + insertions, reference words).
pub fn edit_counts(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalise(reference);
    let h = normalise(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

/// WER of one pair; an empty reference gives 0 for an empty hypothesis and 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (errors, words) = edit_counts(reference, hypothesis);
    if words == 0 {
        return if errors == 0 { 0.0 } else { 1.0 };
    }
    errors as f64 / words as f64
}

/// Corpus WER: total errors over total reference words.
pub fn corpus_wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let (e, n) =
        pairs.into_iter().map(|(r, h)| edit_counts(r, h)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if n == 0 { 0.0 } else { e as f64 / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_substitutions_insertions_deletions() {
        assert_eq!(wer("the red kettle", "The red kettle."), 0.0);
        assert_eq!(edit_counts("the red kettle", "the blue kettle"), (1, 3));
        assert_eq!(edit_counts("the red kettle", "the kettle"), (1, 3));
        assert_eq!(edit_counts("the red kettle", "the red red kettle now"), (2, 3));
        assert_eq!(edit_counts("a b c d", ""), (4, 4));
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "noise"), 1.0);
    }

    #[test]
    fn corpus_wer_weights_by_length() {
        let w = corpus_wer([("one two three four", "one two three four"), ("five six", "five")]);
        assert!((w - 1.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn normalises_case_punctuation_hyphens() {
        assert_eq!(normalise("Well-known, it's GREAT!"), vec!["well", "known", "it's", "great"]);
    }
}
