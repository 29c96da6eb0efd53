//! Read text -> catalogue products. OCR output is noisy (a wrong or missing letter, words run together,
//! unrelated print such as "3 %" or "1 L"), so matching is token based and fuzzy, and tokens are weighted
//! by rarity in the catalogue (IDF): a word printed on many products ("milk") cannot decide between them,
//! the brand or variety can.
//!
//! Per product, two figures in [0, 1]:
//! - title coverage: the IDF-weighted share of the product's title tokens found in the text (each counted
//!   with its best similarity); reading "Arla Milk" covers "Arla Milk" fully, "Garant Milk" only partly;
//! - support: the IDF-weighted mass of the matched text tokens (those that are catalogue words at all:
//!   OCR garbage is ignored) found in the product's title or description, over the larger of the whole
//!   matched mass and the product's title mass: a short title fully covered ("Orange") loses support
//!   when most of the text belongs to another product ("GOD MORGON orange"), and a little text (one
//!   common word, "milk") cannot fully support a product with a longer name.
//!
//! `score = title_weight * coverage + (1 - title_weight) * support`: description words count too (a
//! package printed in the shop's language, a catalogue title in English). The best product is accepted
//! (text alone names it) when it scores `accept` or more and leads the runner-up by `margin`: at most one
//! product is accepted, and two look-alikes read equally well are left to the other evidence.

use std::collections::HashMap;

use serde::Deserialize;

use super::TextLine;

/// One catalogue product's text (from `gallery::catalog::CatalogEntry` or any other source).
#[derive(Debug, Clone)]
pub struct ProductText {
    pub product_id: String,
    pub title: String,
    pub description: String,
}

impl From<&crate::gallery::catalog::CatalogEntry> for ProductText {
    fn from(e: &crate::gallery::catalog::CatalogEntry) -> Self {
        ProductText {
            product_id: e.product_id.clone(),
            title: e.title.clone(),
            description: e.description.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Two tokens match at this normalised Levenshtein similarity (1 - edits / longer length) or more:
    /// 0.75 lets one wrong letter in four through ("arla" ~ "aria", "garant" ~ "garamt").
    pub min_similarity: f32,
    /// Tokens shorter than this match only exactly (one edit in a three-letter word is another word).
    pub exact_below: usize,
    /// A catalogue token of at least this length also matches inside a longer read token (words printed
    /// or read without a space: "arlamilk"), counted at `substring_similarity`.
    pub substring_min_len: usize,
    pub substring_similarity: f32,
    /// Weight of coverage against support. At 0.5 a short title fully covered ("Orange") does not beat a
    /// product that explains all of the text ("God Morgon Orange Juice" read as "GOD MORGON orange");
    /// see BENCHMARKS.md "OCR (issue 12)".
    pub title_weight: f32,
    /// Acceptance of the best product: at least this score ... A look-alike whose title shares two of
    /// three words with the text ("Garant Standard Milk" for "Arla Standard Milk") scores 0.55-0.6, the
    /// common word alone ("milk") about 0.25 (the tests here, tests/ocr.rs, BENCHMARKS.md "OCR (issue 12)").
    pub accept: f32,
    /// ... and at least this much above the runner-up.
    pub margin: f32,
    /// At most this many products are returned.
    pub top_k: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            min_similarity: 0.75,
            exact_below: 4,
            substring_min_len: 5,
            substring_similarity: 0.9,
            title_weight: 0.5,
            accept: 0.6,
            margin: 0.1,
            top_k: 5,
        }
    }
}

/// One product's text evidence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextMatch {
    pub product_id: String,
    pub score: f32,
    pub coverage: f32,
    pub support: f32,
    /// The best product, `score >= accept` and `margin` above the runner-up.
    pub accepted: bool,
}

struct Entry {
    product_id: String,
    /// Distinct title tokens (vocabulary ids).
    title: Vec<u32>,
    title_mass: f32,
}

/// The catalogue's token index, built once; scoring touches only the products sharing a read token.
pub struct TextIndex {
    cfg: MatchConfig,
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    /// Vocabulary ids by token length in characters.
    by_len: Vec<Vec<u32>>,
    idf: Vec<f32>,
    /// Per token, the products whose title or description holds it.
    postings: Vec<Vec<u32>>,
    products: Vec<Entry>,
}

/// Lower-case alphanumeric tokens, common Latin diacritics folded (OCR models read "mjölk" as "mjolk" as
/// often as not). Single characters are dropped: they carry no product identity.
pub fn tokens(text: &str) -> Vec<String> {
    raw_tokens(text).into_iter().filter(|t| t.chars().count() >= 2).collect()
}

