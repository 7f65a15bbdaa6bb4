//! Fast inference for every model of the classify stage (category, emotion/polarity,
//! relevance), which runs right after segmentation on every event.
//!
//! [`TermPlan`] turns a document's tokens into the feature slots of its vocabulary terms
//! through a bounded per-thread cache of tokens, so that most terms are never hashed per event
//! (see its doc). The category model counts those slots with its own vectorizer; for the
//! linear heads of the sentiment and relevance models, [`FusedHeads`] puts the vocabularies of
//! the heads that read one token stream (the emotion and polarity heads) behind one slot space
//! and counts term frequencies in per-thread tables instead of collecting and sorting every hit.
//! The classify stage itself runs all of them through one [`JointPlan`]: the union of every
//! vocabulary behind a single per-thread token cache, whose entry for a token gives the column
//! of each of its terms in every head. An event's tokens are then hashed once for all models
//! (its content tokens not at all: they are read off the words of the same cut,
//! [`entries_of_subsequence`]), each token stream's terms are counted once for all heads that
//! read it, and the per-model
//! plans serve only callers of a single model (evaluation, tests) and the joint plan's
//! fallbacks.
//!
//! The arithmetic is the same as the reference paths (`Head::probabilities`,
//! `Vectorizer::vectorize`), in the same order, so the probabilities are bit-for-bit identical —
//! the tests compare the two on real texts.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::linear::{key_of_term, softmax, HeadFile, TextFeatures};

/// Marks "this head does not know the term" in a slot.
const ABSENT: u32 = u32::MAX;

/// One head's numbers, as `Head` holds them.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    intercepts: Vec<f32>,
    /// Per column its idf then its `k` weights: `rows[column * (k + 1)..]`. One column's numbers
    /// share a cache line, which the separate arrays of `Head` do not: the tables are cold
    /// after segmentation, and a miss per column read was a visible share of the stage.
    rows: Vec<f32>,
    columns: usize,
    k: usize,
}

/// Several heads over one key stream.
#[derive(Debug, Clone)]
pub(crate) struct FusedHeads {
    /// Term key → slot.
    index: FxHashMap<u64, u32>,
    /// Per slot, the term's column in each head (or [`ABSENT`]); `slots[slot * heads + h]`.
    slots: Vec<u32>,
    tables: Vec<Table>,
    /// Token → slots, when the features allow it (see [`PlanSettings::new`]).
    plan: Option<TermPlan>,
}

/// Per-thread scratch: term counts per head column (all zero between calls), each head's
/// columns in the order of their first count, and the hits of one head.
#[derive(Default)]
struct Scratch {
    counts: Vec<Vec<f32>>,
    firsts: Vec<Vec<u32>>,
    hits: Vec<(u32, f32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl FusedHeads {
    /// From the heads as stored; call after `Head::from_file` accepted each of them, so that
    /// terms, weights and idf are known to be well-formed. The error names the head and entry.
    pub fn new(f: &TextFeatures, heads: &[(&HeadFile, &str)]) -> Result<Self, String> {
        let n = heads.len();
        let mut index: FxHashMap<u64, u32> = FxHashMap::default();
        let mut slots: Vec<u32> = Vec::new();
        let mut tables = Vec::with_capacity(n);
        for (h, (file, name)) in heads.iter().enumerate() {
            let k = file.classes.len();
            let mut table = Table {
                intercepts: file.intercepts.clone(),
                rows: Vec::with_capacity(file.vocabulary.len() * (k + 1)),
                columns: file.vocabulary.len(),
                k,
            };
            for (column, entry) in file.vocabulary.iter().enumerate() {
                let key = key_of_term(&entry.0)
                    .ok_or_else(|| format!("{name}.vocabulary[{column}]: malformed term"))?;
                if entry.2.len() != k {
                    return Err(format!("{name}.vocabulary[{column}]: expected {k} weights"));
                }
                let column = u32::try_from(column)
                    .map_err(|_| format!("{name}.vocabulary: too many terms"))?;
                let next = u32::try_from(slots.len() / n)
                    .map_err(|_| format!("{name}.vocabulary: too many terms"))?;
                let slot = *index.entry(key).or_insert_with(|| {
                    slots.extend(std::iter::repeat_n(ABSENT, n));
                    next
                });
                slots[slot as usize * n + h] = column;
                table.rows.push(entry.1);
                table.rows.extend_from_slice(&entry.2);
            }
            tables.push(table);
        }
        let plan = PlanSettings::of_text_features(f).map(|settings| {
            let terms = heads.iter().flat_map(|(file, _)| {
                file.vocabulary.iter().filter_map(|entry| {
                    let slot = index.get(&key_of_term(&entry.0)?)?;
                    Some((entry.0.as_str(), *slot))
                })
            });
            TermPlan::new(settings, terms)
        });
        Ok(FusedHeads {
            index,
            slots,
            tables,
            plan,
        })
    }

    /// What [`Self::probabilities`] gives for the term keys of `tokens`, through the token
    /// cache of the plan; `None` where the document must take the key path (see
    /// [`TermPlan::with_hits`]). `skip_ascii` drops all-ASCII tokens first.
    pub fn probabilities_of_tokens<T: AsRef<str>>(
        &self,
        f: &TextFeatures,
        tokens: &[T],
        skip_ascii: bool,
    ) -> Option<Vec<Vec<f32>>> {
        self.plan.as_ref()?.with_hits(tokens, skip_ascii, |hits| {
            self.probabilities_of_slots(f, hits.iter().copied())
        })
    }

    /// Class probabilities of every head for a document given as term keys: what
    /// `Head::probabilities(f, keys)` gives for each head, computed in one pass over the keys.
    pub fn probabilities(&self, f: &TextFeatures, keys: &[u64]) -> Vec<Vec<f32>> {
        let slots = keys.iter().filter_map(|key| self.index.get(key).copied());
        self.probabilities_of_slots(f, slots)
    }

    /// Whether [`Self::probabilities_of_tokens`] takes the plan for this document.
    #[cfg(test)]
    pub fn plan_applies<T: AsRef<str>>(&self, tokens: &[T], skip_ascii: bool) -> bool {
        self.plan
            .as_ref()
            .and_then(|plan| plan.with_hits(tokens, skip_ascii, |_| ()))
            .is_some()
    }

    /// Class probabilities of every head from the slot of every term occurrence, in the
    /// reference walk order (each head sums its columns in the order of their first
    /// occurrence, as `Head::tfidf` does).
    fn probabilities_of_slots(
        &self,
        f: &TextFeatures,
        hits: impl Iterator<Item = u32>,
    ) -> Vec<Vec<f32>> {
        let n = self.tables.len();
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.counts.resize_with(n, Vec::new);
            scratch.firsts.resize_with(n, Vec::new);
            for (h, table) in self.tables.iter().enumerate() {
                let columns = table.columns;
                if scratch.counts[h].len() < columns {
                    scratch.counts[h].resize(columns, 0.0);
                }
                scratch.firsts[h].clear();
            }
            for slot in hits {
                let columns = &self.slots[slot as usize * n..(slot as usize + 1) * n];
                for (h, &column) in columns.iter().enumerate() {
                    if column != ABSENT {
                        let count = &mut scratch.counts[h][column as usize];
                        if *count == 0.0 {
                            scratch.firsts[h].push(column);
                        }
                        *count += 1.0;
                    }
                }
            }
            let Scratch {
                counts,
                firsts,
                hits,
            } = scratch;
            self.tables
                .iter()
                .enumerate()
                .map(|(h, table)| {
                    // Each column once with its count, in the order in which `Head::tfidf`
                    // sums, so the floating-point results are the same.
                    hits.clear();
                    hits.extend(
                        firsts[h]
                            .iter()
                            .map(|&c| (c, std::mem::take(&mut counts[h][c as usize]))),
                    );
                    table.probabilities(f, hits)
                })
                .collect()
        })
    }
}

impl Table {
    /// A head as term-major rows: `idf[column]` then `weights[column * k..][..k]`.
    pub(crate) fn new(intercepts: &[f32], idf: &[f32], weights: &[f32]) -> Option<Self> {
        let k = intercepts.len();
        if k == 0 || weights.len() != idf.len() * k {
            return None;
        }
        let mut rows = Vec::with_capacity(idf.len() * (k + 1));
        for (column, &idf) in idf.iter().enumerate() {
            rows.push(idf);
            rows.extend_from_slice(&weights[column * k..(column + 1) * k]);
        }
        Some(Table {
            intercepts: intercepts.to_vec(),
            rows,
            columns: idf.len(),
            k,
        })
    }

