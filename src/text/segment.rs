//! Chinese segmentation: the step after masking that turns an event's text into the content
//! tokens the classifiers read and the keywords that detection and alerts show.
//!
//! The routing model was trained on text that Python jieba cut with its HMM on and that its
//! publisher then filtered, so [`Segmenter::segment`] cuts once the same way (jieba-rs, HMM on)
//! and filters with [`Segmenter::is_content`] — which the trainer can also apply to the
//! already-segmented training rows, so that training and serving see one vocabulary. Keywords
//! are ranked from the tokens already cut; the text is never segmented twice.
//!
//! Everything after jieba's `cut` is one pass over its tokens: each token's character class is
//! decided once (it says both whether the token is a word and whether it may be a keyword),
//! short stop words are looked up as packed integers rather than hashed strings, and only the
//! best `max_keywords` candidates are sorted. Both token lists borrow the text that was cut
//! rather than costing an allocation and a free per token (owning the content tokens was 1.4 %
//! of `process`'s instructions; README, Performance). Detection, which needs the tokens after
//! the text has moved into the event, gets them as one [`crate::text::tokens::TokenList`].

use jieba_rs::Jieba;
use rustc_hash::{FxHashMap, FxHashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::LazyLock;

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

/// The tokens of one text, borrowed from the text that was cut, so that no token costs an
/// allocation of its own ([`Segmented::owned_tokens`] where they must outlive the text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segmented<'t> {
    /// Content tokens in order: stop words, digits, punctuation and whitespace removed — the same
    /// filtering as the training data, so these are the model's input.
    pub tokens: Vec<&'t str>,
    /// The same cut with stop words kept (punctuation, whitespace and numbers still dropped):
    /// negations and particles (不, 没有, 吗, 怕 …) carry the sentiment of a short post.
    pub words: Vec<&'t str>,
    /// The most informative tokens (TF-IDF), best first, at most `max_keywords`.
    pub keywords: Vec<String>,
}

impl Segmented<'_> {
    /// The content tokens as owned strings: for training and evaluation, which keep a
    /// corpus of them.
    pub fn owned_tokens(&self) -> Vec<String> {
        self.tokens.iter().map(|t| t.to_string()).collect()
    }
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
/// text that is nearly all Han. The rest of the Basic Multilingual Plane — above all the
/// full-width punctuation (，。：“”) that makes up a large share of jieba's tokens — is read
/// from [`BMP_CLASSES`], built once from those same tables.
fn class(c: char) -> CharClass {
    match c {
        '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' => CharClass::Letter,
        'a'..='z' | 'A'..='Z' => CharClass::Letter,
        '0'..='9' => CharClass::Digit,
        c if c.is_ascii() => CharClass::Other,
        c => match BMP_CLASSES.get(c as usize) {
            Some(&class) => class,
            None => slow_class(c),
        },
    }
}

/// The class from the Unicode tables: the definition [`class`] must agree with.
fn slow_class(c: char) -> CharClass {
    if c.is_numeric() {
        CharClass::Digit
    } else if c.is_alphabetic() {
        CharClass::Letter
    } else {
        CharClass::Other
    }
}

/// [`slow_class`] of every code point below U+10000 (surrogates, which are no `char`, as
/// `Other`): 64 KiB, built on first use.
static BMP_CLASSES: LazyLock<Box<[CharClass]>> = LazyLock::new(|| {
    (0..=0xFFFFu32)
        .map(|u| char::from_u32(u).map_or(CharClass::Other, slow_class))
        .collect()
});

/// What one token is, from a single scan of its characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// Whitespace, punctuation or symbols alone, a lone Latin letter, or a number while
    /// digits are not kept: dropped everywhere.
    NotWord,
    /// A word (see [`Segmenter::is_word`]); `keyword` when it has two or more characters and
    /// a letter among them, the only tokens ever ranked as keywords.
    Word { keyword: bool },
}

