//! The invariants the fuzz targets check, in one place.
//!
//! Shared by the cargo-fuzz targets of this crate (`fuzz_targets/*.rs`, one call each) and by
//! the CI-light proptest run in `tests/fuzz_inputs.rs`, which includes this file as a module,
//! so the long libFuzzer run and the CI run judge every input by the same rules. Each `check_*`
//! function panics with a message naming the broken invariant — under libFuzzer a panic is the
//! crash it reports, under proptest the failing case it shrinks.
//!
//! What is checked, beyond "does not panic":
//! - a decoder: a report has a non-empty, trimmed text of bounded size and coordinates in
//!   range; a skip has a reason; an error has a reason code from the fixed set and a message
//!   that is non-empty and bounded (it ends up in a dead-letter header). The per-channel
//!   function and [`channels::decode`] agree.
//! - the envelope reader (`process` without `--channel`): exactly one output line per
//!   non-blank input line, each a JSON object of one of the three documented shapes.
//! - the masker: masking again changes nothing, and no mobile or resident-ID number the masker
//!   is meant to catch is left standing in its output.

use citypulse::assets;
use citypulse::channels::{self, DecodeError, Decoded, MAX_RECORD_BYTES};
use citypulse::config::PipelineConfig;
use citypulse::event::{Channel, Record};
use citypulse::metrics::Metrics;
use citypulse::process::process_lines;
use citypulse::stages::Stages;
use citypulse::text::mask::{id_check_char, AuthorHasher, PiiMasker};
use std::sync::OnceLock;

/// Headroom of a report's text over its input: a WeChat location without a label is described
/// by its coordinates (`位置上报：lat,lon`), and an `f64` in range can print to ~330 digits.
pub const TEXT_HEADROOM_BYTES: usize = 1024;

/// An error message travels in a dead-letter header and a log line: it quotes input only in
/// bounded excerpts, whatever the input's size.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// A skip reason quotes the message type or event name, bounded the same way.
pub const MAX_SKIP_REASON_BYTES: usize = 512;

/// The per-channel decoder, called directly (what each fuzz target exercises).
pub fn channel_decoder(channel: Channel) -> fn(&[u8]) -> Result<Decoded, DecodeError> {
    match channel {
        Channel::Weibo => channels::weibo::decode,
        Channel::Wechat => channels::wechat::decode,
        Channel::Hotline12345 => channels::hotline12345::decode,
        Channel::Police110 => channels::police110::decode,
    }
}

/// Decode `data` as a record of `channel` and check every outcome is well formed.
pub fn check_decoder(channel: Channel, data: &[u8]) {
    let direct = channel_decoder(channel)(data);
    assert_eq!(
        direct,
        channels::decode(channel, data),
        "{channel}: the channel's decoder and channels::decode disagree"
    );
    match direct {
        Ok(Decoded::Report(record)) => check_record(channel, &record, data.len()),
        Ok(Decoded::Skipped { reason }) => {
            assert!(!reason.is_empty(), "{channel}: skip without a reason");
            assert!(
                reason.len() <= MAX_SKIP_REASON_BYTES,
                "{channel}: skip reason of {} bytes: {reason:.200}",
                reason.len()
            );
        }
        Err(error) => check_error(channel, &error, data.len()),
    }
}

fn check_record(channel: Channel, record: &Record, input_len: usize) {
    assert_eq!(record.channel, channel, "report of the wrong channel");
    assert!(!record.text.is_empty(), "{channel}: report with empty text");
    assert_eq!(
        record.text.trim(),
        record.text,
        "{channel}: report text is not trimmed"
    );
    assert!(
        record.text.len() <= input_len + TEXT_HEADROOM_BYTES,
        "{channel}: {}-byte text from a {input_len}-byte record",
        record.text.len()
    );
    assert!(
        record.text.len() <= MAX_RECORD_BYTES + TEXT_HEADROOM_BYTES,
        "{channel}: text over the record bound"
    );
    if let Some(c) = record.coordinates {
        assert!(
            (-90.0..=90.0).contains(&c.lat) && (-180.0..=180.0).contains(&c.lon),
            "{channel}: coordinates out of range: {c:?}"
        );
    }
    if record.engagement.is_some() {
        assert_eq!(channel, Channel::Weibo, "engagement on a non-Weibo record");
    }
}

fn check_error(channel: Channel, error: &DecodeError, input_len: usize) {
    let code = error.reason_code();
    assert!(
        DecodeError::REASON_CODES.contains(&code),
        "{channel}: reason code {code} not in the fixed set"
    );
    let message = error.to_string();
    assert!(!message.is_empty(), "{channel}: empty error message");
    assert!(
        message.len() <= MAX_ERROR_MESSAGE_BYTES,
        "{channel}: {}-byte error message ({code}) from a {input_len}-byte record: {message:.300}",
        message.len()
    );
    if input_len <= MAX_RECORD_BYTES {
        assert_ne!(code, "too_large", "{channel}: a record within the limit");
    }
}