    /// `Head::tfidf` then `Head::probabilities` on `(column, count)` hits, in the order of
    /// their first occurrence.
    fn probabilities(&self, f: &TextFeatures, hits: &mut [(u32, f32)]) -> Vec<f32> {
        let mut z = self.margins(f.sublinear_tf, hits);
        softmax(&mut z);
        z
    }

    /// The margins before the softmax from `(column, count)` hits: TF-IDF weighting, L2 norm
    /// and dot product, each summed in the order of `hits` (the caller's reference order).
    fn margins(&self, sublinear_tf: bool, hits: &mut [(u32, f32)]) -> Vec<f32> {
        for (c, v) in hits.iter_mut() {
            // Most terms occur once, and ln(1) is exactly 0: that logarithm is skipped.
            let tf = match (sublinear_tf, *v) {
                (true, 1.0) => 1.0,
                (true, count) => 1.0 + count.ln(),
                (false, count) => count,
            };
            *v = tf * self.rows[*c as usize * (self.k + 1)];
        }
        let norm = hits.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            for (_, v) in hits.iter_mut() {
                *v /= norm;
            }
        }
        // The class counts of the shipped heads get a loop of fixed length, which the compiler
        // unrolls and vectorises across classes; each class still sums its hits in order, with
        // a separate multiply and add, so the margins are bit-for-bit the same.
        match self.k {
            2 => self.dot::<2>(hits),
            6 => self.dot::<6>(hits),
            7 => self.dot::<7>(hits),
            k => {
                let mut z = self.intercepts.clone();
                for &(c, v) in hits.iter() {
                    let start = c as usize * (k + 1) + 1;
                    for (zc, w) in z.iter_mut().zip(&self.rows[start..start + k]) {
                        *zc += v * w;
                    }
                }
                z
            }
        }
    }

    /// The intercepts plus each hit's weighted row, for a head of `K` classes (`self.k == K`).
    fn dot<const K: usize>(&self, hits: &[(u32, f32)]) -> Vec<f32> {
        let mut z = [0.0f32; K];
        z.copy_from_slice(&self.intercepts);
        for &(c, v) in hits {
            let start = c as usize * (K + 1) + 1;
            for (zc, w) in z.iter_mut().zip(&self.rows[start..start + K]) {
                *zc += v * w;
            }
        }
        z.to_vec()
    }
}

/// "No vocabulary term" in a slot field of a cached token.
const NONE: u32 = u32::MAX;
/// Tokens longer than this (in bytes) are not cached: a document holding one is scored by the
/// reference path. Bounds the memory of one cache entry; jieba's words are far shorter.
const MAX_CACHED_TOKEN_BYTES: usize = 96;
/// Distinct tokens a [`TokenCache`] holds. When a document brings a new token into a full
/// cache, that document is scored by the reference path and the cache is emptied before the
/// next one: simple, bounded, and it follows a drifting vocabulary.
const MAX_CACHED_TOKENS: usize = 16_384;
/// Slot lists of all cached tokens together; reaching it counts as a full cache.
const MAX_ARENA_SLOTS: usize = 1 << 20;
/// Plans whose caches one thread keeps (one per loaded model is three); the least recently
/// added is dropped beyond that, as tests that load many models would otherwise grow it.
const MAX_CACHES_PER_THREAD: usize = 8;

/// Which term kinds a vocabulary uses and how much input it reads: the parts of the feature
/// settings ([`TextFeatures`], `FeatureSettings`) that the fast path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanSettings {
    word_unigrams: bool,
    word_bigrams: bool,
    char_unigrams: bool,
    char_bigrams: bool,
    max_chars: usize,
}

impl PlanSettings {
    /// `None` for character n-grams longer than two: the plan keeps only unigram and bigram
    /// tables, and models with longer n-grams stay on the reference path.
    pub fn new(
        word_unigrams: bool,
        word_bigrams: bool,
        char_ngram_min: u32,
        char_ngram_max: u32,
        max_chars: u32,
    ) -> Option<Self> {
        let chars = char_ngram_min..=char_ngram_max;
        if char_ngram_min > 0 && char_ngram_max > 2 {
            return None;
        }
        Some(PlanSettings {
            word_unigrams,
            word_bigrams,
            char_unigrams: char_ngram_min > 0 && chars.contains(&1),
            char_bigrams: char_ngram_min > 0 && chars.contains(&2),
            max_chars: max_chars as usize,
        })
    }

    pub fn of_text_features(f: &TextFeatures) -> Option<Self> {
        Self::new(
            f.word_unigrams,
            f.word_bigrams,
            f.char_ngram_min,
            f.char_ngram_max,
            f.max_chars,
        )
    }
}

/// A vocabulary compiled for token-at-a-time lookup: what feature slot each term text has,
/// split by kind so that most of a document's terms come from a per-token cache.
///
/// The reference path hashes every term occurrence of a document (word, word pair, every
/// character and character pair) and probes the vocabulary map with each: ~1,800 probes of a
/// 20,000-entry map for a 1 KB message. Here a token's own terms (the word, its characters and
/// the character pairs inside it) are looked up once per token per thread and cached; per
/// document only the terms that span two tokens are looked up: the word pair (only when both
/// words occur as halves of some vocabulary pair, usually they do not) and the character pair
/// across the boundary, in a table of character pairs alone.
///
/// Terms are matched by text, the reference by their 64-bit key; the two differ only when an
/// input term's key collides with that of a different vocabulary term.
#[derive(Debug, Clone)]
pub(crate) struct TermPlan {
    /// Names this plan's per-thread cache; clones share it, as they map tokens the same way.
    id: u64,
    settings: PlanSettings,
    words: FxHashMap<Box<str>, u32>,
    chars: FxHashMap<char, u32>,
    /// `pack(a, b)` of a character pair → slot.
    char_pairs: FxHashMap<u64, u32>,
    /// First and second words of the word-pair terms → small ids.
    lefts: FxHashMap<Box<str>, u32>,
    rights: FxHashMap<Box<str>, u32>,
    /// `pack(left id, right id)` → slot.
    pairs: FxHashMap<u64, u32>,
}

fn pack(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Tokens up to this many bytes (eight Han characters) keep their text inside their
/// [`Entry`]: checking a cache hit then reads the line the entry is read from anyway, instead of
/// a heap string elsewhere (that extra cache miss per token was the largest single cost).
const INLINE_KEY_BYTES: usize = 24;

/// One token as the plan sees it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The token's text when it is at most [`INLINE_KEY_BYTES`] long (`key_len` bytes).
    key: [u8; INLINE_KEY_BYTES],
    key_len: u8,
    /// Characters after whitespace is dropped; 0 for a token the features skip.
    chars: u32,
    first: char,
    last: char,
    word: u32,
    left: u32,
    right: u32,
    /// `arena[start..start + singles]`: slots of its characters that are terms, in order;
    /// then `pairs` slots of its inner character pairs.
    start: u32,
    singles: u32,
    pairs: u32,
}

/// What every cached entry records of a token's text, whatever its plan.
struct TokenText<'a> {
    /// The token's text when it is at most [`INLINE_KEY_BYTES`] long (`key_len` bytes).
    key: [u8; INLINE_KEY_BYTES],
    key_len: u8,
    /// The text the features read: the token without whitespace (almost no token has any).
    word: &'a str,
    chars: u32,
    /// `None` for a token the features skip (nothing left without whitespace).
    first: Option<char>,
    last: char,
}

/// Where a token's character terms sit in its plan's arena.
struct ArenaTerms {
    start: u32,
    singles: u32,
    pairs: u32,
}

impl<'a> TokenText<'a> {
    fn new(token: &'a str, scratch: &'a mut String) -> Self {
        let word = if token.chars().any(char::is_whitespace) {
            scratch.clear();
            scratch.extend(token.chars().filter(|c| !c.is_whitespace()));
            scratch.as_str()
        } else {
            token
        };
        let mut key = [0u8; INLINE_KEY_BYTES];
        let key_len = if token.len() <= INLINE_KEY_BYTES {
            key[..token.len()].copy_from_slice(token.as_bytes());
            token.len() as u8
        } else {
            0
        };
        let first = word.chars().next();
        TokenText {
            key,
            key_len,
            word,
            chars: if first.is_some() {
                word.chars().count() as u32
            } else {
                0
            },
            first,
            last: word.chars().next_back().unwrap_or('\0'),
        }
    }