/// The stop-word list. Words of at most [`PACKED_MAX`] bytes — nearly all of them, one or two
/// Han characters — are kept as packed integers, so testing a token costs a copy and one
/// integer hash instead of hashing and comparing a string. Longer words are looked up as
/// strings, and only when some stop word has the token's length.
struct StopWords {
    packed: FxHashSet<u64>,
    long: FxHashSet<Box<str>>,
    /// Bit `n` (n < 64) set when some long stop word is `n` bytes long; bit 63 stands for
    /// every length from 63 up.
    long_lengths: u64,
}

/// Longest stop word held packed: seven bytes and the length in the eighth.
const PACKED_MAX: usize = 7;

fn pack(word: &str) -> Option<u64> {
    let bytes = word.as_bytes();
    if bytes.len() > PACKED_MAX {
        return None;
    }
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[7] = bytes.len() as u8;
    Some(u64::from_le_bytes(buf))
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl StopWords {
    fn new(words: impl IntoIterator<Item = String>) -> Self {
        let mut stop = StopWords {
            packed: FxHashSet::default(),
            long: FxHashSet::default(),
            long_lengths: 0,
        };
        for word in words {
            match pack(&word) {
                Some(key) => {
                    stop.packed.insert(key);
                }
                None => {
                    stop.long_lengths |= length_bit(word.len());
                    stop.long.insert(word.into_boxed_str());
                }
            }
        }
        stop
    }

    fn contains(&self, word: &str) -> bool {
        match pack(word) {
            Some(key) => self.packed.contains(&key),
            None => self.long_lengths & length_bit(word.len()) != 0 && self.long.contains(word),
        }
    }

    fn len(&self) -> usize {
        self.packed.len() + self.long.len()
    }
}

pub struct Segmenter {
    jieba: Jieba,
    stopwords: StopWords,
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
        let stopwords = StopWords::new(
            content_lines(stopwords, stopwords_label)?
                .into_iter()
                .map(|(_, w)| w),
        );
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
        matches!(self.kind(token), TokenKind::Word { .. })
    }

    /// Word or not, and keyword candidate or not, in one scan of the characters.
    fn kind(&self, token: &str) -> TokenKind {
        let mut chars = token.chars();
        let Some(first) = chars.next() else {
            return TokenKind::NotWord;
        };
        if chars.next().is_none() {
            // One character: the most common case, decided without scanning twice. Never a
            // keyword: alone it names nothing an operator could act on.
            let keep = match class(first) {
                CharClass::Letter => !first.is_ascii_alphabetic(),
                CharClass::Digit => self.keep_digits,
                CharClass::Other => false,
            };
            return if keep {
                TokenKind::Word { keyword: false }
            } else {
                TokenKind::NotWord
            };
        }
        let mut any_digit = false;
        for c in token.chars() {
            match class(c) {
                CharClass::Letter => return TokenKind::Word { keyword: true },
                CharClass::Digit => any_digit = true,
                CharClass::Other => {}
            }
        }
        if any_digit && self.keep_digits {
            // A number kept as a word is still no keyword.
            TokenKind::Word { keyword: false }
        } else {
            TokenKind::NotWord
        }
    }

    /// Cuts `text` once (HMM on), keeps the content tokens and ranks at most `max_keywords`
    /// of them.
    pub fn segment<'t>(&self, text: &'t str, max_keywords: usize) -> Segmented<'t> {
        let cut = self.jieba.cut(text, true);
        let mut words: Vec<&'t str> = Vec::with_capacity(cut.len());
        let mut tokens: Vec<&'t str> = Vec::with_capacity(cut.len());
        let mut ranking = Ranking::new(if max_keywords == 0 { 0 } else { cut.len() });
        for word in cut.iter().map(|t| t.word) {
            let TokenKind::Word { keyword } = self.kind(word) else {
                continue;
            };
            if !self.stopwords.contains(word) {
                if keyword && max_keywords > 0 {
                    ranking.count(word, tokens.len());
                }
                tokens.push(word);
            }
            words.push(word);
        }
        let keywords = ranking.best(max_keywords, |w| self.weight(w));
        Segmented {
            tokens,
            words,
            keywords,
        }
    }

    /// A keyword candidate's weight: its IDF, or without a table a length weight.
    fn weight(&self, word: &str) -> f64 {
        match &self.idf {
            Some(idf) => idf.table.get(word).copied().unwrap_or(idf.median),
            None => match word.chars().count() {
                0 | 1 => 0.0,
                2 => 1.0,
                3 => 1.3,
                _ => 1.5,
            },
        }
    }
}

