//! Feature extraction for the category model: content tokens → sparse TF-IDF vector.
//!
//! Sits between `text::segment` (which produces the tokens) and the linear classifier in
//! [`super::CategoryModel`]. The same code builds the vocabulary at training time and looks
//! features up at inference, so the two cannot drift apart; [`FEATURE_VERSION`] and
//! [`FeatureSettings`] are stored in every model file and checked when it is loaded.
//!
//! Features are word unigrams, word bigrams and character n-grams over the tokens joined without
//! separator. The character n-grams make the model robust to the small segmentation differences
//! between Python jieba (which produced the training data) and jieba-rs (used at inference).
//!
//! At inference a feature is never materialised as a string: its key is a 64-bit hash computed
//! char by char from the token buffer, looked up in a hash map built from the vocabulary when the
//! model is loaded.

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

use super::inference::{PlanSettings, TermPlan};

/// Bumped whenever the code that turns tokens into features changes meaning (n-gram rules,
/// hashing, weighting). A model trained with another version is refused at load.
pub const FEATURE_VERSION: u32 = 1;

/// How features are extracted and selected. Stored in the model; at load it must equal
/// [`FeatureSettings::current`], because the weights are only meaningful for these features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// [`FEATURE_VERSION`] of the code that trained the model.
    pub version: u32,
    /// Whole tokens as features (`w:` terms).
    pub word_unigrams: bool,
    /// Adjacent token pairs as features (`b:` terms, the two tokens separated by a space).
    pub word_bigrams: bool,
    /// Shortest character n-gram over the joined tokens (`c:` terms); 0 disables them.
    pub char_ngram_min: u32,
    /// Longest character n-gram over the joined tokens.
    pub char_ngram_max: u32,
    /// Characters of input considered: bounds the cost of one very long message.
    pub max_chars: u32,
    /// A term must occur in at least this many training documents to enter the vocabulary.
    pub min_df: u32,
    /// Vocabulary size cap: bounds model size and the dense training matrix.
    pub max_features: u32,
    /// How the `max_features` terms are chosen among those passing `min_df`.
    pub selection: Selection,
    /// Term frequency weighted as `1 + ln(tf)` instead of `tf`.
    pub sublinear_tf: bool,
}

/// Vocabulary selection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Most frequent terms (document frequency).
    DocFreq,
    /// Terms with the highest χ² association with any one category: keeps the vocabulary small
    /// without losing the discriminative rare-ish terms that plain frequency would cut.
    Chi2,
}

impl FeatureSettings {
    /// The settings this code extracts features with; the only ones a model may carry.
    pub fn current() -> Self {
        FeatureSettings {
            version: FEATURE_VERSION,
            word_unigrams: true,
            word_bigrams: true,
            char_ngram_min: 1,
            char_ngram_max: 2,
            max_chars: 4000,
            min_df: 2,
            max_features: 10000,
            selection: Selection::Chi2,
            sublinear_tf: true,
        }
    }

    /// Names of the fields whose values differ, with both values, for a load error.
    pub fn differences(&self, other: &FeatureSettings) -> Vec<String> {
        let (a, b) = match (serde_json::to_value(self), serde_json::to_value(other)) {
            (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) => (a, b),
            _ => return vec!["settings not comparable".to_string()],
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                let theirs = b.get(k).map_or("absent".to_string(), |x| x.to_string());
                format!("{k}: {v} vs {theirs}")
            })
            .collect()
    }
}

/// The three kinds of terms; the prefix is how a term is written in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Bigram,
    Char,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Word => "w:",
            Kind::Bigram => "b:",
            Kind::Char => "c:",
        }
    }

    fn tag(self) -> u32 {
        match self {
            Kind::Word => 1,
            Kind::Bigram => 2,
            Kind::Char => 3,
        }
    }
}

/// Separator between the two tokens of a bigram term; tokens never contain whitespace.
const BIGRAM_SEPARATOR: char = ' ';

/// Key of a term: hashed char by char (so a bigram can be hashed from two slices without
/// building its string). The length goes last so that different splits of one char sequence
/// into kinds cannot meet.
fn term_key(kind: Kind, first: &[char], second: Option<&[char]>) -> u64 {
    let mut h = FxHasher::default();
    h.write_u32(kind.tag());
    let mut len = first.len();
    for &c in first {
        h.write_u32(c as u32);
    }
    if let Some(second) = second {
        h.write_u32(BIGRAM_SEPARATOR as u32);
        for &c in second {
            h.write_u32(c as u32);
        }
        len += 1 + second.len();
    }
    h.write_usize(len);
    h.finish()
}