    /// Pushes the terms of the word's characters, then of its inner character pairs, onto
    /// `arena`, in order.
    fn push_char_terms<A>(
        &self,
        arena: &mut Vec<A>,
        char_term: impl Fn(char) -> Option<A>,
        pair_term: impl Fn(char, char) -> Option<A>,
    ) -> ArenaTerms {
        let start = arena.len();
        arena.extend(self.word.chars().filter_map(char_term));
        let singles = arena.len() - start;
        let mut chars = self.word.chars();
        if let Some(mut previous) = chars.next() {
            for c in chars {
                arena.extend(pair_term(previous, c));
                previous = c;
            }
        }
        ArenaTerms {
            start: start as u32,
            singles: singles as u32,
            pairs: (arena.len() - start - singles) as u32,
        }
    }
}

/// A cached token's entry, as [`TokenTable`] needs to read it.
trait CachedToken {
    /// The token's text when it is at most [`INLINE_KEY_BYTES`] long.
    fn key(&self) -> &[u8];
    /// Characters after whitespace is dropped; 0 for a token the features skip.
    fn chars(&self) -> u32;
}

impl CachedToken for Entry {
    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
    fn chars(&self) -> u32 {
        self.chars
    }
}

/// Tokens one thread has seen → their entries `E` (whose term lists live in `arena`), for a
/// per-model [`TokenCache`] and the [`JointCache`] alike. Bounded by [`MAX_CACHED_TOKENS`]
/// and [`MAX_ARENA_SLOTS`]: a document that finds it full is declined and the table is
/// emptied before the next one.
struct TokenTable<E, A> {
    /// Hash of a short token's text → entry, whose key confirms the match.
    index: FxHashMap<u64, u32>,
    /// Longer tokens (rare) by their text.
    long: FxHashMap<Box<str>, u32>,
    entries: Vec<E>,
    arena: Vec<A>,
    /// Set when a document found the table full; emptied before the next document.
    full: bool,
    text: String,
}

impl<E: CachedToken, A> TokenTable<E, A> {
    fn new() -> Self {
        TokenTable {
            index: FxHashMap::default(),
            long: FxHashMap::default(),
            entries: Vec::new(),
            arena: Vec::new(),
            full: false,
            text: String::new(),
        }
    }

    /// Empties a table that a document found full; called before each document.
    fn clear_if_full(&mut self) {
        if self.full {
            self.index.clear();
            self.long.clear();
            self.entries.clear();
            self.arena.clear();
            self.full = false;
        }
    }

    /// Fills `doc` with the entries of the tokens that have characters (building the entry
    /// of a new token with `make`) and returns their characters in all. `None` when the
    /// document must take the models' reference paths: the total passes `limit` (the
    /// reference cuts a long document there), a token too long to cache, a full table, or
    /// two tokens with one hash.
    ///
    /// With `every`, it also gets each token's entry in token order ([`NO_ENTRY`] for one
    /// without characters), for [`entries_of_subsequence`].
    fn resolve<'t>(
        &mut self,
        tokens: impl Iterator<Item = &'t str>,
        limit: usize,
        doc: &mut Vec<u32>,
        mut every: Option<&mut Vec<u32>>,
        mut make: impl FnMut(&str, &mut String, &mut Vec<A>) -> E,
    ) -> Option<usize> {
        doc.clear();
        if let Some(every) = every.as_deref_mut() {
            every.clear();
        }
        let mut total = 0usize;
        for token in tokens {
            let short = token.len() <= INLINE_KEY_BYTES;
            let hash = FxBuildHasher.hash_one(token.as_bytes());
            let found = if short {
                self.index.get(&hash).copied()
            } else {
                self.long.get(token).copied()
            };
            let at = match found {
                Some(at) => {
                    if short && self.entries[at as usize].key() != token.as_bytes() {
                        return None;
                    }
                    at
                }
                None => {
                    if token.len() > MAX_CACHED_TOKEN_BYTES {
                        return None;
                    }
                    if self.entries.len() >= MAX_CACHED_TOKENS
                        || self.arena.len() >= MAX_ARENA_SLOTS
                    {
                        self.full = true;
                        return None;
                    }
                    let entry = make(token, &mut self.text, &mut self.arena);
                    let at = self.entries.len() as u32;
                    self.entries.push(entry);
                    if short {
                        self.index.insert(hash, at);
                    } else {
                        self.long.insert(token.into(), at);
                    }
                    at
                }
            };
            let chars = self.entries[at as usize].chars() as usize;
            if let Some(every) = every.as_deref_mut() {
                every.push(if chars > 0 { at } else { NO_ENTRY });
            }
            if chars > 0 {
                total += chars;
                if total > limit {
                    return None;
                }
                doc.push(at);
            }
        }
        Some(total)
    }
}

/// In [`TokenTable::resolve`]'s `every`: a token without characters, which no document lists.
const NO_ENTRY: u32 = u32::MAX;

#[cfg(test)]
thread_local! {
    /// Documents whose content tokens [`entries_of_subsequence`] resolved, on this thread.
    static SUBSEQUENCES_RESOLVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What [`entries_of_subsequence`] found.
enum ReadOff {
    /// The entries are in `doc`; the document's characters in all.
    Resolved(usize),
    /// The characters pass the limit: the reference paths take the document, as
    /// [`TokenTable::resolve`] would have said.
    OverLimit,
    /// Some token is not one of the resolved tokens: resolve them by their text instead.
    NotAmongTheTokens,
}

/// Fills `doc` with the entries of `subset`'s tokens without hashing them, when each is one
/// of the already resolved `tokens` — the same slice of the same text (pointer and length), in
/// the same order — whose entries `every` holds ([`TokenTable::resolve`]). The classify stage's
/// content tokens are such a subsequence of the words the sentiment heads read: one cut, with
/// the stop words dropped. Callers with tokens of their own (evaluation, tests) get
/// [`ReadOff::NotAmongTheTokens`] and resolve by text; the entries are the same either way.
fn entries_of_subsequence<'t, E: CachedToken, T: AsRef<str>>(
    subset: impl Iterator<Item = &'t str>,
    tokens: &[T],
    every: &[u32],
    entries: &[E],
    limit: usize,
    doc: &mut Vec<u32>,
) -> ReadOff {
    doc.clear();
    let mut total = 0usize;
    let mut next = 0usize;
    for token in subset {
        let same = |t: &T| {
            let t = t.as_ref();
            t.as_ptr() == token.as_ptr() && t.len() == token.len()
        };
        let Some(offset) = tokens[next..].iter().position(same) else {
            return ReadOff::NotAmongTheTokens;
        };
        let at = every[next + offset];
        next += offset + 1;
        if at == NO_ENTRY {
            continue;
        }
        total += entries[at as usize].chars() as usize;
        if total > limit {
            return ReadOff::OverLimit;
        }
        doc.push(at);
    }
    ReadOff::Resolved(total)
}

/// Per thread and plan: tokens seen → [`Entry`], and the buffers of one document.
struct TokenCache {
    plan: u64,
    table: TokenTable<Entry, u32>,
    /// Entries of the current document's non-empty tokens, in order.
    doc: Vec<u32>,
    hits: Vec<u32>,
}

impl TokenCache {
    fn new(plan: u64) -> Self {
        TokenCache {
            plan,
            table: TokenTable::new(),
            doc: Vec::new(),
            hits: Vec::new(),
        }
    }
}

thread_local! {
    static CACHES: RefCell<Vec<TokenCache>> = const { RefCell::new(Vec::new()) };
}

static NEXT_PLAN_ID: AtomicU64 = AtomicU64::new(0);

