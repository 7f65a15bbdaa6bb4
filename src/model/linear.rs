//! Shared machinery of the social-text models (emotion, polarity, relevance): text features,
//! sparse linear heads, fitting with linfa-logistic, stratified cross-validation and metrics.
//!
//! Sits after segmentation, beside the category model, but deliberately owns its feature code
//! ([`TextFeatures`], [`TEXT_FEATURE_VERSION`]): the category model's features evolve on their
//! own, and a change there must not silently change what these weights mean. Every model file
//! stores its feature settings and a fingerprint of the keys this code computes for a fixed
//! probe text; a file whose version or fingerprint differs from the running code is refused.
//!
//! Features are word unigrams, word bigrams and character n-grams over the tokens joined
//! without separator (robust to segmentation differences), weighted by sublinear TF × smoothed
//! IDF and L2-normalised. At inference a term is a 64-bit key hashed char by char, looked up in
//! a hash map; nothing is materialised as a string.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use linfa::traits::Fit;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;

/// Bumped whenever the code that turns tokens into features changes meaning. The fingerprint
/// check catches changes that forget the bump (including a new hash function in a dependency).
pub const TEXT_FEATURE_VERSION: u32 = 1;

/// A model file larger than this is refused: the shipped ones are well under 2 MB.
pub(crate) const MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;

/// Longest allowed character n-gram; bounds the work per character.
const MAX_CHAR_NGRAM: u32 = 4;

/// How features are extracted and selected; stored in each model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextFeatures {
    /// [`TEXT_FEATURE_VERSION`] of the code that trained the model.
    pub version: u32,
    /// Whole tokens (`w:` terms).
    pub word_unigrams: bool,
    /// Adjacent token pairs (`b:` terms, the two tokens separated by a space).
    pub word_bigrams: bool,
    /// Shortest character n-gram over the joined tokens (`c:` terms); 0 disables them.
    pub char_ngram_min: u32,
    /// Longest character n-gram.
    pub char_ngram_max: u32,
    /// Characters of input considered: bounds the cost of one long post.
    pub max_chars: u32,
    /// A term must occur in at least this many training documents.
    pub min_df: u32,
    /// Vocabulary cap, filled by χ² (best class): bounds file size and the training matrix.
    pub max_features: u32,
    /// Term frequency weighted `1 + ln(tf)`.
    pub sublinear_tf: bool,
}

impl TextFeatures {
    /// Checks the values are ones this code can extract with; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != TEXT_FEATURE_VERSION {
            return Err(format!(
                "features.version is {}, this build extracts version {TEXT_FEATURE_VERSION}; \
                 retrain the model",
                self.version
            ));
        }
        if self.char_ngram_min > self.char_ngram_max || self.char_ngram_max > MAX_CHAR_NGRAM {
            return Err(format!(
                "features.char_ngram_min/max {}..{} invalid (at most {MAX_CHAR_NGRAM})",
                self.char_ngram_min, self.char_ngram_max
            ));
        }
        if self.max_chars == 0 || self.max_chars > 100_000 {
            return Err(format!(
                "features.max_chars {} outside 1..=100000",
                self.max_chars
            ));
        }
        if !self.word_unigrams && !self.word_bigrams && self.char_ngram_min == 0 {
            return Err("features: no term kind enabled".into());
        }
        Ok(())
    }

    /// Hex digest of the keys this build computes for a fixed probe under these settings: a
    /// model stores it, and a build that computes other keys refuses the model.
    pub fn fingerprint(&self) -> String {
        const PROBE: [&str; 5] = ["小区", "路灯", "坏了", "ok", "谢谢"];
        let probe: Vec<String> = PROBE.iter().map(|s| s.to_string()).collect();
        let mut keys = Vec::new();
        term_keys(self, &probe, &mut keys);
        let mut h = Sha256::new();
        h.update(self.version.to_le_bytes());
        for k in keys {
            h.update(k.to_le_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }
}

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
}

const BIGRAM_SEPARATOR: char = ' ';

