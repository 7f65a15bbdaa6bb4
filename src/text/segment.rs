//! Chinese segmentation: the step after masking that turns an event's text into the content
//! tokens the classifiers read and the keywords that detection and alerts show.
//!
//! The routing model was trained on text that Python jieba cut with its HMM on and that its
//! publisher then filtered, so [`Segmenter::segment`] cuts once the same way (jieba-rs, HMM on)
//! and filters with [`Segmenter::is_content`] — which the trainer can also apply to the
//! already-segmented training rows, so that training and serving see one vocabulary. Keywords
//! are ranked from the tokens already cut; the text is never segmented twice.

use jieba_rs::Jieba;
use rustc_hash::{FxHashMap, FxHashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A user-dictionary line that is not `word [freq] [tag]`.
    #[error("{path}:{line}: {reason}")]
    DictLine {
        path: String,
        line: usize,
        reason: String,
    },
    /// An IDF-table line that is not `word idf`.
    #[error("{path}:{line}: {reason}")]
    IdfLine {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The tokens of one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segmented {
    /// Content tokens in order: stop words, digits, punctuation and whitespace removed — the same
    /// filtering as the training data, so these are the model's input.
    pub tokens: Vec<String>,
    /// The same cut with stop words kept (punctuation, whitespace and numbers still dropped):
    /// negations and particles (不, 没有, 吗, 怕 …) carry the sentiment of a short post.
    pub words: Vec<String>,
    /// The most informative tokens (TF-IDF), best first, at most `max_keywords`.
    pub keywords: Vec<String>,
}

/// Longest user-dictionary word accepted; jieba's own longest entries are about this long, and
/// the bound keeps a malformed line from creating a giant trie path.
const MAX_WORD_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Letter,
    Digit,
    Other,
}

/// Letter, digit (of any script) or neither. Han ideographs and ASCII are decided by range
/// first: the Unicode tables behind `char::is_alphanumeric` cost more than the cut itself on
/// text that is nearly all Han.
fn class(c: char) -> CharClass {
    match c {
        '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' => CharClass::Letter,
        'a'..='z' | 'A'..='Z' => CharClass::Letter,
        '0'..='9' => CharClass::Digit,
        c if c.is_ascii() => CharClass::Other,
        c if c.is_numeric() => CharClass::Digit,
        c if c.is_alphabetic() => CharClass::Letter,
        _ => CharClass::Other,
    }
}

pub struct Segmenter {
    jieba: Jieba,
    stopwords: FxHashSet<Box<str>>,
    /// Optional `word → idf` table; without it keywords fall back to a length weight.
    idf: Option<Idf>,
    /// The training rows do keep numbers such as `2019` and `300`; they are dropped here by
    /// default because at serving time they are dates, amounts and left-over codes that tell
    /// no department apart. See [`Segmenter::keep_digits`].
    keep_digits: bool,
}

struct Idf {
    table: FxHashMap<Box<str>, f64>,
    /// Weight of a word missing from the table, as jieba does it: the table's median.
    median: f64,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("stopwords", &self.stopwords.len())
            .field("idf_words", &self.idf.as_ref().map(|i| i.table.len()))
            .field("keep_digits", &self.keep_digits)
            .finish()
    }
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, SegmentError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| SegmentError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// Lines of a word list with `#` comments and blank lines skipped, numbered from 1.
fn content_lines(reader: impl Read, label: &str) -> Result<Vec<(usize, String)>, SegmentError> {
    let mut out = Vec::new();
    for (k, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|source| SegmentError::Io {
            path: label.to_string(),
            source,
        })?;
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            out.push((k + 1, t.to_string()));
        }
    }
    Ok(out)
}

impl Segmenter {
    /// jieba's dictionary plus the user dictionary and the stop-word list at these paths.
    pub fn from_files(user_dict: &Path, stopwords: &Path) -> Result<Self, SegmentError> {
        let d = open(user_dict)?;
        let s = open(stopwords)?;
        Segmenter::from_readers(
            d,
            &user_dict.display().to_string(),
            s,
            &stopwords.display().to_string(),
        )
    }

