//! Lenient JSON values for the three JSON channels: parse once, keep only the fields a decoder
//! declares, and let the decoder — not serde — judge each value's type.
//!
//! A decoder declares a struct of `Option<Any>` fields; serde skips every other key without
//! allocating, borrows strings that hold no escapes, and accepts any JSON type, so the helpers
//! below can reject a wrong type with an error naming the channel's field (`bjsj`, `诉求内容`)
//! instead of serde's "invalid type at line 1 column 80".

use super::{non_empty, quote, time, DecodeError};
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use std::fmt;

mod value;
pub(crate) use value::{Any, Nested};

/// The object in a [`Nested`] field; absent or `null` is `None`, any other kind an error.
pub(crate) fn object<'n, T>(
    field: &'static str,
    value: Option<&'n Nested<T>>,
) -> Result<Option<&'n T>, DecodeError> {
    match value {
        None | Some(Nested::Other("null")) => Ok(None),
        Some(Nested::Object(inner)) => Ok(Some(inner)),
        Some(Nested::Other(found)) => Err(wrong_type(field, "object", found)),
    }
}

/// Parse a whole record, which must be one JSON object.
pub(crate) fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    match serde_json::from_str::<Nested<T>>(text) {
        Ok(Nested::Object(record)) => Ok(record),
        Ok(Nested::Other(found)) => Err(wrong_type("(record)", "object", found)),
        Err(e) => {
            let (line, column) = (e.line(), e.column());
            let full = e.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
            Err(DecodeError::InvalidJson {
                line,
                column,
                message,
            })
        }
    }
}

pub(crate) fn wrong_type(
    field: &'static str,
    expected: &'static str,
    found: &'static str,
) -> DecodeError {
    DecodeError::WrongType {
        field,
        expected,
        found,
    }
}

/// An optional string; empty or blank counts as absent, because exports write `""` for "none".
pub(crate) fn opt_str<'v>(
    field: &'static str,
    value: Option<&'v Any>,
) -> Result<Option<&'v str>, DecodeError> {
    match value {
        None | Some(Any::Null) => Ok(None),
        Some(Any::Str(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty())),
        Some(other) => Err(wrong_type(field, "string", other.kind())),
    }
}

/// The citizen's words: a required, non-blank string, trimmed.
pub(crate) fn text(field: &'static str, value: Option<&Any>) -> Result<String, DecodeError> {
    match value {
        None | Some(Any::Null) => Err(DecodeError::MissingField { field }),
        Some(Any::Str(s)) => non_empty(field, s),
        Some(other) => Err(wrong_type(field, "string", other.kind())),
    }
}