/// Key of a term, hashed char by char; the length goes last so that different splits of one
/// char sequence cannot meet.
fn term_key(kind: Kind, first: &[char], second: Option<&[char]>) -> u64 {
    let mut h = FxHasher::default();
    h.write_u32(kind as u32 + 0x5e00);
    let mut len = first.len() as u64;
    for &c in first {
        h.write_u32(c as u32);
    }
    if let Some(second) = second {
        h.write_u32(BIGRAM_SEPARATOR as u32);
        for &c in second {
            h.write_u32(c as u32);
        }
        len += 1 + second.len() as u64;
    }
    h.write_u64(len);
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

/// Key of a term as written in a model file; `None` if malformed.
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
    if kind == Kind::Bigram {
        let (a, b) = rest.split_once(BIGRAM_SEPARATOR)?;
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        if a.is_empty() || b.is_empty() {
            return None;
        }
        return Some(term_key(kind, &a, Some(&b)));
    }
    let chars: Vec<char> = rest.chars().collect();
    Some(term_key(kind, &chars, None))
}

/// Calls `emit` for every term occurrence; keys and texts both derive from its arguments, so
/// training and inference cannot disagree.
fn walk_terms<T: AsRef<str>>(
    f: &TextFeatures,
    tokens: &[T],
    mut emit: impl FnMut(Kind, &[char], Option<&[char]>),
) {
    let max_chars = f.max_chars as usize;
    let mut chars: Vec<char> = Vec::with_capacity(max_chars.min(2048));
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(tokens.len().min(max_chars));
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
    if f.word_unigrams {
        for &(s, e) in &spans {
            emit(Kind::Word, &chars[s..e], None);
        }
    }
    if f.word_bigrams {
        for pair in spans.windows(2) {
            let ((s1, e1), (s2, e2)) = (pair[0], pair[1]);
            emit(Kind::Bigram, &chars[s1..e1], Some(&chars[s2..e2]));
        }
    }
    if f.char_ngram_min > 0 {
        for n in f.char_ngram_min as usize..=f.char_ngram_max as usize {
            for window in chars.windows(n) {
                emit(Kind::Char, window, None);
            }
        }
    }
}

/// Keys of every term occurrence, with repeats.
pub(crate) fn term_keys<T: AsRef<str>>(f: &TextFeatures, tokens: &[T], out: &mut Vec<u64>) {
    out.clear();
    walk_terms(f, tokens, |kind, a, b| out.push(term_key(kind, a, b)));
}

/// Distinct terms of a document with their keys (training side, where texts are written out).
fn distinct_terms<T: AsRef<str>>(f: &TextFeatures, tokens: &[T]) -> Vec<(u64, String)> {
    let mut seen: FxHashMap<u64, String> = FxHashMap::default();
    walk_terms(f, tokens, |kind, a, b| {
        seen.entry(term_key(kind, a, b))
            .or_insert_with(|| term_text(kind, a, b));
    });
    seen.into_iter().collect()
}

/// Smoothed IDF as scikit-learn computes it.
fn smooth_idf(n_docs: usize, df: usize) -> f32 {
    (((1 + n_docs) as f64 / (1 + df) as f64).ln() + 1.0) as f32
}

/// Rounds to `decimals` places: files store short numbers, and fits use the rounded IDF.
pub(crate) fn round(v: f32, decimals: i32) -> f32 {
    let scale = 10f64.powi(decimals);
    ((f64::from(v) * scale).round() / scale) as f32
}

/// One vocabulary entry as stored: `[term, idf, [weight per class]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TermEntry(pub String, pub f32, pub Vec<f32>);

/// A training data file, for provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// File name (not path).
    pub file: String,
    pub sha256: String,
    /// Documents taken from it.
    pub rows: usize,
}

impl DataSource {
    pub(crate) fn of(path: &Path, bytes: &[u8], rows: usize) -> Self {
        DataSource {
            file: path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            sha256: hex::encode(Sha256::digest(bytes)),
            rows,
        }
    }
}

/// Mean cross-validation figures of one head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvFigures {
    pub folds: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
    pub per_class_f1: BTreeMap<String, f32>,
}