/// Key for the envelope target's author hashes; any 16+ bytes do.
const FUZZ_KEY: &[u8] = b"fuzz-author-key-0123456789";

/// The real stages with the embedded models, loaded once per process.
pub fn stages() -> &'static Stages {
    static STAGES: OnceLock<Stages> = OnceLock::new();
    STAGES.get_or_init(|| {
        assets::load_stages(
            &PipelineConfig::default(),
            AuthorHasher::new(FUZZ_KEY),
            Metrics::new(),
        )
        .expect("the embedded models and dictionaries load (a build problem, not an input)")
    })
}

/// The non-blank lines `process` will read from `data`, as it splits them (on `\n`, with a
/// trailing `\r` dropped and no empty line after a final `\n`).
pub fn non_blank_lines(data: &[u8]) -> usize {
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|last| last.is_empty()) {
        pieces.pop();
    }
    pieces
        .iter()
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count()
}

/// Run `data` through `process` without a channel (every line an envelope) and check that each
/// non-blank line gave exactly one well-formed output line.
pub fn check_envelope(stages: &Stages, data: &[u8]) {
    let mut out = Vec::new();
    let summary = process_lines(stages, None, None, data, &mut out)
        .expect("writing to a Vec cannot fail and reading a slice cannot fail");
    let expected = non_blank_lines(data);
    assert_eq!(summary.lines as usize, expected, "summary line count");
    let text = std::str::from_utf8(&out).expect("process writes UTF-8 JSON");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected, "one output line per input line");
    let mut events = 0u64;
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("output is not JSON: {e}"));
        let object = value.as_object().expect("every output line is an object");
        if object.contains_key("error") {
            assert!(object["reason"].is_string(), "error line without reason");
            assert!(object["line"].is_u64(), "error line without line number");
        } else if object.contains_key("skipped") {
            assert!(object["line"].is_u64(), "skip line without line number");
        } else {
            assert!(
                object.contains_key("schema_version") && object["text"].is_string(),
                "neither an event nor an error nor a skip: {line:.300}"
            );
            events += 1;
            check_masked(object["text"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(
        events,
        summary.routed + summary.triaged + summary.ignored,
        "events written vs counted"
    );
}

/// Mask `text` with both masker settings and check idempotence and that nothing is left.
pub fn check_mask(text: &str) {
    for masker in [PiiMasker::new(), PiiMasker::new().with_mentions(false)] {
        let once = masker.mask(text);
        assert_eq!(
            masker.mask_cow(text),
            once.as_str(),
            "mask_cow and mask disagree"
        );
        let twice = masker.mask(&once);
        assert_eq!(twice, once, "masking is not idempotent on {text:?}");
        let _ = masker.mask_mentions(&once);
        check_masked(&once);
    }
    let _ = PiiMasker::new().mask_mentions(text);
}

/// Panics when `masked` still holds a number the masker promises to mask. See
/// [`standing_number`].
pub fn check_masked(masked: &str) {
    if let Some(found) = standing_number(masked) {
        panic!("masked text still holds {found:?}: {masked:?}");
    }
}

/// The first mainland mobile number (`1[3-9]` and 9 digits) or valid resident ID (17 digits and
/// a check character, a plausible birth date) standing on its own in `text`: not glued to an
/// ASCII letter or digit on either side, and not after `+` (`+1…` is a foreign number). That is
/// the plain written form, which the masker must always catch; grouped forms (`138 1234 5678`)
/// are its own business and tested in `tests/text.rs`.
pub fn standing_number(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let mut end = i;
        if i < bytes.len() && matches!(bytes[i], b'X' | b'x') {
            end = i + 1;
        }
        let glued_left =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'+');
        let glued_right = end < bytes.len() && bytes[end].is_ascii_alphanumeric();
        if glued_left || glued_right {
            continue;
        }
        let run = &bytes[start..end];
        let digits = &bytes[start..i];
        let mobile = end == i
            && digits.len() == 11
            && digits[0] == b'1'
            && (b'3'..=b'9').contains(&digits[1]);
        if mobile || is_plain_resident_id(run) {
            return Some(&text[start..end]);
        }
    }
    None
}

fn is_plain_resident_id(run: &[u8]) -> bool {
    if run.len() != 18 || !(b'1'..=b'9').contains(&run[0]) {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        run[range]
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b.wrapping_sub(b'0')))
    };
    let plausible = (1900..=2099).contains(&number(6..10))
        && (1..=12).contains(&number(10..12))
        && (1..=31).contains(&number(12..14));
    plausible && id_check_char(&run[..17]) == Some(run[17].to_ascii_uppercase())
}
