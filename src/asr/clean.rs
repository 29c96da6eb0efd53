//! Cleaning raw ASR before it is embedded: live hosts fill pauses ("um", "uh") and repeat themselves
//! ("this this jacket"), which only adds noise to a sentence embedding.

/// Fillers dropped wherever they occur (compared lowercase, without punctuation).
const FILLERS: &[&str] = &["um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "hmm", "hm", "mm", "mhm"];

fn bare(word: &str) -> String {
    word.chars().filter(|c| c.is_alphanumeric() || *c == '\'').flat_map(char::to_lowercase).collect()
}

/// Drops fillers, collapses immediately repeated words (compared without case and punctuation, the
/// last spelling wins so a sentence's final period survives) and squeezes whitespace. Returns `None`
/// when nothing meaningful is left.
pub fn clean(text: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    let mut last = String::new();
    for word in text.split_whitespace() {
        let key = bare(word);
        if key.is_empty() || FILLERS.contains(&key.as_str()) {
            continue;
        }
        if key == last {
            if let Some(prev) = out.last_mut() {
                *prev = word;
            }
            continue;
        }
        last = key;
        out.push(word);
    }
    (!out.is_empty()).then(|| out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn drops_fillers_and_repeats() {
        assert_eq!(
            clean("Um, so this this is uh the the red kettle. Uh").as_deref(),
            Some("so this is the red kettle.")
        );
        assert_eq!(clean("The the kettle, kettle.").as_deref(), Some("the kettle."));
    }

    #[test]
    fn nothing_left_is_none() {
        assert_eq!(clean("  um  uh... "), None);
        assert_eq!(clean(""), None);
        assert_eq!(clean(" -- "), None);
    }

    #[test]
    fn keeps_meaningful_words() {
        assert_eq!(clean("I like it, like a lot").as_deref(), Some("I like it, like a lot"));
        assert_eq!(clean("it's 20 dollars").as_deref(), Some("it's 20 dollars"));
    }
}