/// How a head was made: provenance and figures, not used for prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadTraining {
    pub data: Vec<DataSource>,
    pub seed: u64,
    pub alpha: f32,
    pub max_iterations: u64,
    /// τ of the prior correction: intercept of class c lowered by τ·ln(prior_c), chosen on
    /// out-of-fold predictions for macro-F1 (linfa-logistic 0.8 has no class weights).
    pub prior_shift: f32,
    /// Out-of-fold figures with the chosen τ; absent when trained without cross-validation.
    pub cv: Option<CvFigures>,
}

/// One head as serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadFile {
    pub classes: Vec<String>,
    pub intercepts: Vec<f32>,
    pub training: HeadTraining,
    pub vocabulary: Vec<TermEntry>,
}

/// A linear classifier over a pruned vocabulary: term key → column → one weight per class.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub classes: Vec<String>,
    pub intercepts: Vec<f32>,
    index: FxHashMap<u64, u32>,
    idf: Vec<f32>,
    /// Term-major: `weights[column * k + class]`.
    weights: Vec<f32>,
    terms: Vec<String>,
    pub training: HeadTraining,
}

impl Head {
    /// Validates a parsed head; `name` prefixes every message.
    pub fn from_file(file: HeadFile, name: &str) -> Result<Self, String> {
        let k = file.classes.len();
        if k < 2 {
            return Err(format!("{name}.classes: {k}, need at least 2"));
        }
        if file.intercepts.len() != k || file.intercepts.iter().any(|v| !v.is_finite()) {
            return Err(format!("{name}.intercepts: expected {k} finite numbers"));
        }
        let n = file.vocabulary.len();
        let mut index = FxHashMap::default();
        index.reserve(n);
        let mut idf = Vec::with_capacity(n);
        let mut weights = Vec::with_capacity(n * k);
        let mut terms = Vec::with_capacity(n);
        for (i, TermEntry(term, term_idf, w)) in file.vocabulary.into_iter().enumerate() {
            let bad = |what: &str| format!("{name}.vocabulary[{i}] ({term:?}): {what}");
            if w.len() != k || w.iter().any(|v| !v.is_finite()) {
                return Err(bad(&format!("expected {k} finite weights")));
            }
            if !(term_idf.is_finite() && term_idf > 0.0) {
                return Err(bad("idf not a positive number"));
            }
            let key = key_of_term(&term).ok_or_else(|| bad("malformed term"))?;
            let column = u32::try_from(i).map_err(|_| bad("too many terms"))?;
            if index.insert(key, column).is_some() {
                return Err(bad("duplicate feature key"));
            }
            idf.push(term_idf);
            weights.extend_from_slice(&w);
            terms.push(term);
        }
        Ok(Head {
            classes: file.classes,
            intercepts: file.intercepts,
            index,
            idf,
            weights,
            terms,
            training: file.training,
        })
    }

    /// The serialisable form, numbers rounded to 4 decimals.
    pub fn to_file(&self) -> HeadFile {
        let k = self.classes.len();
        HeadFile {
            classes: self.classes.clone(),
            intercepts: self.intercepts.iter().map(|&v| round(v, 4)).collect(),
            training: self.training.clone(),
            vocabulary: self
                .terms
                .iter()
                .enumerate()
                .map(|(t, term)| {
                    let w = self.weights[t * k..(t + 1) * k]
                        .iter()
                        .map(|&v| round(v, 4))
                        .collect();
                    TermEntry(term.clone(), self.idf[t], w)
                })
                .collect(),
        }
    }

    pub fn vocabulary_len(&self) -> usize {
        self.idf.len()
    }

    /// Class probabilities (softmax) for a document given as term keys (see [`term_keys`]);
    /// with no known term, the softmax of the intercepts.
    pub fn probabilities(&self, f: &TextFeatures, keys: &[u64]) -> Vec<f32> {
        let k = self.classes.len();
        let mut z = self.intercepts.clone();
        for (c, v) in self.tfidf(f, keys) {
            let start = c as usize * k;
            for (zc, w) in z.iter_mut().zip(&self.weights[start..start + k]) {
                *zc += v * w;
            }
        }
        softmax(&mut z);
        z
    }
}

/// In-place softmax, shifted by the maximum so that large scores cannot overflow.
pub(crate) fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// Index and value of the largest score; ties go to the first.
pub(crate) fn argmax(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
}