/// Keyword candidates of one text: how often each occurs and where first.
struct Ranking<'t> {
    index: FxHashMap<&'t str, usize>,
    /// (word, count, position of the first occurrence among the content tokens).
    stats: Vec<(&'t str, u32, usize)>,
}

impl<'t> Ranking<'t> {
    /// Room for `tokens` candidates; nothing is allocated when no keyword is wanted.
    fn new(tokens: usize) -> Self {
        Ranking {
            index: FxHashMap::with_capacity_and_hasher(tokens, Default::default()),
            stats: Vec::with_capacity(tokens),
        }
    }

    fn count(&mut self, word: &'t str, position: usize) {
        match self.index.entry(word) {
            std::collections::hash_map::Entry::Occupied(seen) => {
                self.stats[*seen.get()].1 += 1;
            }
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(self.stats.len());
                self.stats.push((word, 1, position));
            }
        }
    }

    /// Best candidates first by term frequency × weight; ties go to the earlier first
    /// occurrence, so the order depends on the text only. That order is total (positions
    /// differ), so selecting the best `max` and sorting only those gives exactly the head of
    /// a full sort.
    fn best(self, max: usize, weight: impl Fn(&str) -> f64) -> Vec<String> {
        if max == 0 || self.stats.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(f64, usize, &str)> = self
            .stats
            .into_iter()
            .map(|(w, n, pos)| (f64::from(n) * weight(w), pos, w))
            .collect();
        let order = |a: &(f64, usize, &str), b: &(f64, usize, &str)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
        };
        if scored.len() > max {
            scored.select_nth_unstable_by(max - 1, order);
            scored.truncate(max);
        }
        scored.sort_unstable_by(order);
        scored.into_iter().map(|(_, _, w)| w.to_string()).collect()
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
    fn class_table_agrees_with_the_unicode_tables_for_every_char() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let expected = match c {
                'a'..='z' | 'A'..='Z' => CharClass::Letter,
                '0'..='9' => CharClass::Digit,
                c if c.is_ascii() => CharClass::Other,
                c => slow_class(c),
            };
            assert_eq!(class(c), expected, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn stop_words_of_every_length_are_found_and_only_they() {
        let words = [
            "的",
            "了吗",
            "ab",
            "一二三",
            "abcdefg",
            "abcdefgh",
            "无论如何都要",
        ];
        let stop = StopWords::new(words.iter().map(|w| w.to_string()));
        assert_eq!(stop.len(), words.len());
        for w in words {
            assert!(stop.contains(w), "{w}");
        }
        // Prefixes, extensions and same-length neighbours of the packed and the long ones.
        for w in [
            "",
            "a",
            "的的",
            "了",
            "abc",
            "一二",
            "一二四",
            "abcdef",
            "abcdefgx",
            "无论如何",
        ] {
            assert!(!stop.contains(w), "{w}");
        }
    }

    #[test]
    fn segment_keeps_words_drops_stop_words_and_ranks_keywords() {
        let s = seg();
        let out = s.segment("请问雨花区的占道经营，占道经营 A 2019年了", 2);
        assert_eq!(
            out.words,
            ["请问", "雨花区", "的", "占道经营", "占道经营", "年", "了"]
        );
        assert_eq!(out.tokens, ["雨花区", "占道经营", "占道经营", "年"]);
        // Twice × 1.5 beats once × 1.3; the single character 年 is never a keyword.
        assert_eq!(out.keywords, ["占道经营", "雨花区"]);
        assert!(s.segment("雨花区", 0).keywords.is_empty());
        assert_eq!(s.segment("", 5), Segmented::default());
    }

    #[test]
    fn keyword_ties_go_to_the_first_occurrence_past_the_selection() {
        let s = seg();
        // Ten two-character candidates of equal weight: the first three, in text order.
        let text = "道路 积水 噪音 垃圾 停车 占用 绿化 路灯 井盖 电梯";
        let out = s.segment(text, 3);
        assert_eq!(out.keywords, ["道路", "积水", "噪音"]);
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