    /// Like [`Segmenter::from_files`] from any readers; the labels name them in errors.
    ///
    /// The user dictionary is jieba's format, `word [freq] [tag]` a line, plus `#` comments.
    /// The stop-word list is one word a line, plus `#` comments.
    pub fn from_readers(
        user_dict: impl Read,
        user_dict_label: &str,
        stopwords: impl Read,
        stopwords_label: &str,
    ) -> Result<Self, SegmentError> {
        let mut jieba = Jieba::new();
        for (line, text) in content_lines(user_dict, user_dict_label)? {
            let bad = |reason: String| SegmentError::DictLine {
                path: user_dict_label.to_string(),
                line,
                reason,
            };
            let mut parts = text.split_whitespace();
            let word = parts.next().unwrap_or_default();
            if word.chars().count() > MAX_WORD_CHARS {
                return Err(bad(format!(
                    "word '{word}' is longer than {MAX_WORD_CHARS} characters"
                )));
            }
            let freq = match parts.next() {
                Some(f) => Some(f.parse::<usize>().map_err(|e| {
                    bad(format!(
                        "frequency '{f}' of '{word}' is not a whole number: {e}"
                    ))
                })?),
                None => None,
            };
            let tag = parts.next();
            if let Some(extra) = parts.next() {
                return Err(bad(format!(
                    "unexpected '{extra}' after the tag (expected: word [freq] [tag])"
                )));
            }
            jieba.add_word(word, freq, tag);
        }
        let stopwords = content_lines(stopwords, stopwords_label)?
            .into_iter()
            .map(|(_, w)| w.into_boxed_str())
            .collect();
        Ok(Segmenter {
            jieba,
            stopwords,
            idf: None,
            keep_digits: false,
        })
    }

    /// Keep pure-number tokens (`2019`, `300`) as the published training rows do.
    pub fn keep_digits(mut self, on: bool) -> Self {
        self.keep_digits = on;
        self
    }