/// Documents prepared once for every fit: class, tokens and distinct interned term ids.
pub(crate) struct Corpus {
    pub classes: Vec<usize>,
    pub tokens: Vec<Vec<String>>,
    doc_terms: Vec<Vec<u32>>,
    terms: Vec<String>,
    /// Group of each row (see [`Corpus::with_groups`]); `None`: every row its own group.
    groups: Option<Vec<usize>>,
}

impl Corpus {
    pub fn new(f: &TextFeatures, docs: Vec<(Vec<String>, usize)>) -> Result<Self, ModelError> {
        let mut ids: FxHashMap<u64, u32> = FxHashMap::default();
        let mut terms: Vec<String> = Vec::new();
        let mut doc_terms = Vec::with_capacity(docs.len());
        let mut classes = Vec::with_capacity(docs.len());
        let mut tokens = Vec::with_capacity(docs.len());
        for (doc, class) in docs {
            let mut row = Vec::new();
            for (key, text) in distinct_terms(f, &doc) {
                let id = match ids.get(&key) {
                    Some(&id) if terms[id as usize] == text => id,
                    Some(&id) => {
                        return Err(ModelError::Train(format!(
                            "feature key collision between {:?} and {text:?}",
                            terms[id as usize]
                        )))
                    }
                    None => {
                        let id = u32::try_from(terms.len())
                            .map_err(|_| ModelError::Train("more than 2^32 terms".into()))?;
                        ids.insert(key, id);
                        terms.push(text);
                        id
                    }
                };
                row.push(id);
            }
            row.sort_unstable();
            doc_terms.push(row);
            classes.push(class);
            tokens.push(doc);
        }
        Ok(Corpus {
            classes,
            tokens,
            doc_terms,
            terms,
            groups: None,
        })
    }

    /// Rows with the same group id are kept in one cross-validation fold. Panics if the
    /// length differs from the number of rows (a programmer error).
    pub fn with_groups(mut self, groups: Vec<usize>) -> Self {
        assert_eq!(groups.len(), self.classes.len(), "one group per row");
        self.groups = Some(groups);
        self
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }
}

/// Picks at most `max_features` terms of the training rows by χ² (best class), ties by text.
fn select_vocabulary(
    f: &TextFeatures,
    corpus: &Corpus,
    rows: &[usize],
    k: usize,
) -> Vec<(String, f32)> {
    let n_terms = corpus.terms.len();
    let mut df = vec![0u32; n_terms];
    let mut class_df = vec![0u32; n_terms * k];
    let mut class_docs = vec![0u32; k];
    for &r in rows {
        let c = corpus.classes[r];
        class_docs[c] += 1;
        for &t in &corpus.doc_terms[r] {
            df[t as usize] += 1;
            class_df[t as usize * k + c] += 1;
        }
    }
    let n = rows.len() as f64;
    let mut candidates: Vec<(f64, u32)> = (0..n_terms)
        .filter(|&t| df[t] >= f.min_df)
        .map(|t| {
            let score = (0..k)
                .map(|c| {
                    let a = f64::from(class_df[t * k + c]);
                    let b = f64::from(df[t]) - a;
                    let cc = f64::from(class_docs[c]) - a;
                    let d = n - a - b - cc;
                    let denom = (a + cc) * (b + d) * (a + b) * (cc + d);
                    if denom > 0.0 {
                        n * (a * d - b * cc).powi(2) / denom
                    } else {
                        0.0
                    }
                })
                .fold(0.0, f64::max);
            (score, t as u32)
        })
        .collect();
    candidates.sort_unstable_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then_with(|| corpus.terms[x.1 as usize].cmp(&corpus.terms[y.1 as usize]))
    });
    candidates.truncate(f.max_features as usize);
    let mut vocabulary: Vec<(String, f32)> = candidates
        .into_iter()
        .map(|(_, t)| {
            let idf = smooth_idf(rows.len(), df[t as usize] as usize);
            (corpus.terms[t as usize].clone(), round(idf, 4))
        })
        .collect();
    vocabulary.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    vocabulary
}