fn raw_tokens(text: &str) -> Vec<String> {
    let folded: String = text.chars().flat_map(char::to_lowercase).map(fold).collect();
    folded.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The tokens of read text, plus runs of 2 and 3 neighbours joined: a detector splits wide-spaced print
/// into separate boxes ("GOD" "MOR" "G" "ON"), a recogniser words ("oat ghurt"), single letters included,
/// which `tokens` alone would drop. Joins that are no catalogue word simply match nothing.
pub fn read_tokens(text: &str) -> Vec<String> {
    let raw = raw_tokens(text);
    let mut out: Vec<String> = Vec::new();
    for n in 2..=3 {
        out.extend(raw.windows(n).map(|w| w.concat()));
    }
    out.extend(raw);
    out.retain(|t| t.chars().count() >= 2);
    out
}

fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        'ß' => 's',
        other => other,
    }
}

impl TextIndex {
    pub fn new(products: &[ProductText], cfg: MatchConfig) -> Self {
        let mut idx = TextIndex {
            cfg,
            vocab: Vec::new(),
            ids: HashMap::new(),
            by_len: Vec::new(),
            idf: Vec::new(),
            postings: Vec::new(),
            products: Vec::new(),
        };
        for (p, prod) in products.iter().enumerate() {
            let mut title = Vec::new();
            for tok in tokens(&prod.title).into_iter().chain(tokens(&prod.description)) {
                let id = idx.intern(tok);
                if idx.postings[id as usize].last() != Some(&(p as u32)) {
                    idx.postings[id as usize].push(p as u32);
                }
            }
            for tok in tokens(&prod.title) {
                let id = idx.ids[&tok];
                if !title.contains(&id) {
                    title.push(id);
                }
            }
            idx.products.push(Entry { product_id: prod.product_id.clone(), title, title_mass: 0.0 });
        }
        let n = products.len().max(1) as f32;
        idx.idf = idx.postings.iter().map(|p| (1.0 + n / p.len().max(1) as f32).ln()).collect();
        for e in &mut idx.products {
            e.title_mass = e.title.iter().map(|&t| idx.idf[t as usize]).sum();
        }
        idx
    }

