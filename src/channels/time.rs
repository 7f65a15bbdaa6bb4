//! Timestamps as the four channels write them, turned into one `DateTime<FixedOffset>`.
//!
//! Used by every decoder for the record's `occurred_at`. Call-centre exports, dispatch databases
//! and social APIs each have their habit; a time without a zone is China Standard Time (+08:00),
//! because every source here is a Chinese city's system. Functions return `Option` and the
//! decoder names its field in the error, so this module stays free of channel knowledge.

use std::sync::LazyLock;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// China Standard Time, the zone of every record that gives none.
pub const CHINA_STANDARD_TIME: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("+08:00 is a valid offset"),
};

/// What the string forms accept, for error messages.
pub const ACCEPTED_FORMATS: &str = "2026-11-25 09:12:03, 2026/11/25 9:12:03, \
     2026-11-25T09:12:03, RFC 3339 with a zone, 20261125091203 or \
     \"Wed Nov 25 09:12:03 +0800 2026\"";

/// Weibo's `created_at`: `Wed Nov 25 09:12:03 +0800 2026`.
const WEIBO_FORMAT: &str = "%a %b %d %H:%M:%S %z %Y";

/// Dispatch databases' compact form: `20261125091203`.
const COMPACT_FORMAT: &str = "%Y%m%d%H%M%S";

/// Zone-less forms, most common first. `%.f` also matches no fraction at all; chrono accepts
/// unpadded hours, days and months (`9:12:03`, `2026/1/5`) for the padded specifiers.
const NAIVE_FORMATS: [&str; 5] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
];

/// The formats above, each read into chrono's items once: `parse_from_str` reads its format
/// string again on every call, ~1 % of `process` on Weibo posts.
struct CompiledFormats {
    weibo: Vec<Item<'static>>,
    compact: Vec<Item<'static>>,
    naive: Vec<Vec<Item<'static>>>,
}

static FORMATS: LazyLock<CompiledFormats> = LazyLock::new(|| {
    let compile = |format: &'static str| {
        let items: Vec<Item<'static>> = StrftimeItems::new(format).collect();
        assert!(
            !items.contains(&Item::Error),
            "{format:?} is a valid strftime format"
        );
        items
    };
    CompiledFormats {
        weibo: compile(WEIBO_FORMAT),
        compact: compile(COMPACT_FORMAT),
        naive: NAIVE_FORMATS.iter().map(|format| compile(format)).collect(),
    }
});