/// Fitting parameters shared by the heads.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Cross-validation folds; 0 skips cross-validation.
    pub folds: usize,
    /// Seed of the fold assignment; fitting itself is deterministic.
    pub seed: u64,
    /// L2 regularisation strength (linfa's `alpha`).
    pub alpha: f32,
    /// L-BFGS iteration cap per fit.
    pub max_iterations: u64,
    /// Fits run at once; 0 = available cores.
    pub threads: usize,
    /// No per-fold lines on stderr.
    pub quiet: bool,
}

/// Fits one head on `rows` of the corpus (vocabulary chosen from those rows only).
fn fit(
    f: &TextFeatures,
    corpus: &Corpus,
    rows: &[usize],
    classes: &[String],
    opts: &FitOptions,
) -> Result<Head, ModelError> {
    let k = classes.len();
    let vocabulary = select_vocabulary(f, corpus, rows, k);
    let placeholder = Head {
        classes: classes.to_vec(),
        intercepts: vec![0.0; k],
        index: FxHashMap::default(),
        idf: Vec::new(),
        weights: Vec::new(),
        terms: Vec::new(),
        training: HeadTraining {
            data: Vec::new(),
            seed: opts.seed,
            alpha: opts.alpha,
            max_iterations: opts.max_iterations,
            prior_shift: 0.0,
            cv: None,
        },
    };
    // Vectorise through a zero-weight head built from the vocabulary: the exact inference path.
    let mut file = placeholder.to_file();
    file.vocabulary = vocabulary
        .iter()
        .map(|(t, idf)| TermEntry(t.clone(), *idf, vec![0.0; k]))
        .collect();
    let lookup = Head::from_file(file, "fit").map_err(ModelError::Train)?;
    let mut x = Array2::<f32>::zeros((rows.len(), vocabulary.len()));
    let mut keys = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        term_keys(f, &corpus.tokens[r], &mut keys);
        for (c, v) in lookup.tfidf(f, &keys) {
            x[[i, c as usize]] = v;
        }
    }
    let y: Array1<usize> = rows.iter().map(|&r| corpus.classes[r]).collect();
    let model = MultiLogisticRegression::<f32>::default()
        .alpha(opts.alpha)
        .max_iterations(opts.max_iterations)
        .fit(&linfa::Dataset::new(x, y))
        .map_err(|e| ModelError::Train(format!("linfa-logistic: {e}")))?;
    if model.classes().len() != k {
        return Err(ModelError::Train(format!(
            "a fit saw {} of {k} classes",
            model.classes().len()
        )));
    }
    let params = model.params();
    let mut head = lookup;
    head.weights = vec![0f32; vocabulary.len() * k];
    // linfa orders its columns by sorted class value; map them back to class indices.
    for (col, &class) in model.classes().iter().enumerate() {
        head.intercepts[class] = model.intercept()[col];
        for t in 0..vocabulary.len() {
            head.weights[t * k + class] = params[[t, col]];
        }
    }
    Ok(head)
}

impl Head {
    /// L2-normalised TF-IDF values of the known terms, each column once, in the order of the
    /// first occurrence of its term among `keys`. The inference paths (`model::inference`)
    /// count terms in that order too and sum in it, so their results are the same bits; it
    /// spares them sorting the columns of every event.
    fn tfidf(&self, f: &TextFeatures, keys: &[u64]) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = Vec::new();
        let mut position: FxHashMap<u32, usize> = FxHashMap::default();
        for c in keys.iter().filter_map(|k| self.index.get(k).copied()) {
            match position.entry(c) {
                std::collections::hash_map::Entry::Occupied(at) => out[*at.get()].1 += 1.0,
                std::collections::hash_map::Entry::Vacant(at) => {
                    at.insert(out.len());
                    out.push((c, 1.0));
                }
            }
        }
        for (c, v) in &mut out {
            let tf = if f.sublinear_tf { 1.0 + v.ln() } else { *v };
            *v = tf * self.idf[*c as usize];
        }
        let norm = out.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            for (_, v) in &mut out {
                *v /= norm;
            }
        }
        out
    }
}