    fn intern(&mut self, tok: String) -> u32 {
        if let Some(&id) = self.ids.get(&tok) {
            return id;
        }
        let id = self.vocab.len() as u32;
        let len = tok.chars().count();
        if self.by_len.len() <= len {
            self.by_len.resize(len + 1, Vec::new());
        }
        self.by_len[len].push(id);
        self.ids.insert(tok.clone(), id);
        self.vocab.push(tok);
        self.postings.push(Vec::new());
        id
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Catalogue tokens found in `read` (the read text's tokens), each with its best similarity.
    fn matched_tokens(&self, read: &[String]) -> HashMap<u32, f32> {
        let mut best: HashMap<u32, f32> = HashMap::new();
        let mut note = |id: u32, sim: f32| {
            let e = best.entry(id).or_insert(0.0);
            *e = e.max(sim);
        };
        for tok in read {
            // An exact word is that word only: "milk" read must not also count as "mild".
            if let Some(&id) = self.ids.get(tok) {
                note(id, 1.0);
                continue;
            }
            let len = tok.chars().count();
            if len >= self.cfg.exact_below {
                // Only the closest words (ties kept), and only lengths within the edit budget:
                // 1 - d / max_len >= m allows a length up to len / m.
                let budget =
                    ((1.0 - self.cfg.min_similarity) * len as f32 / self.cfg.min_similarity) as usize;
                let lo = len.saturating_sub(budget).max(self.cfg.exact_below);
                let mut closest: (f32, Vec<u32>) = (self.cfg.min_similarity, Vec::new());
                for l in lo..=(len + budget).min(self.by_len.len().saturating_sub(1)) {
                    for &id in &self.by_len[l] {
                        let sim = strsim::normalized_levenshtein(tok, &self.vocab[id as usize]) as f32;
                        if sim > closest.0 {
                            closest = (sim, vec![id]);
                        } else if sim == closest.0 {
                            closest.1.push(id);
                        }
                    }
                }
                for id in closest.1 {
                    note(id, closest.0);
                }
            }
            // Words run together: every catalogue word inside counts.
            let upper = len.min(self.by_len.len());
            for l in self.cfg.substring_min_len..upper {
                for &id in &self.by_len[l] {
                    if tok.contains(self.vocab[id as usize].as_str()) {
                        note(id, self.cfg.substring_similarity);
                    }
                }
            }
        }
        best
    }

    /// Products ranked by text evidence (best first, at most `top_k`, only those with a score > 0).
    pub fn score(&self, lines: &[TextLine]) -> Vec<TextMatch> {
        // Lines in reading order, joined: neighbouring boxes of one printed word get joined too.
        let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let mut read = read_tokens(&text.join(" "));
        read.sort();
        read.dedup();
        self.score_tokens(&read)
    }

    /// As `score`, for already tokenised text (e.g. an ASR transcript through `tokens`).
    pub fn score_tokens(&self, read: &[String]) -> Vec<TextMatch> {
        let best = self.matched_tokens(read);
        let total: f32 = best.iter().map(|(&t, &s)| self.idf[t as usize] * s).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        let mut support: HashMap<u32, f32> = HashMap::new();
        for (&t, &s) in &best {
            for &p in &self.postings[t as usize] {
                *support.entry(p).or_insert(0.0) += self.idf[t as usize] * s;
            }
        }
        let w = self.cfg.title_weight;
        let mut out: Vec<TextMatch> = support
            .into_iter()
            .map(|(p, sup)| {
                let e = &self.products[p as usize];
                let covered: f32 =
                    e.title.iter().map(|t| self.idf[*t as usize] * best.get(t).copied().unwrap_or(0.0)).sum();
                let coverage = if e.title_mass > 0.0 { covered / e.title_mass } else { 0.0 };
                let support = sup / total.max(e.title_mass);
                let score = w * coverage + (1.0 - w) * support;
                TextMatch { product_id: e.product_id.clone(), score, coverage, support, accepted: false }
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.product_id.cmp(&b.product_id)));
        out.truncate(self.cfg.top_k.max(1));
        let runner_up = out.get(1).map_or(0.0, |m| m.score);
        if let Some(best) = out.first_mut() {
            best.accepted = best.score >= self.cfg.accept && best.score - runner_up >= self.cfg.margin;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, title: &str, description: &str) -> ProductText {
        ProductText { product_id: id.into(), title: title.into(), description: description.into() }
    }

    fn catalogue() -> TextIndex {
        TextIndex::new(
            &[
                product("arla-milk", "Arla Standard Milk", "Fresh standard milk from Swedish farms."),
                product("garant-milk", "Garant Standard Milk", "Ecological standard milk."),
                product("oatly", "Oatly Oat Milk", "Oat drink, a milk alternative."),
                product("tropicana", "Tropicana Apple Juice", "Apple juice, not from concentrate."),
            ],
            MatchConfig::default(),
        )
    }

    fn line(text: &str) -> TextLine {
        TextLine { text: text.into(), confidence: 0.9, bbox: [0.0, 0.0, 1.0, 1.0] }
    }

    #[test]
    fn tokens_fold_case_and_diacritics() {
        assert_eq!(tokens("Mjölk 3% ARLA-Ko"), vec!["mjolk", "arla", "ko"]);
    }

    #[test]
    fn the_rare_word_decides_between_look_alikes() {
        let idx = catalogue();
        let hits = idx.score(&[line("ARLA"), line("STANDARD MILK")]);
        assert_eq!(hits[0].product_id, "arla-milk");
        assert!(hits[0].accepted && hits[0].coverage > 0.99, "{hits:?}");
        let garant = hits.iter().find(|h| h.product_id == "garant-milk").expect("garant scored");
        assert!(!garant.accepted && garant.score < 0.6, "shares only common words: {garant:?}");
    }

    #[test]
    fn a_common_word_alone_names_no_product() {
        let hits = catalogue().score(&[line("MILK")]);
        assert!(hits.len() >= 3 && hits.iter().all(|h| !h.accepted && h.score < 0.5), "{hits:?}");
    }

    #[test]
    fn ocr_typos_still_match() {
        let idx = catalogue();
        // One wrong letter in each word, as a recogniser misreads them.
        let hits = idx.score(&[line("GARAMT Standard Mi1k")]);
        assert_eq!(hits[0].product_id, "garant-milk", "{hits:?}");
        assert!(hits[0].accepted);
        assert!(hits[1].score < hits[0].score);
    }

    #[test]
    fn words_run_together_or_split() {
        let idx = catalogue();
        assert_eq!(idx.score(&[line("TROPICANAAPPLE JUICE")])[0].product_id, "tropicana");
        assert_eq!(idx.score(&[line("Oat ly oat milk")])[0].product_id, "oatly");
        assert!(read_tokens("GOD MOR G ON").contains(&"morgon".to_string()));
    }

    #[test]
    fn short_tokens_need_exact_matches_and_garbage_matches_nothing() {
        let idx = catalogue();
        // "oet" is one edit from "oat" but too short to be trusted.
        assert!(idx.score(&[line("oet")]).is_empty());
        assert!(idx.score(&[line("xq7 zzkv 1L 3%")]).is_empty());
        assert!(idx.score(&[]).is_empty());
    }

    #[test]
    fn idf_weights_rare_tokens_higher() {
        let idx = catalogue();
        let idf = |t: &str| idx.idf[idx.ids[t] as usize];
        assert!(idf("garant") > idf("standard") && idf("standard") > idf("milk"));
    }
}