fn term_text(kind: Kind, first: &[char], second: Option<&[char]>) -> String {
    let mut s = String::from(kind.prefix());
    s.extend(first.iter());
    if let Some(second) = second {
        s.push(BIGRAM_SEPARATOR);
        s.extend(second.iter());
    }
    s
}

/// Key of a term as written in the model file (`w:…`, `b:… …`, `c:…`); `None` if malformed.
pub(crate) fn key_of_term(term: &str) -> Option<u64> {
    let (kind, rest) = if let Some(rest) = term.strip_prefix("w:") {
        (Kind::Word, rest)
    } else if let Some(rest) = term.strip_prefix("b:") {
        (Kind::Bigram, rest)
    } else if let Some(rest) = term.strip_prefix("c:") {
        (Kind::Char, rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return None;
    }
    match kind {
        Kind::Bigram => {
            let (a, b) = rest.split_once(BIGRAM_SEPARATOR)?;
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            if a.is_empty() || b.is_empty() {
                return None;
            }
            Some(term_key(kind, &a, Some(&b)))
        }
        _ => {
            let chars: Vec<char> = rest.chars().collect();
            Some(term_key(kind, &chars, None))
        }
    }
}

/// Walks every term occurrence of a document, calling `emit(kind, first, second)`; both key and
/// text are derived from these arguments, which keeps training and inference identical.
fn walk_terms<T: AsRef<str>>(
    settings: &FeatureSettings,
    tokens: &[T],
    emit: impl FnMut(Kind, &[char], Option<&[char]>),
) {
    let max_chars = settings.max_chars as usize;
    let mut chars: Vec<char> = Vec::with_capacity(max_chars.min(4096));
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(tokens.len().min(max_chars));
    walk_terms_in(settings, tokens, &mut chars, &mut spans, emit);
}

/// [`walk_terms`] with the caller's buffers (cleared first), so that inference reuses them.
fn walk_terms_in<T: AsRef<str>>(
    settings: &FeatureSettings,
    tokens: &[T],
    chars: &mut Vec<char>,
    spans: &mut Vec<(usize, usize)>,
    mut emit: impl FnMut(Kind, &[char], Option<&[char]>),
) {
    let max_chars = settings.max_chars as usize;
    // All tokens' chars in one buffer: the joined text for char n-grams, and token spans into it.
    chars.clear();
    spans.clear();
    for token in tokens {
        let start = chars.len();
        chars.extend(
            token
                .as_ref()
                .chars()
                .filter(|c| !c.is_whitespace())
                .take(max_chars - start),
        );
        if chars.len() > start {
            spans.push((start, chars.len()));
        }
        if chars.len() >= max_chars {
            break;
        }
    }
    if settings.word_unigrams {
        for &(s, e) in spans.iter() {
            emit(Kind::Word, &chars[s..e], None);
        }
    }
    if settings.word_bigrams {
        for pair in spans.windows(2) {
            let ((s1, e1), (s2, e2)) = (pair[0], pair[1]);
            emit(Kind::Bigram, &chars[s1..e1], Some(&chars[s2..e2]));
        }
    }
    if settings.char_ngram_min > 0 {
        for n in settings.char_ngram_min as usize..=settings.char_ngram_max as usize {
            for window in chars.windows(n) {
                emit(Kind::Char, window, None);
            }
        }
    }
}

/// Distinct terms of a document with their keys: the training-side view, where strings are
/// needed to write the vocabulary.
pub(crate) fn distinct_terms<T: AsRef<str>>(
    settings: &FeatureSettings,
    tokens: &[T],
) -> Vec<(u64, String)> {
    let mut seen: FxHashMap<u64, String> = FxHashMap::default();
    walk_terms(settings, tokens, |kind, a, b| {
        seen.entry(term_key(kind, a, b))
            .or_insert_with(|| term_text(kind, a, b));
    });
    let mut terms: Vec<(u64, String)> = seen.into_iter().collect();
    terms.sort_unstable_by_key(|(k, _)| *k);
    terms
}

/// Buffers of one [`Vectorizer::vectorize`] call, kept per thread: allocating them afresh for
/// every event cost more than filling them.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    chars: Vec<char>,
    spans: Vec<(usize, usize)>,
    /// Term counts by column, all zero between calls.
    counts: Vec<u16>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A sparse feature vector: distinct indices in order of first occurrence and their values
/// (L2-normalised).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// Two vocabulary terms hash to the same key: the model would be ambiguous.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("terms {first:?} and {second:?} have the same feature key")]
pub struct KeyCollision {
    pub first: String,
    pub second: String,
}

/// Term → column index and IDF: everything needed to turn tokens into a [`SparseVector`].
#[derive(Debug, Clone)]
pub struct Vectorizer {
    settings: FeatureSettings,
    index: FxHashMap<u64, u32>,
    idf: Vec<f32>,
    /// Tokens → columns through a per-thread cache: what [`Self::vectorize`] runs on; `index`
    /// is the reference and the path for documents the plan declines.
    plan: Option<TermPlan>,
}

impl Vectorizer {
    /// Builds the lookup from `(term, idf)` pairs in column order.
    pub fn new(
        settings: FeatureSettings,
        terms: &[(String, f32)],
    ) -> Result<Self, VectorizerError> {
        let mut index = FxHashMap::default();
        index.reserve(terms.len());
        let mut idf = Vec::with_capacity(terms.len());
        for (column, (term, term_idf)) in terms.iter().enumerate() {
            let key = key_of_term(term).ok_or_else(|| VectorizerError::BadTerm {
                column,
                term: term.clone(),
            })?;
            if let Some(&other) = index.get(&key) {
                let first = terms[other as usize].0.clone();
                return Err(VectorizerError::Collision(KeyCollision {
                    first,
                    second: term.clone(),
                }));
            }
            let column32 = u32::try_from(column).map_err(|_| VectorizerError::TooLarge)?;
            index.insert(key, column32);
            idf.push(*term_idf);
        }
        let plan = PlanSettings::new(
            settings.word_unigrams,
            settings.word_bigrams,
            settings.char_ngram_min,
            settings.char_ngram_max,
            settings.max_chars,
        )
        .map(|plan_settings| {
            let columns = terms
                .iter()
                .zip(0u32..)
                .map(|((term, _), c)| (term.as_str(), c));
            TermPlan::new(plan_settings, columns)
        });
        Ok(Vectorizer {
            settings,
            index,
            idf,
            plan,
        })
    }

    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// IDF of every column.
    pub(crate) fn idf(&self) -> &[f32] {
        &self.idf
    }

    pub(crate) fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// The token plan [`Self::vectorize`] runs on; `None` for settings it cannot mirror.
    pub(crate) fn plan(&self) -> Option<&TermPlan> {
        self.plan.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }

    /// TF-IDF vector of a document; empty when no term is in the vocabulary.
    pub fn vectorize<T: AsRef<str>>(&self, tokens: &[T]) -> SparseVector {
        let fast = self.plan.as_ref().and_then(|plan| {
            plan.with_hits(tokens, false, |columns| self.vectorize_columns(columns))
        });
        fast.unwrap_or_else(|| self.vectorize_reference(tokens))
    }

    /// Whether [`Self::vectorize`] takes the plan for this document.
    #[cfg(test)]
    pub(crate) fn plan_applies<T: AsRef<str>>(&self, tokens: &[T]) -> bool {
        self.plan
            .as_ref()
            .and_then(|plan| plan.with_hits(tokens, false, |_| ()))
            .is_some()
    }

    /// [`Self::vectorize`] by hashing every term occurrence and looking its key up: the
    /// definition the fast path is tested against, and its fallback.
    pub(crate) fn vectorize_reference<T: AsRef<str>>(&self, tokens: &[T]) -> SparseVector {
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                keys,
                chars,
                spans,
                counts,
            } = scratch;
            keys.clear();
            walk_terms_in(&self.settings, tokens, chars, spans, |kind, a, b| {
                keys.push(term_key(kind, a, b))
            });
            let columns = keys.iter().filter_map(|key| self.index.get(key).copied());
            self.tfidf(counts, columns)
        })
    }

    /// TF-IDF vector from the column of every term occurrence of a document, in the order the
    /// terms are walked (words, word pairs, characters, character pairs): what
    /// [`Self::vectorize`] gives when the columns come from elsewhere (the token cache of
    /// [`TermPlan`]).
    fn vectorize_columns(&self, columns: &[u32]) -> SparseVector {
        SCRATCH.with_borrow_mut(|scratch| self.tfidf(&mut scratch.counts, columns.iter().copied()))
    }

    /// Term frequencies are counted in a per-thread table as long as the vocabulary instead of
    /// sorting the hits: this is the hot path of classification. Columns keep the order of
    /// their first occurrence, which is the order the norm and the dot product sum in.
    fn tfidf(&self, counts: &mut Vec<u16>, columns: impl Iterator<Item = u32>) -> SparseVector {
        let mut out = SparseVector::default();
        if counts.len() < self.idf.len() {
            counts.resize(self.idf.len(), 0);
        }
        for column in columns {
            let count = &mut counts[column as usize];
            if *count == 0 {
                out.indices.push(column);
            }
            *count = count.saturating_add(1);
        }
        out.values.reserve(out.indices.len());
        for &column in &out.indices {
            let tf = f32::from(std::mem::take(&mut counts[column as usize]));
            let tf = if self.settings.sublinear_tf {
                1.0 + tf.ln()
            } else {
                tf
            };
            out.values.push(tf * self.idf[column as usize]);
        }
        let norm = out.values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            for v in &mut out.values {
                *v /= norm;
            }
        }
        out
    }
}