/// Stratified fold of every row: each class shuffled with the seed and dealt round-robin.
pub(crate) fn stratified_folds(classes: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; classes.len()];
    let mut next = 0usize;
    for c in 0..k {
        let mut members: Vec<usize> = (0..classes.len()).filter(|&i| classes[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold_of[i] = next % folds.max(1);
            next += 1;
        }
    }
    fold_of
}

/// The outcome of [`cross_validate_and_fit`].
pub(crate) struct Fitted {
    /// Fitted on every row, prior correction applied, provenance filled but for `data`.
    pub head: Head,
    /// Pooled out-of-fold report with the chosen prior correction; `None` without folds.
    pub report: Option<ClassReport>,
    /// Out-of-fold probabilities (after prior correction), per row; empty without folds.
    pub oof: Vec<Vec<f32>>,
}

/// Cross-validates (folds in parallel with the final fit), chooses the prior correction on
/// the out-of-fold predictions, and fits on all rows.
pub(crate) fn cross_validate_and_fit(
    f: &TextFeatures,
    corpus: &Corpus,
    classes: &[String],
    opts: &FitOptions,
    name: &str,
    shift_grid: &[f32],
) -> Result<Fitted, ModelError> {
    let k = classes.len();
    let n = corpus.len();
    if opts.folds == 1 {
        return Err(ModelError::Train(
            "folds must be 0 (no cross-validation) or at least 2".into(),
        ));
    }
    for (c, class) in classes.iter().enumerate() {
        let count = corpus.classes.iter().filter(|&&x| x == c).count();
        if count < opts.folds.max(1) {
            return Err(ModelError::Train(format!(
                "{name}: class {class} has {count} rows, fewer than the {} folds",
                opts.folds.max(1)
            )));
        }
    }
    // Rows of one group (a document and its augmented copies) share a fold, so no copy of a
    // held-out document is trained on; groups are stratified by the class of their first row.
    let fold_of = match &corpus.groups {
        None => stratified_folds(&corpus.classes, k, opts.folds, opts.seed),
        Some(groups) => {
            let n_groups = groups.iter().max().map_or(0, |&g| g + 1);
            let mut group_class = vec![usize::MAX; n_groups];
            for (i, &g) in groups.iter().enumerate() {
                if group_class[g] == usize::MAX {
                    group_class[g] = corpus.classes[i];
                }
            }
            let group_class: Vec<usize> = group_class.into_iter().map(|c| c.min(k - 1)).collect();
            let group_fold = stratified_folds(&group_class, k, opts.folds, opts.seed);
            groups.iter().map(|&g| group_fold[g]).collect()
        }
    };
    let jobs = opts.folds + 1;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()),
        t => t,
    }
    .min(jobs);
    let progress = ProgressBar::new(jobs as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(format!("{name} fits"));
    progress.enable_steady_tick(Duration::from_millis(200));
    let say = |line: String| {
        if opts.quiet {
        } else if progress.is_hidden() {
            eprintln!("{line}");
        } else {
            progress.println(line);
        }
    };
    type JobOut = (Head, Vec<(usize, Vec<f32>)>);
    let run_job = |job: usize| -> Result<JobOut, ModelError> {
        if job == opts.folds {
            let rows: Vec<usize> = (0..n).collect();
            return Ok((fit(f, corpus, &rows, classes, opts)?, Vec::new()));
        }
        let (train, test): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold_of[i] != job);
        let head = fit(f, corpus, &train, classes, opts)?;
        let mut keys = Vec::new();
        let predictions = test
            .iter()
            .map(|&r| {
                term_keys(f, &corpus.tokens[r], &mut keys);
                (r, head.probabilities(f, &keys))
            })
            .collect();
        say(format!("{name}: fold {}/{} done", job + 1, opts.folds));
        Ok((head, predictions))
    };
    let next_job = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<JobOut, ModelError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let job = next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if job >= jobs {
                            break;
                        }
                        done.push((job, run_job(job)));
                        progress.inc(1);
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(done) => done,
                Err(_) => vec![(
                    usize::MAX,
                    Err(ModelError::Train("a fit thread panicked".into())),
                )],
            })
            .collect()
    });
    progress.finish_and_clear();
    results.sort_by_key(|(job, _)| *job);
    let mut oof: Vec<Vec<f32>> = vec![Vec::new(); if opts.folds > 0 { n } else { 0 }];
    let mut final_head = None;
    for (job, result) in results {
        let (head, predictions) = result?;
        if job == opts.folds {
            final_head = Some(head);
        } else {
            for (r, p) in predictions {
                oof[r] = p;
            }
        }
    }
    let mut head = final_head.ok_or_else(|| ModelError::Train("final fit missing".into()))?;

    let mut prior = vec![0f32; k];
    for &c in &corpus.classes {
        prior[c] += 1.0 / n as f32;
    }
    let (mut shift, mut report) = (0.0, None);
    if opts.folds > 0 {
        let mut best: Option<(f32, f32, ClassReport)> = None;
        for &tau in shift_grid {
            let shifted: Vec<Vec<f32>> = oof.iter().map(|p| shift_probs(p, &prior, tau)).collect();
            let r = ClassReport::from_probabilities(classes, &corpus.classes, &shifted);
            if best.as_ref().is_none_or(|b| r.macro_f1 > b.1 + 1e-6) {
                best = Some((tau, r.macro_f1, r));
            }
        }
        if let Some((tau, _, r)) = best {
            shift = tau;
            oof = oof.iter().map(|p| shift_probs(p, &prior, tau)).collect();
            say(format!(
                "{name}: out-of-fold accuracy {:.4}, macro-F1 {:.4} (prior shift {tau})",
                r.accuracy, r.macro_f1
            ));
            report = Some(r);
        }
    }
    for (c, b) in head.intercepts.iter_mut().enumerate() {
        *b -= shift * prior[c].max(1e-6).ln();
    }
    head.training.prior_shift = shift;
    head.training.cv = report.as_ref().map(|r| CvFigures {
        folds: opts.folds,
        accuracy: round(r.accuracy, 4),
        macro_f1: round(r.macro_f1, 4),
        per_class_f1: r
            .classes
            .iter()
            .zip(&r.per_class)
            .map(|(c, m)| (c.clone(), round(m.f1, 4)))
            .collect(),
    });
    Ok(Fitted { head, report, oof })
}

