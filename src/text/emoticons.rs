//! Weibo emoticon codes (`[哈哈]`, `[泪]`, `[中国赞]` …): removed from social text before the
//! emotion, polarity and relevance models read it.
//!
//! Sits between masking and segmentation for Weibo and WeChat text. The polarity training set
//! was labelled *from* these emoticons, so a model that saw them would learn the labelling rule,
//! not the language; they are stripped from training text and, to match, at inference.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// A bracketed code of 1–8 characters, as Weibo renders its emoticons.
static EMOTICON: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: failing to compile is a programmer error caught by every test.
    Regex::new(r"\[[^\]]{1,8}\]").expect("emoticon pattern is valid")
});

/// `text` without its Weibo emoticon codes; borrowed (no allocation) when there are none.
pub fn strip_emoticons(text: &str) -> Cow<'_, str> {
    if !text.contains('[') {
        return Cow::Borrowed(text);
    }
    EMOTICON.replace_all(text, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_codes_and_keeps_words() {
        assert_eq!(
            strip_emoticons("致敬[心][心]大家出门[中国赞]"),
            "致敬大家出门"
        );
    }

    #[test]
    fn text_without_codes_is_borrowed() {
        assert!(matches!(strip_emoticons("早安"), Cow::Borrowed("早安")));
        assert!(matches!(strip_emoticons("[没有结尾"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_brackets_are_not_emoticons() {
        let text = "[这是一段超过八个字的括号内容]";
        assert_eq!(strip_emoticons(text), text);
    }
}