impl TermPlan {
    /// From `(term text, slot)` pairs as written in the model file (`w:…`, `b:… …`, `c:…`);
    /// `None` when the settings are outside what the plan handles. Malformed terms are skipped:
    /// the model's loader has already refused those.
    pub fn new<'a>(
        settings: PlanSettings,
        terms: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Self {
        let mut plan = TermPlan {
            id: NEXT_PLAN_ID.fetch_add(1, Ordering::Relaxed),
            settings,
            words: FxHashMap::default(),
            chars: FxHashMap::default(),
            char_pairs: FxHashMap::default(),
            lefts: FxHashMap::default(),
            rights: FxHashMap::default(),
            pairs: FxHashMap::default(),
        };
        for (term, slot) in terms {
            if let Some(word) = term.strip_prefix("w:") {
                plan.words.insert(word.into(), slot);
            } else if let Some(pair) = term.strip_prefix("b:") {
                let Some((a, b)) = pair.split_once(' ') else {
                    continue;
                };
                let next = plan.lefts.len() as u32;
                let a = *plan.lefts.entry(a.into()).or_insert(next);
                let next = plan.rights.len() as u32;
                let b = *plan.rights.entry(b.into()).or_insert(next);
                plan.pairs.insert(pack(a, b), slot);
            } else if let Some(chars) = term.strip_prefix("c:") {
                let mut it = chars.chars();
                match (it.next(), it.next(), it.next()) {
                    (Some(a), None, _) => {
                        plan.chars.insert(a, slot);
                    }
                    (Some(a), Some(b), None) => {
                        plan.char_pairs.insert(pack(a as u32, b as u32), slot);
                    }
                    _ => {}
                }
            }
        }
        plan
    }

    /// Calls `score` with the slot of every vocabulary-term occurrence of the document, in
    /// the order the reference walk meets them (words, word pairs, characters, character
    /// pairs; each by position), and returns what it returns. `skip_ascii` drops all-ASCII
    /// tokens first (the relevance model's input). `None` when the document must take the
    /// reference path: longer than `max_chars` (the reference cuts a token there), a token
    /// too long to cache, a full cache, or no thread-local storage left (thread exit).
    pub fn with_hits<R, T: AsRef<str>>(
        &self,
        tokens: &[T],
        skip_ascii: bool,
        score: impl FnOnce(&[u32]) -> R,
    ) -> Option<R> {
        CACHES
            .try_with(|caches| {
                let mut caches = caches.try_borrow_mut().ok()?;
                let at = match caches.iter().position(|c| c.plan == self.id) {
                    Some(at) => at,
                    None => {
                        if caches.len() >= MAX_CACHES_PER_THREAD {
                            caches.remove(0);
                        }
                        caches.push(TokenCache::new(self.id));
                        caches.len() - 1
                    }
                };
                let cache = &mut caches[at];
                cache.table.clear_if_full();
                self.resolve(cache, tokens, skip_ascii)?;
                self.collect_hits(cache);
                Some(score(&cache.hits))
            })
            .ok()
            .flatten()
    }

    /// Fills `cache.doc` with the entries of the document's tokens; `None` as in
    /// [`Self::with_hits`].
    fn resolve<T: AsRef<str>>(
        &self,
        cache: &mut TokenCache,
        tokens: &[T],
        skip_ascii: bool,
    ) -> Option<()> {
        let tokens = tokens
            .iter()
            .map(AsRef::as_ref)
            .filter(|t: &&str| !(skip_ascii && t.is_ascii()));
        cache
            .table
            .resolve(
                tokens,
                self.settings.max_chars,
                &mut cache.doc,
                None,
                |token, text, arena| self.entry(token, text, arena),
            )
            .map(|_| ())
    }

    /// Looks a new token's own terms up; their slot lists go to the end of `arena`.
    fn entry(&self, token: &str, text: &mut String, arena: &mut Vec<u32>) -> Entry {
        let t = TokenText::new(token, text);
        let s = &self.settings;
        let (word, left, right) = match t.first {
            None => (NONE, NONE, NONE),
            Some(_) => {
                let find = |map: &FxHashMap<Box<str>, u32>, on: bool| {
                    on.then(|| map.get(t.word).copied())
                        .flatten()
                        .unwrap_or(NONE)
                };
                (
                    find(&self.words, s.word_unigrams),
                    find(&self.lefts, s.word_bigrams),
                    find(&self.rights, s.word_bigrams),
                )
            }
        };
        let terms = t.push_char_terms(
            arena,
            |c| {
                s.char_unigrams
                    .then(|| self.chars.get(&c).copied())
                    .flatten()
            },
            |a, b| {
                s.char_bigrams
                    .then(|| self.char_pairs.get(&pack(a as u32, b as u32)).copied())
                    .flatten()
            },
        );
        Entry {
            key: t.key,
            key_len: t.key_len,
            chars: t.chars,
            first: t.first.unwrap_or('\0'),
            last: t.last,
            word,
            left,
            right,
            start: terms.start,
            singles: terms.singles,
            pairs: terms.pairs,
        }
    }

