//! The content tokens of one event as they leave the processing path for detection (in line,
//! or over the internal topic to stage 2): every token's text in one buffer.
//!
//! Segmentation and classification read tokens borrowed from the text that was cut; only
//! detection needs them after the event is built, when that text has moved on. Owned as one
//! `String` each they cost an allocation and a free per token (~120 for a long message), in
//! stage 1 and again when stage 2 reads the internal topic; here an event costs two
//! allocations whatever its length. Measured: 1.4 % of the instructions of `process`, and ~3 %
//! more long messages a second through Kafka on one core (README, Performance).
//!
//! On the wire (`InternalEvent.tokens`) a list is a JSON array of strings, as a `Vec<String>`.

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Tokens in order, each token's text ending at `ends[i]` in `text`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenList {
    text: String,
    ends: Vec<u32>,
}

impl TokenList {
    /// Room for `tokens` tokens of `bytes` bytes in all.
    pub fn with_capacity(tokens: usize, bytes: usize) -> Self {
        TokenList {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(tokens),
        }
    }

    /// These tokens, in one allocation for the text and one for the ends.
    pub fn of(tokens: &[&str]) -> Self {
        let bytes = tokens.iter().map(|t| t.len()).sum();
        let mut list = TokenList::with_capacity(tokens.len(), bytes);
        list.extend(tokens.iter().copied());
        list
    }

    /// Appends a token. A list holds at most 4 GiB of text: an event's text is bounded far
    /// below that by the decoders, so a longer one is a bug and panics (the stage's guard
    /// dead-letters the record).
    pub fn push(&mut self, token: &str) {
        self.text.push_str(token);
        let end = u32::try_from(self.text.len()).expect("token list over 4 GiB");
        self.ends.push(end);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes of the list as a JSON array of strings when no token needs an escape: brackets,
    /// and per token two quotes and a comma, one comma fewer.
    pub fn json_size_hint(&self) -> usize {
        match self.ends.len() {
            0 => 2,
            tokens => 1 + self.text.len() + 3 * tokens,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        (0..self.ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            &self.text[start..self.ends[i] as usize]
        })
    }
}

impl<'a> Extend<&'a str> for TokenList {
    fn extend<I: IntoIterator<Item = &'a str>>(&mut self, tokens: I) {
        for token in tokens {
            self.push(token);
        }
    }
}

impl<'a> FromIterator<&'a str> for TokenList {
    fn from_iter<I: IntoIterator<Item = &'a str>>(tokens: I) -> Self {
        let mut list = TokenList::default();
        list.extend(tokens);
        list
    }
}

impl FromIterator<String> for TokenList {
    fn from_iter<I: IntoIterator<Item = String>>(tokens: I) -> Self {
        let mut list = TokenList::default();
        for token in tokens {
            list.push(&token);
        }
        list
    }
}

impl fmt::Debug for TokenList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for TokenList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for TokenList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(Tokens)
    }
}

/// Reads a JSON array of strings into a [`TokenList`].
struct Tokens;

impl<'de> Visitor<'de> for Tokens {
    type Value = TokenList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of token strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TokenList, A::Error> {
        // The hint comes from the input: capped so that a hostile length cannot reserve. JSON
        // gives none: then room for a short post's tokens, so that most lists are allocated
        // once rather than grown from nothing (heaptrack counted 6.8 allocations per short
        // post in stage 2 growing both buffers).
        let (tokens, bytes) = match seq.size_hint() {
            Some(hint) => (hint.min(4096), 0),
            None => (TYPICAL_TOKENS, TYPICAL_TOKENS * 6),
        };
        let mut list = TokenList::with_capacity(tokens, bytes);
        while seq.next_element_seed(Push(&mut list))?.is_some() {}
        Ok(list)
    }
}

/// Tokens reserved for a list read from JSON, which gives no length: 32 tokens of six bytes
/// (two Han characters) hold a short post's list; a long message's list grows from there.
const TYPICAL_TOKENS: usize = 32;

/// Appends one string element straight to the list: each token is copied once, from the
/// input (or the parser's unescaping buffer) into the list, never into a `String` of its own.
struct Push<'l>(&'l mut TokenList);

impl<'de> DeserializeSeed<'de> for Push<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Push<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token string")
    }

    fn visit_str<E: serde::de::Error>(self, token: &str) -> Result<(), E> {
        if self.0.text.len() + token.len() > u32::MAX as usize {
            return Err(E::custom("token list over 4 GiB"));
        }
        self.0.push(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_hint_is_the_json_length_without_escapes() {
        for tokens in [&[][..], &["路灯"][..], &["路灯", "", "坏了", "A3"][..]] {
            let list: TokenList = tokens.iter().copied().collect();
            let json = serde_json::to_vec(&list).unwrap();
            assert_eq!(list.json_size_hint(), json.len(), "{tokens:?}");
        }
    }

    #[test]
    fn keeps_tokens_in_order_including_empty_ones() {
        let list: TokenList = ["路灯", "", "坏了", "A3"].into_iter().collect();
        assert_eq!(list.len(), 4);
        assert_eq!(list.iter().collect::<Vec<_>>(), ["路灯", "", "坏了", "A3"]);
        assert!(TokenList::default().is_empty());
        assert_eq!(TokenList::default().iter().count(), 0);
    }

    #[test]
    fn json_is_an_array_of_strings_both_ways() {
        let list: TokenList = ["井盖", "缺失", "引号\"内"].into_iter().collect();
        let json = serde_json::to_string(&list).expect("serialises");
        assert_eq!(json, r#"["井盖","缺失","引号\"内"]"#);
        let as_strings: Vec<String> = serde_json::from_str(&json).expect("a string array");
        assert_eq!(as_strings, ["井盖", "缺失", "引号\"内"]);
        let back: TokenList = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, list);
    }

    #[test]
    fn a_non_array_or_a_non_string_element_is_refused_by_name() {
        let error = serde_json::from_str::<TokenList>(r#"{"a":1}"#).expect_err("not an array");
        assert!(
            error.to_string().contains("array of token strings"),
            "{error}"
        );
        let error = serde_json::from_str::<TokenList>(r#"["井盖",7]"#).expect_err("a number");
        assert!(error.to_string().contains("a token string"), "{error}");
    }
}