/// What `parse_from_str` does, with the format's items already read.
fn parsed_with(s: &str, items: &[Item<'static>]) -> Option<Parsed> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, items.iter()).ok()?;
    Some(parsed)
}

fn naive_with(s: &str, items: &[Item<'static>]) -> Option<NaiveDateTime> {
    parsed_with(s, items)?.to_naive_datetime_with_offset(0).ok()
}

/// Unix timestamps at or above this are milliseconds: as seconds it would be the year 5138,
/// as milliseconds it is March 1973, so no real record of either kind is misread.
const MILLIS_THRESHOLD: i64 = 100_000_000_000;

/// Parse a time written as text in any of [`ACCEPTED_FORMATS`].
pub fn parse_str(raw: &str) -> Option<DateTime<FixedOffset>> {
    let s = raw.trim();
    let bytes = s.as_bytes();
    if bytes.first()?.is_ascii_alphabetic() {
        return parsed_with(s, &FORMATS.weibo)?.to_datetime().ok();
    }
    if bytes.len() == 14 && bytes.iter().all(u8::is_ascii_digit) {
        return naive_with(s, &FORMATS.compact).and_then(in_china);
    }
    if let Some(naive) = FORMATS.naive.iter().find_map(|items| naive_with(s, items)) {
        return in_china(naive);
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// A unix timestamp in seconds or milliseconds (told apart by size), shown in China Standard
/// Time.
pub fn from_unix(value: i64) -> Option<DateTime<FixedOffset>> {
    let utc = if value.unsigned_abs() >= MILLIS_THRESHOLD.unsigned_abs() {
        DateTime::<Utc>::from_timestamp_millis(value)?
    } else {
        DateTime::<Utc>::from_timestamp(value, 0)?
    };
    Some(utc.with_timezone(&CHINA_STANDARD_TIME))
}

fn in_china(naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    CHINA_STANDARD_TIME.from_local_datetime(&naive).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cst(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn zone_less_forms_are_china_standard_time() {
        let want = cst("2026-11-25T09:12:03+08:00");
        for s in [
            "2026-11-25 09:12:03",
            "2026/11/25 9:12:03",
            "2026-11-25T09:12:03",
            "20261125091203",
            " 2026-11-25 09:12:03 ",
        ] {
            let got = parse_str(s).unwrap_or_else(|| panic!("{s} should parse"));
            assert_eq!(got, want, "{s}");
            assert_eq!(got.offset(), &CHINA_STANDARD_TIME, "{s}");
        }
        assert_eq!(
            parse_str("2026-11-25 09:12"),
            Some(cst("2026-11-25T09:12:00+08:00"))
        );
        assert_eq!(
            parse_str("2026-11-25 09:12:03.250"),
            Some(cst("2026-11-25T09:12:03.250+08:00"))
        );
    }

    #[test]
    fn zones_given_are_kept() {
        let utc = parse_str("2026-11-25T01:12:03Z").unwrap();
        assert_eq!(utc.offset().local_minus_utc(), 0);
        assert_eq!(utc, cst("2026-11-25T09:12:03+08:00"));
        let weibo = parse_str("Wed Nov 25 09:12:03 +0800 2026").unwrap();
        assert_eq!(weibo, cst("2026-11-25T09:12:03+08:00"));
        assert_eq!(weibo.offset(), &CHINA_STANDARD_TIME);
        let tokyo = parse_str("2026-11-25T10:12:03+09:00").unwrap();
        assert_eq!(tokyo.offset().local_minus_utc(), 9 * 3600);
    }

    #[test]
    fn unix_seconds_and_milliseconds() {
        let want = cst("2026-11-25T09:12:03+08:00");
        let secs = want.timestamp();
        assert_eq!(from_unix(secs), Some(want));
        assert_eq!(from_unix(secs * 1000), Some(want));
        assert_eq!(from_unix(secs).unwrap().offset(), &CHINA_STANDARD_TIME);
        assert_eq!(from_unix(i64::MAX), None);
        assert_eq!(from_unix(i64::MIN), None);
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            "   ",
            "yesterday",
            "2026-13-25 09:12:03",
            "2026-11-25",
            "2026112509120",
            "Wed Nov 25 09:12:03 2026",
            "2026-11-25 25:00:00",
        ] {
            assert_eq!(parse_str(s), None, "{s:?}");
        }
    }

    /// `parse_str` as it was written before the formats were compiled once.
    fn parse_str_by_format_strings(raw: &str) -> Option<DateTime<FixedOffset>> {
        let s = raw.trim();
        let bytes = s.as_bytes();
        if bytes.first()?.is_ascii_alphabetic() {
            return DateTime::parse_from_str(s, WEIBO_FORMAT).ok();
        }
        if bytes.len() == 14 && bytes.iter().all(u8::is_ascii_digit) {
            return NaiveDateTime::parse_from_str(s, COMPACT_FORMAT)
                .ok()
                .and_then(in_china);
        }
        if let Some(naive) = NAIVE_FORMATS
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
        {
            return in_china(naive);
        }
        DateTime::parse_from_rfc3339(s).ok()
    }

    proptest::proptest! {
        /// Mutations of every accepted form (and of garbage) parse exactly as chrono's
        /// `parse_from_str` with the format strings does.
        #[test]
        fn compiled_formats_parse_as_the_format_strings_do(
            base in proptest::sample::select(vec![
                "2026-11-25 09:12:03", "2026/11/25 9:12:03", "2026-11-25T09:12:03",
                "20261125091203", "2026-11-25 09:12", "2026/1/5 09:12", "2026-11-25 09:12:03.250",
                "Wed Nov 25 09:12:03 +0800 2026", "Thu Feb 29 23:59:59 -0130 2024",
                "2026-11-25T01:12:03Z", "yesterday", "2026-13-25 09:12:03",
            ]),
            at in 0usize..40,
            replacement in proptest::sample::select(vec![
                "", "0", "9", "1", " ", "-", "/", ":", "T", ".5", "x", "Mon", "+0900", "Feb",
            ]),
            keep in proptest::bool::ANY,
        ) {
            let at = at.min(base.len());
            let text = if keep {
                format!("{}{replacement}{}", &base[..at], &base[at..])
            } else {
                let end = (at + 1).min(base.len());
                format!("{}{replacement}{}", &base[..at], &base[end..])
            };
            proptest::prop_assert_eq!(parse_str(&text), parse_str_by_format_strings(&text));
        }
    }
}