    /// `cache.hits` from `cache.doc`, in the reference walk order.
    fn collect_hits(&self, cache: &mut TokenCache) {
        let TokenCache {
            table, doc, hits, ..
        } = cache;
        let TokenTable { entries, arena, .. } = table;
        let s = &self.settings;
        hits.clear();
        let entry = |at: &u32| &entries[*at as usize];
        if s.word_unigrams {
            hits.extend(
                doc.iter()
                    .map(entry)
                    .filter(|e| e.word != NONE)
                    .map(|e| e.word),
            );
        }
        if s.word_bigrams && !self.pairs.is_empty() {
            for pair in doc.windows(2) {
                let (a, b) = (entry(&pair[0]), entry(&pair[1]));
                if a.left != NONE && b.right != NONE {
                    if let Some(&slot) = self.pairs.get(&pack(a.left, b.right)) {
                        hits.push(slot);
                    }
                }
            }
        }
        if s.char_unigrams {
            for e in doc.iter().map(entry) {
                let start = e.start as usize;
                hits.extend_from_slice(&arena[start..start + e.singles as usize]);
            }
        }
        if s.char_bigrams {
            for (i, e) in doc.iter().map(entry).enumerate() {
                let start = (e.start + e.singles) as usize;
                hits.extend_from_slice(&arena[start..start + e.pairs as usize]);
                if let Some(next) = doc.get(i + 1).map(entry) {
                    if let Some(&slot) =
                        self.char_pairs.get(&pack(e.last as u32, next.first as u32))
                    {
                        hits.push(slot);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The joint plan: every head of the classify stage behind one token cache.

/// Heads of a [`JointPlan`], in the order of a term's [`Columns`].
pub(crate) const CATEGORY: usize = 0;
pub(crate) const EMOTION: usize = 1;
pub(crate) const POLARITY: usize = 2;
pub(crate) const RELEVANCE: usize = 3;
const HEADS: usize = 4;
/// The first head of each member (category, sentiment, relevance) and how many it has.
const MEMBER_HEADS: [(usize, usize); 3] = [(CATEGORY, 1), (EMOTION, 2), (RELEVANCE, 1)];

/// One term's column in every head ([`ABSENT`] where a head does not know it).
type Columns = [u32; HEADS];
const NO_COLUMNS: Columns = [ABSENT; HEADS];

/// A term of the joint vocabulary: its id (for counting) and its column in every head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    id: u32,
    columns: Columns,
}
const NO_TERM: Term = Term {
    id: NONE,
    columns: NO_COLUMNS,
};

/// The token streams of one event: the content tokens (category), the sentiment model's
/// stream, and the content tokens without all-ASCII ones (relevance).
const STREAMS: usize = 3;
const STREAM_OF_HEAD: [usize; HEADS] = [0, 1, 1, 2];
/// Term kinds in the reference walk order; a stream's hits are cut into these sections.
const SECTIONS: usize = 4;

/// Plans whose caches one thread keeps; the least recently added is dropped beyond that.
const MAX_JOINT_CACHES_PER_THREAD: usize = 2;
/// Joint plans the process keeps; the oldest is dropped beyond that (threads holding it keep
/// it alive, a new request rebuilds it). One per set of loaded models; tests load many.
const MAX_JOINT_PLANS: usize = 4;

/// A joint plan in the process-wide list, by the ids of its members' plans; `None` records
/// that those members cannot be joined, so that no event tries again.
type SharedPlan = ([u64; 3], Option<Arc<JointPlan>>);

/// One model's part of a [`JointPlan`]: its token plan and its heads.
pub(crate) struct Member<'a> {
    plan: &'a TermPlan,
    /// Column of each of its heads per plan slot, `slots[slot * heads + i]`; `None` when the
    /// slot is the column of its single head.
    slots: Option<&'a [u32]>,
    tables: Vec<Table>,
    sublinear_tf: bool,
}

impl<'a> Member<'a> {
    /// A one-head model whose plan slots are its columns (the category model).
    pub fn single(plan: &'a TermPlan, table: Table, sublinear_tf: bool) -> Self {
        Member {
            plan,
            slots: None,
            tables: vec![table],
            sublinear_tf,
        }
    }
}

impl FusedHeads {
    /// These heads as a member of a [`JointPlan`]; `None` without a token plan.
    pub(crate) fn member(&self, f: &TextFeatures) -> Option<Member<'_>> {
        Some(Member {
            plan: self.plan.as_ref()?,
            slots: Some(&self.slots),
            tables: self.tables.clone(),
            sublinear_tf: f.sublinear_tf,
        })
    }

    /// Id of the token plan, which names these heads' vocabulary.
    pub(crate) fn plan_id(&self) -> Option<u64> {
        self.plan.as_ref().map(|p| p.id)
    }
}

impl TermPlan {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// The vocabularies of every head of the classify stage (category, emotion, polarity,
/// relevance) compiled into one token plan: a token is hashed and looked up once per event,
/// and its cached entry gives the columns of all heads at once, instead of three plans each
/// resolving the event's tokens through its own cache. Matching is by term text, as in
/// [`TermPlan`], so every head sees exactly the hits its own plan would give.
pub(crate) struct JointPlan {
    /// Ids of the member plans, in member order: which models this plan was built from.
    members: [u64; 3],
    /// Per head, its model's feature settings.
    settings: [PlanSettings; HEADS],
    sublinear_tf: [bool; HEADS],
    tables: Vec<Table>,
    /// Number of terms (ids `0..terms`).
    terms: usize,
    words: FxHashMap<Box<str>, Term>,
    chars: FxHashMap<char, Term>,
    char_pairs: FxHashMap<u64, Term>,
    lefts: FxHashMap<Box<str>, u32>,
    rights: FxHashMap<Box<str>, u32>,
    pairs: FxHashMap<u64, Term>,
}

/// What [`JointPlan`] computed for one event; `None` for a head the caller must score by its
/// model's own path (not asked for, or its stream is longer than its `max_chars`).
#[derive(Debug, Default)]
pub(crate) struct JointScores {
    /// Category margins before temperature and softmax.
    pub category: Option<Vec<f32>>,
    /// Emotion and polarity probabilities.
    pub sentiment: Option<(Vec<f32>, Vec<f32>)>,
    /// Relevance probabilities.
    pub relevance: Option<Vec<f32>>,
}

impl JointPlan {
    /// From the members in order category, sentiment, relevance; `None` when their head
    /// counts are not 1, 2, 1.
    fn new(members: [Member<'_>; 3]) -> Option<Self> {
        let settings = members[0].plan.settings;
        let mut plan = JointPlan {
            members: [members[0].plan.id, members[1].plan.id, members[2].plan.id],
            settings: [settings; HEADS],
            sublinear_tf: [false; HEADS],
            tables: Vec::with_capacity(HEADS),
            terms: 0,
            words: FxHashMap::default(),
            chars: FxHashMap::default(),
            char_pairs: FxHashMap::default(),
            lefts: FxHashMap::default(),
            rights: FxHashMap::default(),
            pairs: FxHashMap::default(),
        };
        for (member, (first, n)) in members.into_iter().zip(MEMBER_HEADS) {
            if member.tables.len() != n {
                return None;
            }
            let p = member.plan;
            for h in first..first + n {
                plan.settings[h] = p.settings;
                plan.sublinear_tf[h] = member.sublinear_tf;
            }
            plan.tables.extend(member.tables);
            // A head gets no column for a kind its model does not read: the hits of every
            // kind can then be counted once for all heads of a stream.
            let uses = [
                p.settings.word_unigrams,
                p.settings.word_bigrams,
                p.settings.char_unigrams,
                p.settings.char_bigrams,
            ];
            let columns = |slot: u32| {
                let mut columns = NO_COLUMNS;
                for i in 0..n {
                    columns[first + i] = match member.slots {
                        None => slot,
                        Some(slots) => slots.get(slot as usize * n + i).copied().unwrap_or(ABSENT),
                    };
                }
                columns
            };
            fn set<K: std::hash::Hash + Eq>(
                map: &mut FxHashMap<K, Term>,
                terms: &mut usize,
                key: K,
                columns: Columns,
            ) {
                let term = map.entry(key).or_insert_with(|| {
                    *terms += 1;
                    Term {
                        id: (*terms - 1) as u32,
                        columns: NO_COLUMNS,
                    }
                });
                for (into, from) in term.columns.iter_mut().zip(columns) {
                    if from != ABSENT {
                        *into = from;
                    }
                }
            }
            let terms = &mut plan.terms;
            if uses[0] {
                for (word, &slot) in &p.words {
                    set(&mut plan.words, terms, word.clone(), columns(slot));
                }
            }
            if uses[2] {
                for (&c, &slot) in &p.chars {
                    set(&mut plan.chars, terms, c, columns(slot));
                }
            }
            if uses[3] {
                for (&pair, &slot) in &p.char_pairs {
                    set(&mut plan.char_pairs, terms, pair, columns(slot));
                }
            }
            if !uses[1] {
                continue;
            }
            // Word pairs by text: the member's left and right ids mean nothing here.
            let texts = |ids: &FxHashMap<Box<str>, u32>| {
                let mut texts: FxHashMap<u32, Box<str>> = FxHashMap::default();
                texts.extend(ids.iter().map(|(text, &id)| (id, text.clone())));
                texts
            };
            let (lefts, rights) = (texts(&p.lefts), texts(&p.rights));
            for (&pair, &slot) in &p.pairs {
                let (Some(left), Some(right)) = (
                    lefts.get(&((pair >> 32) as u32)),
                    rights.get(&(pair as u32)),
                ) else {
                    continue;
                };
                let next = plan.lefts.len() as u32;
                let left = *plan.lefts.entry(left.clone()).or_insert(next);
                let next = plan.rights.len() as u32;
                let right = *plan.rights.entry(right.clone()).or_insert(next);
                set(&mut plan.pairs, terms, pack(left, right), columns(slot));
            }
        }
        // Ids must stay below `NONE`, which marks "no term".
        if plan.terms >= NONE as usize {
            return None;
        }
        Some(plan)
    }

    /// The plan of these members, shared by every thread: built by the first caller, kept
    /// in a bounded process-wide list; `None` when the members cannot be joined.
    fn shared(members: [u64; 3], build: impl FnOnce() -> Option<JointPlan>) -> Option<Arc<Self>> {
        static PLANS: Mutex<Vec<SharedPlan>> = Mutex::new(Vec::new());
        // A panic while building leaves no half-made entry behind, so a poisoned list is fine.
        let mut plans = PLANS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, plan)) = plans.iter().find(|(key, _)| *key == members) {
            return plan.clone();
        }
        let plan = build().map(Arc::new);
        if plans.len() >= MAX_JOINT_PLANS {
            plans.remove(0);
        }
        plans.push((members, plan.clone()));
        plan
    }

    /// Scores one event: `streams` are the content tokens, the sentiment model's tokens and
    /// (derived here) the content tokens without the all-ASCII ones; `wanted` says which
    /// heads to score. `None` when the event must take the models' own paths (a token too
    /// long to cache, a full cache, no thread-local storage left).
    pub fn scores<C: AsRef<str>, S: AsRef<str>>(
        members: [u64; 3],
        build: impl FnOnce() -> Option<JointPlan>,
        content: &[C],
        sentiment: &[S],
        wanted: [bool; HEADS],
    ) -> Option<JointScores> {
        JOINT_CACHES
            .try_with(|caches| {
                let mut caches = caches.try_borrow_mut().ok()?;
                let at = match caches.iter().position(|c| c.plan.members == members) {
                    Some(at) => at,
                    None => {
                        let plan = Self::shared(members, build)?;
                        if caches.len() >= MAX_JOINT_CACHES_PER_THREAD {
                            caches.remove(0);
                        }
                        caches.push(JointCache::new(plan));
                        caches.len() - 1
                    }
                };
                let cache = &mut caches[at];
                cache.table.clear_if_full();
                let plan = Arc::clone(&cache.plan);
                plan.score(cache, content, sentiment, wanted)
            })
            .ok()
            .flatten()
    }

    fn score<C: AsRef<str>, S: AsRef<str>>(
        &self,
        cache: &mut JointCache,
        content: &[C],
        sentiment: &[S],
        wanted: [bool; HEADS],
    ) -> Option<JointScores> {
        let limit = (0..HEADS)
            .filter(|&h| wanted[h])
            .map(|h| self.settings[h].max_chars)
            .max()?;
        let mut docs = std::mem::take(&mut cache.docs);
        let mut every = std::mem::take(&mut cache.every);
        let mut totals = [0usize; STREAMS];
        let mut ok = true;
        let content_wanted = wanted[CATEGORY] || wanted[RELEVANCE];
        let sentiment_wanted = wanted[EMOTION] || wanted[POLARITY];
        // The words first: the content tokens are usually a subsequence of them, whose entries
        // are then read off without hashing a token twice.
        if sentiment_wanted {
            let every = content_wanted.then_some(&mut every);
            match self.resolve(cache, sentiment, limit, &mut docs[1], every) {
                Some(total) => totals[1] = total,
                None => ok = false,
            }
        }
        if ok && content_wanted {
            let derived = if sentiment_wanted {
                entries_of_subsequence(
                    content.iter().map(AsRef::as_ref),
                    sentiment,
                    &every,
                    &cache.table.entries,
                    limit,
                    &mut docs[0],
                )
            } else {
                ReadOff::NotAmongTheTokens
            };
            match derived {
                ReadOff::Resolved(total) => {
                    #[cfg(test)]
                    SUBSEQUENCES_RESOLVED.with(|n| n.set(n.get() + 1));
                    totals[0] = total
                }
                ReadOff::OverLimit => ok = false,
                ReadOff::NotAmongTheTokens => {
                    match self.resolve(cache, content, limit, &mut docs[0], None) {
                        Some(total) => totals[0] = total,
                        None => ok = false,
                    }
                }
            }
        }
        cache.every = every;
        if !ok {
            cache.docs = docs;
            return None;
        }
        // Relevance reads the content tokens without the all-ASCII ones (place codes): the
        // same terms as the content stream unless the event has such a token.
        let (first, rest) = docs.split_at_mut(1);
        let relevance_doc = &mut rest[1];
        relevance_doc.clear();
        let mut relevance_own = false;
        if wanted[RELEVANCE] {
            for &at in &first[0] {
                let e = &cache.table.entries[at as usize];
                if e.ascii {
                    relevance_own = true;
                } else {
                    totals[2] += e.chars as usize;
                    relevance_doc.push(at);
                }
            }
        }
        let stream_of = |h: usize| {
            if h == RELEVANCE && !relevance_own {
                0
            } else {
                STREAM_OF_HEAD[h]
            }
        };
        let mut kinds = [[false; SECTIONS]; STREAMS];
        for h in (0..HEADS).filter(|&h| wanted[h]) {
            for (kind, used) in self.kinds(h).into_iter().enumerate() {
                kinds[stream_of(h)][kind] |= used;
            }
        }
        // Each stream's terms are counted once for all heads that read it: a head's columns
        // are then read off the distinct terms, in the order they first occur.
        let mut hits = std::mem::take(&mut cache.hits);
        let mut distinct = std::mem::take(&mut cache.distinct);
        for stream in 0..STREAMS {
            distinct[stream].clear();
            if kinds[stream].iter().any(|&u| u) {
                self.collect(cache, &docs[stream], kinds[stream], &mut hits);
                count_terms(
                    &mut cache.term_counts,
                    &mut cache.ids,
                    self.terms,
                    &hits,
                    &mut distinct[stream],
                );
            }
        }
        cache.docs = docs;
        cache.hits = hits;
        let head = |h: usize, cache: &mut JointCache| -> Option<Vec<f32>> {
            if !wanted[h] || totals[STREAM_OF_HEAD[h]] > self.settings[h].max_chars {
                return None;
            }
            let table = &self.tables[h];
            let counted = &mut cache.counted;
            counted.clear();
            counted.extend(
                distinct[stream_of(h)]
                    .iter()
                    .filter(|(columns, _)| columns[h] != ABSENT)
                    .map(|&(columns, count)| (columns[h], count)),
            );
            // Every head sums in the order of first occurrence, as its reference does.
            Some(table.margins(self.sublinear_tf[h], counted))
        };
        let category = head(CATEGORY, cache);
        let emotion = head(EMOTION, cache);
        let polarity = head(POLARITY, cache);
        let relevance = head(RELEVANCE, cache).map(|mut z| {
            softmax(&mut z);
            z
        });
        cache.distinct = distinct;
        Some(JointScores {
            category,
            sentiment: emotion.zip(polarity).map(|(mut e, mut p)| {
                softmax(&mut e);
                softmax(&mut p);
                (e, p)
            }),
            relevance,
        })
    }

    /// Which term kinds head `h` reads, in walk order (words, word pairs, characters,
    /// character pairs).
    fn kinds(&self, h: usize) -> [bool; SECTIONS] {
        let s = &self.settings[h];
        [
            s.word_unigrams,
            s.word_bigrams,
            s.char_unigrams,
            s.char_bigrams,
        ]
    }

    /// Fills `doc` with the entries of the tokens that have characters, and returns their
    /// characters in all; `None` as in [`Self::scores`], or when the total passes `limit`
    /// (every head would decline, so the rest is not cached).
    fn resolve<T: AsRef<str>>(
        &self,
        cache: &mut JointCache,
        tokens: &[T],
        limit: usize,
        doc: &mut Vec<u32>,
        every: Option<&mut Vec<u32>>,
    ) -> Option<usize> {
        cache.table.resolve(
            tokens.iter().map(AsRef::as_ref),
            limit,
            doc,
            every,
            |token, text, arena| self.entry(token, text, arena),
        )
    }

    /// Looks a new token's own terms up in every head; as [`TermPlan::entry`].
    fn entry(&self, token: &str, text: &mut String, arena: &mut Vec<Term>) -> JointEntry {
        let t = TokenText::new(token, text);
        let (word, left, right) = match t.first {
            None => (NO_TERM, NONE, NONE),
            Some(_) => (
                self.words.get(t.word).copied().unwrap_or(NO_TERM),
                self.lefts.get(t.word).copied().unwrap_or(NONE),
                self.rights.get(t.word).copied().unwrap_or(NONE),
            ),
        };
        let terms = t.push_char_terms(
            arena,
            |c| self.chars.get(&c).copied(),
            |a, b| self.char_pairs.get(&pack(a as u32, b as u32)).copied(),
        );
        JointEntry {
            key: t.key,
            key_len: t.key_len,
            ascii: token.is_ascii(),
            chars: t.chars,
            first: t.first.unwrap_or('\0'),
            last: t.last,
            word,
            left,
            right,
            start: terms.start,
            singles: terms.singles,
            pairs: terms.pairs,
        }
    }

    /// The hits of one stream in the reference walk order (words, word pairs, characters,
    /// character pairs), only the `wanted` sections; returns where each section starts.
    fn collect(
        &self,
        cache: &JointCache,
        doc: &[u32],
        wanted: [bool; SECTIONS],
        hits: &mut Vec<Term>,
    ) {
        let TokenTable { entries, arena, .. } = &cache.table;
        let entry = |at: &u32| &entries[*at as usize];
        hits.clear();
        if wanted[0] {
            hits.extend(
                doc.iter()
                    .map(entry)
                    .filter(|e| e.word.id != NONE)
                    .map(|e| e.word),
            );
        }
        if wanted[1] && !self.pairs.is_empty() {
            for pair in doc.windows(2) {
                let (a, b) = (entry(&pair[0]), entry(&pair[1]));
                if a.left != NONE && b.right != NONE {
                    if let Some(&term) = self.pairs.get(&pack(a.left, b.right)) {
                        hits.push(term);
                    }
                }
            }
        }
        if wanted[2] {
            for e in doc.iter().map(entry) {
                let start = e.start as usize;
                hits.extend_from_slice(&arena[start..start + e.singles as usize]);
            }
        }
        if wanted[3] {
            for (i, e) in doc.iter().map(entry).enumerate() {
                let start = (e.start + e.singles) as usize;
                hits.extend_from_slice(&arena[start..start + e.pairs as usize]);
                if let Some(next) = doc.get(i + 1).map(entry) {
                    if let Some(&term) =
                        self.char_pairs.get(&pack(e.last as u32, next.first as u32))
                    {
                        hits.push(term);
                    }
                }
            }
        }
    }
}

/// The distinct terms of `hits` with their columns and counts, in order of first occurrence;
/// `counts` (one per term id, all zero between calls) holds the counts meanwhile, `ids` the
/// distinct ids.
fn count_terms(
    counts: &mut Vec<u32>,
    ids: &mut Vec<u32>,
    terms: usize,
    hits: &[Term],
    distinct: &mut Vec<(Columns, f32)>,
) {
    if counts.len() < terms {
        counts.resize(terms, 0);
    }
    distinct.clear();
    ids.clear();
    for term in hits {
        let count = &mut counts[term.id as usize];
        if *count == 0 {
            distinct.push((term.columns, 0.0));
            ids.push(term.id);
        }
        *count += 1;
    }
    for ((_, v), &id) in distinct.iter_mut().zip(ids.iter()) {
        // Counts stay far below 2^24 (a document has at most 100,000 characters), so the
        // conversion is exact, as the reference's own count is.
        *v = std::mem::take(&mut counts[id as usize]) as f32;
    }
}

/// One token as the joint plan sees it: [`Entry`] with the columns of every head.
#[derive(Debug, Clone, Copy)]
struct JointEntry {
    key: [u8; INLINE_KEY_BYTES],
    key_len: u8,
    /// All-ASCII token text: relevance skips it.
    ascii: bool,
    chars: u32,
    first: char,
    last: char,
    word: Term,
    left: u32,
    right: u32,
    /// `arena[start..start + singles]`: columns of its characters that are terms of some
    /// head; then `pairs` of its inner character pairs.
    start: u32,
    singles: u32,
    pairs: u32,
}

/// Per thread and joint plan: tokens seen → [`JointEntry`], and the buffers of one event.
/// Bounded as [`TokenCache`] is, and emptied the same way when full.
struct JointCache {
    plan: Arc<JointPlan>,
    table: TokenTable<JointEntry, Term>,
    /// Entries of each stream's tokens, in order.
    docs: [Vec<u32>; STREAMS],
    /// The sentiment stream's entry of every token ([`TokenTable::resolve`]'s `every`).
    every: Vec<u32>,
    hits: Vec<Term>,
    /// Per stream, its distinct terms' columns and counts, in order of first occurrence.
    distinct: [Vec<(Columns, f32)>; STREAMS],
    /// Count by term id (all zero between events).
    term_counts: Vec<u32>,
    ids: Vec<u32>,
    counted: Vec<(u32, f32)>,
}

impl JointCache {
    fn new(plan: Arc<JointPlan>) -> Self {
        JointCache {
            plan,
            table: TokenTable::new(),
            docs: Default::default(),
            every: Vec::new(),
            hits: Vec::new(),
            distinct: Default::default(),
            term_counts: Vec::new(),
            ids: Vec::new(),
            counted: Vec::new(),
        }
    }
}

impl CachedToken for JointEntry {
    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
    fn chars(&self) -> u32 {
        self.chars
    }
}

thread_local! {
    static JOINT_CACHES: RefCell<Vec<JointCache>> = const { RefCell::new(Vec::new()) };
}

/// Builds the joint plan of three members (category, sentiment, relevance), for
/// [`JointPlan::scores`].
pub(crate) fn joint_plan(members: [Member<'_>; 3]) -> Option<JointPlan> {
    JointPlan::new(members)
}

/// Up to `limit` real Weibo posts and citizen messages from `../shared/data` for the equality
/// tests of the fast paths; none (with a loud note) where the data is absent.
#[cfg(test)]
pub(crate) fn shared_texts(limit: usize) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let mut texts = Vec::new();
    for (file, column) in [
        ("sentiment/weibo_senti_train.tsv", 1),
        ("routing/routing_sample_raw.tsv", 4),
    ] {
        let Ok(data) = std::fs::read_to_string(root.join(file)) else {
            eprintln!(
                "SKIPPED part of the test: {} absent",
                root.join(file).display()
            );
            continue;
        };
        texts.extend(
            data.lines()
                .skip(1)
                .filter_map(|line| line.split('\t').nth(column))
                .take(limit / 2)
                .map(str::to_string),
        );
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::features::{FeatureSettings, Vectorizer};

    fn toks(s: &str) -> Vec<String> {
        s.split('|').map(String::from).collect()
    }

    /// A vocabulary with every term kind, including pairs that only occur across tokens.
    fn vectorizer() -> Vectorizer {
        let terms = [
            "w:噪音",
            "w:扰民",
            "w:路 灯",
            "b:噪音 扰民",
            "b:路灯 坏了",
            "c:噪",
            "c:民",
            "c:灯",
            "c:音扰",
            "c:噪音",
            "c:灯坏",
            "w:longlonglonglonglonglongtoken",
        ];
        let terms: Vec<(String, f32)> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), 1.0 + i as f32 / 7.0))
            .collect();
        Vectorizer::new(FeatureSettings::current(), &terms).expect("valid vocabulary")
    }

    /// Token streams that reach every branch: repeats, whitespace inside and around tokens,
    /// empty tokens, a token longer than the inline key, pairs across token boundaries.
    const FIXTURES: [&str; 8] = [
        "噪音|扰民|噪音|噪音|扰民",
        "路灯|坏了|路 灯|坏了",
        "|噪音| |扰民|\u{3000}|灯",
        "噪|音|扰|民",
        "longlonglonglonglonglongtoken|噪音|longlonglonglonglonglongtoken",
        "完全|无关|的|话",
        "",
        "灯",
    ];

    #[test]
    fn plan_vectors_equal_the_reference_bit_for_bit() {
        let v = vectorizer();
        for text in FIXTURES {
            let tokens = if text.is_empty() {
                Vec::new()
            } else {
                toks(text)
            };
            let fast = v.vectorize(&tokens);
            let reference = v.vectorize_reference(&tokens);
            assert_eq!(fast.indices, reference.indices, "{text}");
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast.values), bits(&reference.values), "{text}");
        }
        // Twice: the second pass reads every token from the cache.
        let tokens = toks(FIXTURES[0]);
        assert_eq!(v.vectorize(&tokens), v.vectorize_reference(&tokens));
    }

    fn plan() -> TermPlan {
        let settings = PlanSettings::new(true, true, 1, 2, 12).expect("supported settings");
        TermPlan::new(
            settings,
            [
                ("w:噪音", 0),
                ("b:噪音 扰民", 1),
                ("c:噪", 2),
                ("c:音扰", 3),
            ],
        )
    }

    #[test]
    fn hits_follow_the_reference_walk_order() {
        let hits = plan().with_hits(&toks("噪音|扰民|噪音"), false, |h| h.to_vec());
        // Words, word pairs, characters, character pairs (the last across a boundary).
        assert_eq!(hits, Some(vec![0, 0, 1, 2, 2, 3]));
    }

    #[test]
    fn ascii_tokens_are_skipped_when_asked_and_pairs_join_across_them() {
        let hits = plan().with_hits(&toks("噪音|A3|扰民"), true, |h| h.to_vec());
        assert_eq!(hits, Some(vec![0, 1, 2, 3]));
        let hits = plan().with_hits(&toks("噪音|A3|扰民"), false, |h| h.to_vec());
        assert_eq!(hits, Some(vec![0, 2]));
    }

    #[test]
    fn documents_the_plan_cannot_mirror_take_the_reference_path() {
        let plan = plan();
        // max_chars is 12: the reference would cut the 13th character off; 12 are all read.
        assert_eq!(
            plan.with_hits(&toks("噪音扰民|噪音扰民|噪音扰民|噪"), false, |_| ()),
            None
        );
        assert_eq!(
            plan.with_hits(&toks("噪音扰民|噪音扰民|噪音扰民"), false, |_| ()),
            Some(())
        );
        assert_eq!(
            plan.with_hits(&toks("噪音扰民|噪音扰民"), false, |_| ()),
            Some(())
        );
        let huge = "噪".repeat(MAX_CACHED_TOKEN_BYTES);
        assert_eq!(plan.with_hits(&[huge], false, |_| ()), None);
        // Unsupported n-gram lengths get no plan at all.
        assert_eq!(PlanSettings::new(true, true, 1, 3, 100), None);
    }

    fn cached_tokens(plan: &TermPlan) -> usize {
        CACHES.with_borrow(|caches| {
            caches
                .iter()
                .find(|c| c.plan == plan.id)
                .map_or(0, |c| c.table.entries.len())
        })
    }

    #[test]
    fn a_full_cache_declines_one_document_then_starts_afresh() {
        let settings = PlanSettings::new(true, true, 1, 2, 100_000).expect("supported");
        let plan = TermPlan::new(settings, [("w:噪音", 0)]);
        let mut next = 0u32;
        let mut declined = 0;
        for _ in 0..(MAX_CACHED_TOKENS / 1000 + 2) {
            let doc: Vec<String> = (0..1000)
                .map(|_| {
                    next += 1;
                    format!("t{next}")
                })
                .collect();
            if plan.with_hits(&doc, false, |_| ()).is_none() {
                declined += 1;
                assert!(cached_tokens(&plan) >= MAX_CACHED_TOKENS);
            }
            assert!(cached_tokens(&plan) <= MAX_CACHED_TOKENS);
        }
        assert_eq!(declined, 1);
        assert!(cached_tokens(&plan) < MAX_CACHED_TOKENS);
    }

    /// The category model's probabilities through the plan are the reference's, bit for bit,
    /// on real messages and on fixtures.
    #[test]
    fn category_model_fast_path_equals_the_reference() {
        let models = crate::config::ModelsConfig::default();
        let segmenter = crate::assets::load_segmenter(&models).expect("embedded segmenter");
        let model = crate::assets::load_category_model(&models).expect("embedded model");
        let mut texts: Vec<String> = [
            "小区门口的路灯坏了三天，晚上很黑，请尽快维修",
            "A3区西湖路占道经营严重，http://t.cn/A6vd7HC4 求管管",
            "幼儿园 收费 太 高了",
            "",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.extend(shared_texts(2000));
        let mut fast_taken = 0;
        for text in &texts {
            let tokens = segmenter.segment(text, 0).tokens;
            let fast = model.margins(&tokens);
            let reference = model.margins_reference(&tokens);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&reference), "{text}");
            if model.plan_applies(&tokens) {
                fast_taken += 1;
            }
        }
        // Only documents longer than `max_chars` or with a giant token may decline.
        assert!(
            fast_taken * 10 >= texts.len() * 9,
            "fast path taken {fast_taken}/{}",
            texts.len()
        );
    }

    /// The classify stage's joint scoring gives every model's own output bit for bit, on real
    /// posts and messages, social or not; and it is the path taken for nearly all of them.
    #[test]
    fn joint_classification_equals_each_model_bit_for_bit() {
        let models = crate::config::ModelsConfig::default();
        let segmenter = crate::assets::load_segmenter(&models).expect("embedded segmenter");
        let category = crate::assets::load_category_model(&models).expect("category");
        let sentiment = crate::assets::load_sentiment_model(&models).expect("sentiment");
        let relevance = crate::assets::load_relevance_model(&models).expect("relevance");
        let classifiers = crate::model::Classifiers {
            category: &category,
            sentiment: &sentiment,
            relevance: &relevance,
        };
        let mut texts: Vec<String> = [
            "小区门口的路灯坏了三天，晚上很黑，请尽快维修",
            "A3区西湖路占道经营严重 B6 http://t.cn/A6vd7HC4 求管管",
            "今天天气真好和朋友去吃火锅，开心",
            "ok",
            "",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.extend(shared_texts(3000));
        let mut joint_taken = 0;
        let derived_before = SUBSEQUENCES_RESOLVED.with(|n| n.get());
        for (i, text) in texts.iter().enumerate() {
            let stripped = crate::text::emoticons::strip_emoticons(text);
            let segmented = segmenter.segment(&stripped, 0);
            let for_sentiment: Vec<&str> = match sentiment.tokens() {
                crate::model::sentiment::Tokens::Words => segmented.words.clone(),
                crate::model::sentiment::Tokens::Content => segmented.tokens.clone(),
            };
            let social = i % 2 == 0;
            let got = classifiers.classify(&segmented, social);
            let category_alone = category.predict(&segmented.tokens);
            let sentiment_alone = sentiment.predict(&for_sentiment);
            assert_eq!(got.category.category, category_alone.category, "{text}");
            assert_eq!(
                got.category.confidence.to_bits(),
                category_alone.confidence.to_bits(),
                "{text}"
            );
            assert_eq!(got.sentiment.emotion, sentiment_alone.emotion, "{text}");
            assert_eq!(
                got.sentiment.emotion_confidence.to_bits(),
                sentiment_alone.emotion_confidence.to_bits(),
                "{text}"
            );
            assert_eq!(
                got.sentiment.sentiment.to_bits(),
                sentiment_alone.sentiment.to_bits(),
                "{text}"
            );
            let relevance_alone = social.then(|| relevance.relevance(&segmented.tokens));
            assert_eq!(
                got.relevance.map(f32::to_bits),
                relevance_alone.map(f32::to_bits),
                "{text}"
            );
            // And the reference heads agree with both.
            if social {
                assert_eq!(
                    got.relevance.map(f32::to_bits),
                    Some(relevance.relevance_reference(&segmented.tokens).to_bits()),
                    "{text}"
                );
            }
            let scores = classifiers.joint_scores(&segmented.tokens, &for_sentiment, social);
            if scores.category.is_some() && scores.sentiment.is_some() {
                joint_taken += 1;
            }
        }
        assert!(
            joint_taken * 10 >= texts.len() * 9,
            "joint path taken {joint_taken}/{}",
            texts.len()
        );
        // `classify` hands over one cut's two token lists, so the content entries were read
        // off the words' (each event once there, once more through `joint_scores` above).
        let derived = SUBSEQUENCES_RESOLVED.with(|n| n.get()) - derived_before;
        assert!(
            derived as usize >= joint_taken,
            "content tokens read off the words for {derived} of {joint_taken} events"
        );
    }

    /// Tokens of a cut are found among the words by position in the text, not by equal text;
    /// a copy of the same text is no member, and the limit counts as in `TokenTable::resolve`.
    #[test]
    fn content_entries_are_read_off_the_words_of_the_same_cut() {
        let text = String::from("路灯坏了的路灯");
        let words: Vec<&str> = vec![
            &text[0..6],
            &text[6..9],
            &text[9..12],
            &text[12..15],
            &text[15..21],
        ];
        assert_eq!(words, ["路灯", "坏", "了", "的", "路灯"]);
        let entries: Vec<JointEntryStub> =
            vec![JointEntryStub(2), JointEntryStub(1), JointEntryStub(2)];
        // 路灯 → entry 0, 坏 → 1, 了 and 的 have no characters worth a term here, 路灯 → 2.
        let every = vec![0, 1, NO_ENTRY, NO_ENTRY, 2];
        let mut doc = Vec::new();
        let mut read_off = |content: &[&str], limit: usize| {
            let found = entries_of_subsequence(
                content.iter().copied(),
                &words,
                &every,
                &entries,
                limit,
                &mut doc,
            );
            (found, doc.clone())
        };
        let (found, doc_of) = read_off(&[words[0], words[1], words[4]], 100);
        assert!(matches!(found, ReadOff::Resolved(5)));
        assert_eq!(doc_of, [0, 1, 2]);
        // The last 路灯 by position, although the first has the same text.
        assert_eq!(read_off(&[words[4]], 100).1, [2]);
        assert!(matches!(
            read_off(&[words[0], words[1]], 2).0,
            ReadOff::OverLimit
        ));
        let copy = String::from("路灯");
        assert!(matches!(
            read_off(&[copy.as_str()], 100).0,
            ReadOff::NotAmongTheTokens
        ));
        // Out of order is no subsequence either.
        assert!(matches!(
            read_off(&[words[1], words[0]], 100).0,
            ReadOff::NotAmongTheTokens
        ));
    }

    /// An entry that only knows its character count.
    struct JointEntryStub(u32);

    impl CachedToken for JointEntryStub {
        fn key(&self) -> &[u8] {
            &[]
        }
        fn chars(&self) -> u32 {
            self.0
        }
    }

    /// The sentiment and relevance models do take the plan on ordinary posts (their own tests
    /// compare the results with the reference heads).
    #[test]
    fn social_models_take_the_plan() {
        let models = crate::config::ModelsConfig::default();
        let segmenter = crate::assets::load_segmenter(&models).expect("embedded segmenter");
        let sentiment = crate::assets::load_sentiment_model(&models).expect("sentiment");
        let relevance = crate::assets::load_relevance_model(&models).expect("relevance");
        let tokens = segmenter.segment("今天 路灯 又坏了，真让人生气", 0).tokens;
        assert!(sentiment.plan_applies(&tokens));
        assert!(relevance.plan_applies(&tokens));
    }
}
