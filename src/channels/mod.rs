//! Channel decoders: one pure function per channel from raw bytes to a [`Record`].
//!
//! First stage of the flow (decode → mask → segment → classify → route). No I/O here: the
//! Kafka source and the `process` command hand bytes in, and a [`DecodeError`] goes to the
//! dead-letter topic with its reason.
//!
//! Every decoder runs the same three checks in the same order — size ([`MAX_RECORD_BYTES`]),
//! UTF-8, then one parse of the channel's format — so a 10 MB blob costs a length comparison,
//! not a parse. Field extraction is shared: `json` for the three JSON channels, [`time`] for
//! the many ways a channel writes a timestamp, [`district`] for finding the district a report is
//! about.
//!
//! # Layout
//! - [`weibo`]: Weibo open-API statuses (public opinion, `舆情`).
//! - [`wechat`]: official-account callback XML (`留言`); event pushes are skipped.
//! - [`hotline12345`]: 12345 work orders, Chinese or English keys.
//! - [`police110`]: 110 dispatch records with pinyin-initial keys.

pub mod district;
pub mod hotline12345;
mod json;
pub mod police110;
pub mod time;
pub mod wechat;
pub mod weibo;

use crate::event::{Channel, Coordinates, Record};

/// Records larger than this are rejected before parsing. A citizen message is a few KB; the
/// limit keeps every output (an event, or the original on the dead-letter topic with its
/// headers) under Kafka's default 1 MB message size.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// Why a record could not be decoded. Every variant names the problem precisely enough for an
/// operator to find it (field, line, column, size).
///
/// Field names are the channel's own (`bjnr`, `诉求内容`, `Content`), nested ones dotted
/// (`user.followers_count`), so the message points at the input, not at our types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("record is not valid UTF-8: invalid byte sequence at byte offset {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid XML at byte {position}: {message}")]
    InvalidXml { position: u64, message: String },
    #[error("missing required field `{field}`")]
    MissingField { field: &'static str },
    #[error("field `{field}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}` is empty")]
    EmptyText { field: &'static str },
    #[error("field `{field}` has an invalid value: {reason}")]
    InvalidValue { field: &'static str, reason: String },
}

impl DecodeError {
    /// A short code from a fixed set, for metric labels and DLQ headers.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::InvalidXml { .. } => "invalid_xml",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::EmptyText { .. } => "empty_text",
            DecodeError::InvalidValue { .. } => "invalid_value",
        }
    }

    /// Every code [`reason_code`](Self::reason_code) can return, so metrics can pre-register
    /// their label values.
    pub const REASON_CODES: [&'static str; 8] = [
        "too_large",
        "invalid_utf8",
        "invalid_json",
        "invalid_xml",
        "missing_field",
        "wrong_type",
        "empty_text",
        "invalid_value",
    ];
}

/// A decoded input: either a citizen report, or something the channel sends that is not one.
// Reports are the common case and move once into the next stage; boxing them to shrink the rare
// skip would cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Report(Record),
    /// Not a citizen report (a WeChat `subscribe` event push …): counted, never routed.
    Skipped {
        reason: String,
    },
}

/// Decode one raw record of `channel`.
pub fn decode(channel: Channel, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    match channel {
        Channel::Weibo => weibo::decode(bytes),
        Channel::Wechat => wechat::decode(bytes),
        Channel::Hotline12345 => hotline12345::decode(bytes),
        Channel::Police110 => police110::decode(bytes),
    }
}

/// The checks every decoder runs before parsing: size first (cheap, and it bounds all later
/// work), then UTF-8 (so parsers and error messages only ever see text).
fn checked_text(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Trim a text field and insist something is left: every [`Record`] carries words.
fn non_empty(field: &'static str, text: &str) -> Result<String, DecodeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DecodeError::EmptyText { field });
    }
    Ok(trimmed.to_owned())
}

/// Coordinates from a latitude and a longitude field, when both are given. `(0, 0)` counts as
/// absent: dispatch databases write it for "not located", and no Chinese city lies there.
fn coordinates(
    (lat_field, lat): (&'static str, Option<f64>),
    (lon_field, lon): (&'static str, Option<f64>),
) -> Result<Option<Coordinates>, DecodeError> {
    let (Some(lat), Some(lon)) = (lat, lon) else {
        return Ok(None);
    };
    if lat == 0.0 && lon == 0.0 {
        return Ok(None);
    }
    let out_of_range = |field, value: f64, limit| DecodeError::InvalidValue {
        field,
        reason: format!("{value} is outside ±{limit} degrees"),
    };
    if !(-90.0..=90.0).contains(&lat) {
        return Err(out_of_range(lat_field, lat, 90));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(out_of_range(lon_field, lon, 180));
    }
    Ok(Some(Coordinates { lat, lon }))
}

/// A short, bounded quote of input for an error message, so a huge bad value cannot bloat a
/// DLQ header or a log line.
fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 40;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("\"{}…\"", &value[..cut]),
        None => format!("\"{value}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_records_are_rejected_before_utf8_or_parsing() {
        // Invalid UTF-8 *and* too large: the size check must win.
        let bytes = vec![0xff; MAX_RECORD_BYTES + 1];
        for channel in Channel::ALL {
            let err = decode(channel, &bytes).unwrap_err();
            assert_eq!(
                err,
                DecodeError::TooLarge {
                    size: MAX_RECORD_BYTES + 1,
                    limit: MAX_RECORD_BYTES
                }
            );
            assert_eq!(err.reason_code(), "too_large");
        }
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let err = checked_text(b"ab\xe4\xb8").unwrap_err();
        assert_eq!(err, DecodeError::InvalidUtf8 { offset: 2 });
        assert!(err.to_string().contains("byte offset 2"));
    }

    #[test]
    fn reason_codes_are_the_listed_fixed_set() {
        let samples = [
            DecodeError::TooLarge { size: 2, limit: 1 },
            DecodeError::InvalidUtf8 { offset: 0 },
            DecodeError::InvalidJson {
                line: 1,
                column: 1,
                message: String::new(),
            },
            DecodeError::InvalidXml {
                position: 0,
                message: String::new(),
            },
            DecodeError::MissingField { field: "x" },
            DecodeError::WrongType {
                field: "x",
                expected: "string",
                found: "array",
            },
            DecodeError::EmptyText { field: "x" },
            DecodeError::InvalidValue {
                field: "x",
                reason: String::new(),
            },
        ];
        let codes: Vec<_> = samples.iter().map(DecodeError::reason_code).collect();
        assert_eq!(codes, DecodeError::REASON_CODES);
    }

    #[test]
    fn quotes_are_bounded() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "长".repeat(100);
        assert_eq!(quote(&long).chars().count(), 40 + 3);
    }
}
