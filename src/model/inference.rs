//! Fast inference for the linear heads of the sentiment and relevance models
//! ([`super::linear::Head`]): the classify stage runs these on every social event.
//!
//! [`FusedHeads`] puts the vocabularies of one or more heads that read the same term keys
//! (the emotion and polarity heads of the sentiment model) behind one hash lookup per key, and
//! counts term frequencies in per-thread tables instead of collecting and sorting every hit.
//! The arithmetic is the same as `Head::probabilities`, in the same order (columns ascending),
//! so the probabilities are bit-for-bit identical — the tests compare the two on real texts.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use super::linear::{key_of_term, softmax, HeadFile, TextFeatures};

/// Marks "this head does not know the term" in a slot.
const ABSENT: u32 = u32::MAX;

/// One head's numbers, as `Head` holds them.
#[derive(Debug, Clone)]
struct Table {
    intercepts: Vec<f32>,
    idf: Vec<f32>,
    /// Term-major: `weights[column * k + class]`.
    weights: Vec<f32>,
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
}

/// Per-thread scratch: term counts per head column (all zero between calls), a bit per column
/// that has a count, and the hits of one head.
#[derive(Default)]
struct Scratch {
    counts: Vec<Vec<f32>>,
    bits: Vec<Vec<u64>>,
    hits: Vec<(u32, f32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl FusedHeads {
    /// From the heads as stored; call after `Head::from_file` accepted each of them, so that
    /// terms, weights and idf are known to be well-formed. The error names the head and entry.
    pub fn new(heads: &[(&HeadFile, &str)]) -> Result<Self, String> {
        let n = heads.len();
        let mut index: FxHashMap<u64, u32> = FxHashMap::default();
        let mut slots: Vec<u32> = Vec::new();
        let mut tables = Vec::with_capacity(n);
        for (h, (file, name)) in heads.iter().enumerate() {
            let k = file.classes.len();
            let mut table = Table {
                intercepts: file.intercepts.clone(),
                idf: Vec::with_capacity(file.vocabulary.len()),
                weights: Vec::with_capacity(file.vocabulary.len() * k),
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
                table.idf.push(entry.1);
                table.weights.extend_from_slice(&entry.2);
            }
            tables.push(table);
        }
        Ok(FusedHeads {
            index,
            slots,
            tables,
        })
    }

    /// Class probabilities of every head for a document given as term keys: what
    /// `Head::probabilities(f, keys)` gives for each head, computed in one pass over the keys.
    pub fn probabilities(&self, f: &TextFeatures, keys: &[u64]) -> Vec<Vec<f32>> {
        let n = self.tables.len();
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.counts.resize_with(n, Vec::new);
            scratch.bits.resize_with(n, Vec::new);
            for (h, table) in self.tables.iter().enumerate() {
                let columns = table.idf.len();
                if scratch.counts[h].len() < columns {
                    scratch.counts[h].resize(columns, 0.0);
                }
                let words = columns.div_ceil(64);
                if scratch.bits[h].len() < words {
                    scratch.bits[h].resize(words, 0);
                }
            }
            for key in keys {
                let Some(&slot) = self.index.get(key) else {
                    continue;
                };
                let columns = &self.slots[slot as usize * n..(slot as usize + 1) * n];
                for (h, &column) in columns.iter().enumerate() {
                    if column != ABSENT {
                        let c = column as usize;
                        scratch.counts[h][c] += 1.0;
                        scratch.bits[h][c / 64] |= 1 << (c % 64);
                    }
                }
            }
            let Scratch { counts, bits, hits } = scratch;
            self.tables
                .iter()
                .enumerate()
                .map(|(h, table)| {
                    // Columns ascending, each once with its count: the order in which
                    // `Head::tfidf` sums, so the floating-point results are the same.
                    hits.clear();
                    for (w, word) in bits[h].iter_mut().enumerate() {
                        while *word != 0 {
                            let bit = word.trailing_zeros() as usize;
                            *word &= *word - 1;
                            let c = w * 64 + bit;
                            hits.push((c as u32, std::mem::take(&mut counts[h][c])));
                        }
                    }
                    table.probabilities(f, hits)
                })
                .collect()
        })
    }
}

impl Table {
    /// `Head::tfidf` then `Head::probabilities` on `(column, count)` hits, columns ascending.
    fn probabilities(&self, f: &TextFeatures, hits: &mut [(u32, f32)]) -> Vec<f32> {
        for (c, v) in hits.iter_mut() {
            let tf = if f.sublinear_tf { 1.0 + v.ln() } else { *v };
            *v = tf * self.idf[*c as usize];
        }
        let norm = hits.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            for (_, v) in hits.iter_mut() {
                *v /= norm;
            }
        }
        let k = self.k;
        let mut z = self.intercepts.clone();
        for &(c, v) in hits.iter() {
            let start = c as usize * k;
            for (zc, w) in z.iter_mut().zip(&self.weights[start..start + k]) {
                *zc += v * w;
            }
        }
        softmax(&mut z);
        z
    }
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