/// Why a vocabulary cannot be turned into a [`Vectorizer`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorizerError {
    #[error("vocabulary entry {column}: malformed term {term:?} (expected w:, b: or c: prefix)")]
    BadTerm { column: usize, term: String },
    #[error("vocabulary: {0}")]
    Collision(KeyCollision),
    #[error("vocabulary has more than 2^32 terms")]
    TooLarge,
}

/// Smoothed IDF as scikit-learn computes it: `ln((1 + n) / (1 + df)) + 1`, never zero, so a term
/// present everywhere still counts a little.
pub(crate) fn smooth_idf(n_docs: usize, df: usize) -> f32 {
    (((1 + n_docs) as f64 / (1 + df) as f64).ln() + 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn term_key_matches_between_walk_and_written_term() {
        let settings = FeatureSettings::current();
        for (key, text) in distinct_terms(&settings, &toks("小区 噪音 扰民")) {
            assert_eq!(key_of_term(&text), Some(key), "term {text}");
        }
    }

    #[test]
    fn emits_words_bigrams_and_char_ngrams() {
        let settings = FeatureSettings::current();
        let terms: Vec<String> = distinct_terms(&settings, &toks("噪音 扰民"))
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        for expected in [
            "w:噪音",
            "w:扰民",
            "b:噪音 扰民",
            "c:噪",
            "c:音扰",
            "c:扰民",
        ] {
            assert!(terms.contains(&expected.to_string()), "missing {expected}");
        }
    }

    #[test]
    fn kinds_with_same_chars_have_different_keys() {
        let a: Vec<char> = "噪音".chars().collect();
        assert_ne!(
            term_key(Kind::Word, &a, None),
            term_key(Kind::Char, &a, None)
        );
    }

    #[test]
    fn malformed_terms_are_rejected() {
        for bad in ["x:噪音", "w:", "b:噪音", "b: 噪音", "噪音"] {
            assert_eq!(key_of_term(bad), None, "{bad}");
        }
    }

    #[test]
    fn vector_is_l2_normalised_and_sublinear() {
        let settings = FeatureSettings::current();
        let v = Vectorizer::new(settings, &[("w:噪音".into(), 2.0), ("w:扰民".into(), 1.0)])
            .expect("valid vocabulary");
        let x = v.vectorize(&toks("噪音 噪音 扰民 其他"));
        assert_eq!(x.indices, vec![0, 1]);
        let raw = [(1.0 + 2f32.ln()) * 2.0, 1.0];
        let norm = (raw[0] * raw[0] + raw[1] * raw[1]).sqrt();
        assert!((x.values[0] - raw[0] / norm).abs() < 1e-6);
        assert!((x.values[1] - raw[1] / norm).abs() < 1e-6);
    }

    #[test]
    fn counts_do_not_leak_between_calls() {
        let v = Vectorizer::new(FeatureSettings::current(), &[("w:噪音".into(), 1.0)])
            .expect("valid vocabulary");
        let first = v.vectorize(&toks("噪音 噪音 噪音"));
        assert_eq!(v.vectorize(&toks("噪音 噪音 噪音")), first);
    }

    #[test]
    fn empty_and_unknown_input_give_empty_vector() {
        let v = Vectorizer::new(FeatureSettings::current(), &[("w:噪音".into(), 2.0)])
            .expect("valid vocabulary");
        assert!(v.vectorize::<&str>(&[]).indices.is_empty());
        assert!(v.vectorize(&toks("完全 无关")).values.is_empty());
    }

    #[test]
    fn input_beyond_max_chars_is_ignored() {
        let mut settings = FeatureSettings::current();
        settings.max_chars = 4;
        let terms = distinct_terms(&settings, &toks("噪音 扰民 施工"));
        assert!(terms.iter().all(|(_, t)| !t.contains('施')));
    }

    #[test]
    fn duplicate_vocabulary_terms_are_a_collision() {
        let err = Vectorizer::new(
            FeatureSettings::current(),
            &[("w:噪音".into(), 1.0), ("w:噪音".into(), 1.0)],
        )
        .unwrap_err();
        assert!(matches!(err, VectorizerError::Collision(_)));
    }

    #[test]
    fn differences_name_the_field() {
        let a = FeatureSettings::current();
        let mut b = a.clone();
        b.min_df += 1;
        let diff = a.differences(&b);
        assert_eq!(diff.len(), 1);
        assert!(diff[0].starts_with("min_df"), "{diff:?}");
    }
}