/// Probabilities re-weighted by `prior^-tau` and renormalised: the same as lowering each
/// intercept by `tau·ln(prior)`.
fn shift_probs(p: &[f32], prior: &[f32], tau: f32) -> Vec<f32> {
    let mut z: Vec<f32> = p
        .iter()
        .zip(prior)
        .map(|(&p, &q)| p.max(1e-30).ln() - tau * q.max(1e-6).ln())
        .collect();
    softmax(&mut z);
    z
}

/// Confidence thresholds of the coverage table.
pub const THRESHOLDS: [f32; 8] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    pub support: usize,
}

/// Classification figures: per class, confusion matrix, accuracy, macro-F1, and coverage and
/// accuracy of the predictions whose confidence reaches each threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    pub classes: Vec<String>,
    pub examples: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// `(threshold, coverage, accuracy among covered)`.
    pub thresholds: Vec<(f32, f32, f32)>,
}

impl ClassReport {
    /// From true class indices and predicted (class, confidence). Panics if the lengths differ
    /// or an index is out of range: callers build both.
    pub fn new(classes: &[String], truth: &[usize], predicted: &[(usize, f32)]) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let k = classes.len();
        let n = truth.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &(p, _)) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: usize = confusion[c].iter().sum();
                let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
                let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        // Classes absent from the evaluation set say nothing: left out of the macro average.
        let present: Vec<f32> = per_class
            .iter()
            .filter(|m| m.support > 0)
            .map(|m| m.f1)
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f32>() / present.len() as f32
        };
        let thresholds = THRESHOLDS
            .iter()
            .map(|&thr| {
                let (covered, right) = truth.iter().zip(predicted).fold(
                    (0, 0),
                    |(covered, right), (&t, &(p, conf))| {
                        if conf >= thr {
                            (covered + 1, right + usize::from(t == p))
                        } else {
                            (covered, right)
                        }
                    },
                );
                (thr, ratio(covered, n), ratio(right, covered))
            })
            .collect();
        ClassReport {
            classes: classes.to_vec(),
            examples: n,
            accuracy: ratio((0..k).map(|c| confusion[c][c]).sum(), n),
            macro_f1,
            per_class,
            confusion,
            thresholds,
        }
    }

    /// From probability vectors (argmax is the prediction).
    pub fn from_probabilities(classes: &[String], truth: &[usize], probs: &[Vec<f32>]) -> Self {
        let predicted: Vec<(usize, f32)> = probs.iter().map(|p| argmax(p)).collect();
        ClassReport::new(classes, truth, &predicted)
    }
}