    /// Ranks keywords by TF-IDF with this table (`word idf` a line, jieba's `idf.txt` format,
    /// `#` comments allowed) instead of the length weight.
    pub fn with_idf(mut self, table: impl Read, label: &str) -> Result<Self, SegmentError> {
        let mut map = FxHashMap::default();
        let mut values = Vec::new();
        for (line, text) in content_lines(table, label)? {
            let mut parts = text.split_whitespace();
            let word = parts.next().unwrap_or_default();
            let v = parts
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| SegmentError::IdfLine {
                    path: label.to_string(),
                    line,
                    reason: format!("expected 'word idf' with a non-negative number, got '{text}'"),
                })?;
            map.insert(word.into(), v);
            values.push(v);
        }
        values.sort_by(f64::total_cmp);
        let median = values.get(values.len() / 2).copied().unwrap_or(1.0);
        self.idf = Some(Idf { table: map, median });
        Ok(self)
    }

    /// Whether the user dictionary or jieba's own knows `word` as a whole word.
    pub fn has_word(&self, word: &str) -> bool {
        self.jieba.has_word(word)
    }

    /// Whether a token as jieba cut it is content: not whitespace, not punctuation or symbols
    /// alone, not a stop word, not a single Latin letter (`A` of the anonymised `A市`), and
    /// not a pure number unless [`Segmenter::keep_digits`] is on.
    ///
    /// The trainer should apply this to the published training tokens as well.
    pub fn is_content(&self, token: &str) -> bool {
        self.is_word(token) && !self.stopwords.contains(token)
    }

    /// Whether a token is a word at all: [`Segmenter::is_content`] without the stop-word test.
    pub fn is_word(&self, token: &str) -> bool {
        let mut chars = token.chars();
        let Some(first) = chars.next() else {
            return false;
        };
        if chars.next().is_none() {
            // One character: the most common case, decided without scanning twice.
            let keep = match class(first) {
                CharClass::Letter => !first.is_ascii_alphabetic(),
                CharClass::Digit => self.keep_digits,
                CharClass::Other => false,
            };
            return keep;
        }
        let mut any_letter = false;
        let mut any_digit = false;
        for c in token.chars() {
            match class(c) {
                CharClass::Letter => {
                    any_letter = true;
                    break;
                }
                CharClass::Digit => any_digit = true,
                CharClass::Other => {}
            }
        }
        any_letter || (any_digit && self.keep_digits)
    }

    /// Cuts `text` once (HMM on), keeps the content tokens and ranks at most `max_keywords`
    /// of them.
    pub fn segment(&self, text: &str, max_keywords: usize) -> Segmented {
        let cut = self.jieba.cut(text, true);
        let mut kept: Vec<&str> = Vec::with_capacity(cut.len());
        let mut words: Vec<String> = Vec::with_capacity(cut.len());
        for word in cut.iter().map(|t| t.word).filter(|w| self.is_word(w)) {
            if !self.stopwords.contains(word) {
                kept.push(word);
            }
            words.push(word.to_string());
        }
        let keywords = self.keywords(&kept, max_keywords);
        Segmented {
            tokens: kept.iter().map(|w| (*w).to_string()).collect(),
            words,
            keywords,
        }
    }

    /// Best tokens first by term frequency × weight; ties go to the earlier first occurrence,
    /// so the order depends on the text only. Single characters and numbers are never
    /// keywords: alone they name nothing an operator could act on.
    fn keywords(&self, tokens: &[&str], max: usize) -> Vec<String> {
        if max == 0 || tokens.is_empty() {
            return Vec::new();
        }
        // (token, count, first position) for each distinct keyword candidate.
        let mut index: FxHashMap<&str, usize> =
            FxHashMap::with_capacity_and_hasher(tokens.len(), Default::default());
        let mut stats: Vec<(&str, u32, usize)> = Vec::new();
        for (pos, &t) in tokens.iter().enumerate() {
            if t.chars().nth(1).is_none() || !t.chars().any(|c| class(c) == CharClass::Letter) {
                continue;
            }
            match index.get(t) {
                Some(&k) => stats[k].1 += 1,
                None => {
                    index.insert(t, stats.len());
                    stats.push((t, 1, pos));
                }
            }
        }
        let weight = |w: &str| -> f64 {
            match &self.idf {
                Some(idf) => idf.table.get(w).copied().unwrap_or(idf.median),
                None => match w.chars().count() {
                    0 | 1 => 0.0,
                    2 => 1.0,
                    3 => 1.3,
                    _ => 1.5,
                },
            }
        };
        let mut scored: Vec<(f64, usize, &str)> = stats
            .into_iter()
            .map(|(w, n, pos)| (f64::from(n) * weight(w), pos, w))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(max)
            .map(|(_, _, w)| w.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg() -> Segmenter {
        let dict = "# test\n占道经营 2000 n\n雨花区 2000 ns\n";
        let stop = "# stop\n的\n了\n请问\n";
        Segmenter::from_readers(dict.as_bytes(), "dict", stop.as_bytes(), "stop")
            .expect("valid fixtures")
    }

    #[test]
    fn content_filter() {
        let s = seg();
        assert!(!s.is_content("的"));
        assert!(!s.is_content("2019"));
        assert!(!s.is_content("，"));
        assert!(!s.is_content(" "));
        assert!(!s.is_content("A"));
        assert!(!s.is_content("..."));
        assert!(s.is_content("A3"));
        assert!(s.is_content("区"));
        assert!(s.keep_digits(true).is_content("2019"));
    }

    #[test]
    fn bad_dict_line_is_named() {
        let e = Segmenter::from_readers("词 abc\n".as_bytes(), "u.txt", "".as_bytes(), "s")
            .expect_err("frequency is not a number");
        assert!(e.to_string().starts_with("u.txt:1:"), "{e}");
    }

    #[test]
    fn idf_changes_ranking() {
        let s = seg()
            .with_idf("占道经营 1.0\n投诉 9.0\n雨花区 1.0\n".as_bytes(), "idf")
            .expect("valid idf");
        let out = s.segment("雨花区占道经营，投诉占道经营", 1);
        assert_eq!(out.keywords, ["投诉"]);
    }
}