/// An identifier or phone number that systems write as a string or as an integer.
pub(crate) fn opt_id(
    field: &'static str,
    value: Option<&Any>,
) -> Result<Option<String>, DecodeError> {
    match value {
        None | Some(Any::Null) => Ok(None),
        Some(Any::Str(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)),
        Some(Any::Int(n)) => Ok(Some(n.to_string())),
        Some(Any::UInt(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(wrong_type(field, "string or integer", other.kind())),
    }
}

/// A required identifier (see [`opt_id`]); blank counts as missing.
pub(crate) fn id(field: &'static str, value: Option<&Any>) -> Result<String, DecodeError> {
    opt_id(field, value)?.ok_or(DecodeError::MissingField { field })
}

/// A required time: text in any of [`time::ACCEPTED_FORMATS`], or unix seconds/milliseconds.
pub(crate) fn timestamp(
    field: &'static str,
    value: Option<&Any>,
) -> Result<DateTime<FixedOffset>, DecodeError> {
    match value {
        None | Some(Any::Null) => Err(DecodeError::MissingField { field }),
        Some(Any::Str(s)) => time::parse_str(s).ok_or_else(|| DecodeError::InvalidValue {
            field,
            reason: format!(
                "unrecognised time {} (accepted: {})",
                quote(s),
                time::ACCEPTED_FORMATS
            ),
        }),
        Some(Any::Int(n)) => time::from_unix(*n).ok_or_else(|| out_of_range(field, n)),
        Some(Any::UInt(n)) => i64::try_from(*n)
            .ok()
            .and_then(time::from_unix)
            .ok_or_else(|| out_of_range(field, n)),
        Some(other) => Err(wrong_type(
            field,
            "time string or unix timestamp",
            other.kind(),
        )),
    }
}

fn out_of_range(field: &'static str, n: &dyn fmt::Display) -> DecodeError {
    DecodeError::InvalidValue {
        field,
        reason: format!("unix timestamp {n} is out of range"),
    }
}

/// A count (reposts, followers …): a non-negative integer or a string of digits; absent is 0.
pub(crate) fn count(field: &'static str, value: Option<&Any>) -> Result<u64, DecodeError> {
    match value {
        None | Some(Any::Null) => Ok(0),
        Some(Any::UInt(n)) => Ok(*n),
        Some(Any::Int(n)) => u64::try_from(*n).map_err(|_| DecodeError::InvalidValue {
            field,
            reason: format!("count {n} is negative"),
        }),
        Some(Any::Str(s)) => s.trim().parse().map_err(|_| DecodeError::InvalidValue {
            field,
            reason: format!("{} is not a non-negative integer", quote(s)),
        }),
        Some(other) => Err(wrong_type(field, "non-negative integer", other.kind())),
    }
}

/// An optional number that systems write as a number or a numeric string; blank is absent.
pub(crate) fn opt_float(
    field: &'static str,
    value: Option<&Any>,
) -> Result<Option<f64>, DecodeError> {
    match value {
        None | Some(Any::Null) => Ok(None),
        Some(Any::Float(x)) => Ok(Some(*x)),
        // Coordinates and the like: the precision lost above 2^53 is irrelevant.
        Some(Any::Int(n)) => Ok(Some(*n as f64)),
        Some(Any::UInt(n)) => Ok(Some(*n as f64)),
        Some(Any::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Any::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| DecodeError::InvalidValue {
                field,
                reason: format!("{} is not a number", quote(s)),
            }),
        Some(other) => Err(wrong_type(field, "number", other.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[derive(Debug, serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        v: Option<Any<'a>>,
    }

    fn v(json: &str) -> Option<Any<'_>> {
        parse::<Probe>(json).unwrap().v
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        assert!(matches!(
            v(r#"{"v":"雨花区"}"#),
            Some(Any::Str(Cow::Borrowed("雨花区")))
        ));
        assert!(matches!(
            v(r#"{"v":"a\nb"}"#),
            Some(Any::Str(Cow::Owned(_)))
        ));
        assert_eq!(v(r#"{"v":null}"#), None);
        assert_eq!(v(r#"{"v":{"deep":[1]}}"#).map(|a| a.kind()), Some("object"));
    }

    #[test]
    fn counts_and_numbers_accept_their_string_forms() {
        assert_eq!(count("c", v(r#"{"v":" 42 "}"#).as_ref()), Ok(42));
        assert_eq!(count("c", None), Ok(0));
        assert!(matches!(
            count("c", v(r#"{"v":1.5}"#).as_ref()),
            Err(DecodeError::WrongType { .. })
        ));
        assert_eq!(
            opt_float("f", v(r#"{"v":"28.5"}"#).as_ref()),
            Ok(Some(28.5))
        );
        assert_eq!(opt_float("f", v(r#"{"v":" "}"#).as_ref()), Ok(None));
        assert_eq!(
            opt_id("i", v(r#"{"v":-7}"#).as_ref()),
            Ok(Some("-7".into()))
        );
        assert_eq!(opt_str("s", v(r#"{"v":"  "}"#).as_ref()), Ok(None));
    }

    #[test]
    fn json_errors_carry_line_and_column_once() {
        let err = parse::<Probe>("{\n\"v\": }").unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidJson {
                line: 2,
                column: 6,
                message: "expected value".into()
            }
        );
        let err = parse::<Probe>(r#"{"v":1} x"#).unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"v\":{}}}", "[".repeat(100_000));
        let err = parse::<Probe>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}