impl fmt::Display for ClassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "examples {}  accuracy {:.4}  macro-F1 {:.4}",
            self.examples, self.accuracy, self.macro_f1
        )?;
        writeln!(
            f,
            "\n{:<10} {:>9} {:>9} {:>9} {:>8}",
            "class", "precision", "recall", "F1", "support"
        )?;
        for (c, m) in self.classes.iter().zip(&self.per_class) {
            writeln!(
                f,
                "{c:<10} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                m.precision, m.recall, m.f1, m.support
            )?;
        }
        writeln!(f, "\nconfusion (rows: truth, columns: predicted)")?;
        write!(f, "{:<10}", "")?;
        for c in &self.classes {
            write!(f, " {:>8}", c.chars().take(8).collect::<String>())?;
        }
        writeln!(f)?;
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            write!(f, "{c:<10}")?;
            for count in row {
                write!(f, " {count:>8}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "\n{:>9} {:>9} {:>9}",
            "confidence", "coverage", "accuracy"
        )?;
        for (thr, coverage, accuracy) in &self.thresholds {
            writeln!(f, "{thr:>9.2} {coverage:>9.4} {accuracy:>9.4}")?;
        }
        Ok(())
    }
}

/// Reads a whole file, refusing one larger than `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ModelError> {
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(ModelError::Data {
            path: path.display().to_string(),
            line: 0,
            message: format!("file is {len} bytes, more than the {max} accepted"),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written model.
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let err = |message: String| ModelError::Save {
        path: out.display().to_string(),
        message,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, out).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TextFeatures {
        TextFeatures {
            version: TEXT_FEATURE_VERSION,
            word_unigrams: true,
            word_bigrams: true,
            char_ngram_min: 1,
            char_ngram_max: 2,
            max_chars: 1000,
            min_df: 1,
            max_features: 100,
            sublinear_tf: true,
        }
    }

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn written_terms_map_back_to_their_keys() {
        for (key, text) in distinct_terms(&settings(), &toks("路灯 坏了 没人 修")) {
            assert_eq!(key_of_term(&text), Some(key), "{text}");
        }
    }

    #[test]
    fn fingerprint_follows_settings() {
        let a = settings();
        let mut b = a.clone();
        b.char_ngram_max = 3;
        assert_eq!(a.fingerprint(), settings().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn other_feature_version_is_refused() {
        let mut f = settings();
        f.version += 1;
        assert!(f.validate().unwrap_err().contains("features.version"));
    }

    #[test]
    fn prior_shift_favours_rare_classes() {
        let p = shift_probs(&[0.6, 0.4], &[0.9, 0.1], 1.0);
        assert!(p[1] > p[0], "{p:?}");
        assert_eq!(shift_probs(&[0.6, 0.4], &[0.9, 0.1], 0.0)[0], 0.6);
    }

    #[test]
    fn report_counts_confusion_and_macro_f1() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let r = ClassReport::new(
            &classes,
            &[0, 0, 1, 1],
            &[(0, 0.9), (1, 0.6), (1, 0.8), (1, 0.3)],
        );
        assert_eq!(r.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert!((r.accuracy - 0.75).abs() < 1e-6);
        let f1_a = 2.0 * 1.0 * 0.5 / 1.5;
        let f1_b = 2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0);
        assert!((r.macro_f1 - (f1_a + f1_b) / 2.0).abs() < 1e-6);
        // At 0.5: three covered, two right.
        let (_, coverage, accuracy) = r.thresholds[2];
        assert!((coverage - 0.75).abs() < 1e-6 && (accuracy - 2.0 / 3.0).abs() < 1e-6);
    }
}
