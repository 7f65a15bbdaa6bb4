//! Personal-data masking: the step between decoding and segmentation that removes personal
//! numbers, e-mail addresses and Weibo `@handles` from free text, and the keyed hash that
//! replaces author identifiers.
//!
//! Every event passes through [`PiiMasker::mask`], so it is one left-to-right pass over the
//! bytes with no regex: a maximal run of digit groups (joined by single spaces or dashes) is
//! found first and only then classified by length and check digits. Classifying whole runs is
//! what keeps a phone-shaped slice of a longer order number unmasked: digit boundaries decide,
//! not pattern search. Masks are fixed tokens, so downstream models see a stable vocabulary.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;

use crate::event::Channel;

/// Replaces a mainland mobile number.
pub const MASK_MOBILE: &str = "[手机号]";
/// Replaces a landline number with its area code.
pub const MASK_LANDLINE: &str = "[座机]";
/// Replaces an 18-digit resident identity number with a valid check digit.
pub const MASK_ID: &str = "[身份证号]";
/// Replaces a Luhn-valid bank-card number.
pub const MASK_CARD: &str = "[银行卡号]";
/// Replaces an e-mail address.
pub const MASK_EMAIL: &str = "[邮箱]";
/// Replaces the handle of a Weibo mention; the `@` is kept so the text still reads as a mention.
pub const MASK_MENTION: &str = "@[用户]";

/// Digit groups in one run beyond this are not a personal number in any written form we mask;
/// the bound keeps the per-run state on the stack.
const MAX_GROUPS: usize = 8;
/// Digits in one run beyond this are no personal number either (the longest is a 19-digit card
/// or `+86` and an 11-digit mobile).
const MAX_RUN_DIGITS: usize = 24;

/// Masks phone, landline, resident-ID and bank-card numbers, e-mail addresses and (unless turned
/// off) Weibo `@handles` in free text.
#[derive(Debug, Clone)]
pub struct PiiMasker {
    /// Screen names identify people as much as numbers do, so mentions are masked by default.
    mentions: bool,
}

impl Default for PiiMasker {
    fn default() -> Self {
        PiiMasker::new()
    }
}

/// What a masked span was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mobile,
    Landline,
    Id,
    Card,
    Email,
    Mention,
}

impl Kind {
    fn token(self) -> &'static str {
        match self {
            Kind::Mobile => MASK_MOBILE,
            Kind::Landline => MASK_LANDLINE,
            Kind::Id => MASK_ID,
            Kind::Card => MASK_CARD,
            Kind::Email => MASK_EMAIL,
            Kind::Mention => MASK_MENTION,
        }
    }
}

/// A byte range of the input to replace. Ranges always start and end on ASCII bytes or on a
/// char boundary found by decoding, so slicing the input at them is safe.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// One group of digits inside a run: `digits` bytes from `start`, optionally followed by an
/// `X`/`x` check character (only meaningful as the last character of a resident ID).
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    start: usize,
    end: usize,
    has_x: bool,
}

impl Group {
    fn digits(&self) -> usize {
        self.end - self.start - usize::from(self.has_x)
    }
}

/// Full-width digits and the signs that join the parts of a phone number (＋, －).
fn is_full_width_numeric(c: char) -> bool {
    matches!(c, '\u{FF10}'..='\u{FF19}' | '\u{FF0B}' | '\u{FF0D}')
}

/// The ASCII twin of a full-width digit, `+` or `-`; every other character unchanged.
fn fold_full_width_numeric(c: char) -> char {
    if is_full_width_numeric(c) {
        // The full-width forms block mirrors ASCII 0x21..=0x7E at a fixed distance.
        char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c)
    } else {
        c
    }
}

impl PiiMasker {
    /// A masker for numbers, e-mail addresses and mentions.
    pub fn new() -> Self {
        PiiMasker { mentions: true }
    }

    /// Whether `@handle` mentions are masked too (they are by default).
    pub fn with_mentions(mut self, on: bool) -> Self {
        self.mentions = on;
        self
    }

    /// Returns `text` with every personal number replaced by a mask.
    pub fn mask(&self, text: &str) -> String {
        self.mask_cow(text).into_owned()
    }

    /// Like [`PiiMasker::mask`], but borrows `text` when there is nothing to mask, which is the
    /// common case on the hot path.
    pub fn mask_cow<'a>(&self, text: &'a str) -> Cow<'a, str> {
        // Full-width digits (１３８…) are how many phones typed on Chinese keyboards arrive;
        // fold them to ASCII first so they are masked like any other number.
        if text.chars().any(is_full_width_numeric) {
            let folded: String = text.chars().map(fold_full_width_numeric).collect();
            return Cow::Owned(self.mask_cow(&folded).into_owned());
        }
        let bytes = text.as_bytes();
        if !bytes.iter().any(|&b| b.is_ascii_digit() || b == b'@') {
            return Cow::Borrowed(text);
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let next = if b.is_ascii_digit() || b == b'+' || b == b'(' || b == 0xEF {
                scan_number(bytes, i, &mut spans)
            } else if b == b'@' {
                scan_at(text, i, self.mentions, &mut spans)
            } else {
                None
            };
            i = next.unwrap_or(i + 1);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(render(text, &spans))
    }

    /// Masks only `@handle` mentions, for fields such as repost chains where numbers are not
    /// personal data but screen names are.
    pub fn mask_mentions(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut spans: Vec<Span> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let next = if bytes[i] == b'@' {
                scan_mention(text, i, &mut spans)
            } else {
                None
            };
            i = next.unwrap_or(i + 1);
        }
        render(text, &spans)
    }
}

fn render(text: &str, spans: &[Span]) -> String {
    let mut out = String::with_capacity(text.len() + spans.len() * 8);
    let mut last = 0;
    for s in spans {
        out.push_str(&text[last..s.start]);
        out.push_str(s.kind.token());
        last = s.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Letters or digits glued to a number make it part of a code (`SN13812345678`), not a number
/// of its own.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn left_boundary(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_word_byte(bytes[i - 1])
}

/// Full-width parentheses, as typed by Chinese input methods: `（` and `）`.
const FW_OPEN: &[u8] = "（".as_bytes();
const FW_CLOSE: &[u8] = "）".as_bytes();

/// Tries to read a personal number starting at byte `i`; pushes the spans it masks and returns
/// where scanning resumes, or `None` to move on by one byte.
fn scan_number(bytes: &[u8], i: usize, spans: &mut Vec<Span>) -> Option<usize> {
    let b = bytes[i];
    if b == b'(' || b == 0xEF {
        return scan_paren_landline(bytes, i, spans);
    }
    if !left_boundary(bytes, i) {
        // Inside a word or a longer number: skip the rest of this alphanumeric run at once so
        // that no suffix of it is ever taken for a number of its own.
        let mut j = i;
        while j < bytes.len() && is_word_byte(bytes[j]) {
            j += 1;
        }
        return Some(j.max(i + 1));
    }
    let (plus, first) = if b == b'+' {
        if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            (true, i + 1)
        } else {
            return None;
        }
    } else {
        (false, i)
    };
    let mut groups = [Group::default(); MAX_GROUPS];
    let Run {
        n,
        end: run_end,
        clean: clean_end,
        cut,
    } = read_groups(bytes, first, &mut groups);
    if !clean_end {
        // A run glued to letters on its right, or one group longer than any personal number:
        // leave all of it alone.
        return Some(run_end);
    }
    if cut {
        // More groups follow than one number can have: only a number starting at the first
        // group is decided here, and scanning resumes at the next group as a run of its own,
        // so a phone written after a long order number (`20261125091203 13812345678`) is
        // still masked. Each group gets the same look-ahead a short run gives it.
        let with_plus = plus;
        let resume = match classify(bytes, &groups[..n], with_plus) {
            Some((used, kind)) => {
                let end = groups[used - 1].end;
                spans.push(Span {
                    start: if with_plus { i } else { groups[0].start },
                    end,
                    kind,
                });
                end
            }
            None => groups[0].end,
        };
        return Some(resume);
    }
    let groups = &groups[..n];
    let mut g = 0;
    while g < n {
        let with_plus = plus && g == 0;
        match classify(bytes, &groups[g..], with_plus) {
            Some((used, kind)) => {
                let start = if with_plus { i } else { groups[g].start };
                spans.push(Span {
                    start,
                    end: groups[g + used - 1].end,
                    kind,
                });
                g += used;
            }
            None => g += 1,
        }
    }
    Some(run_end)
}

/// A run of digit groups as [`read_groups`] found it.
struct Run {
    /// Groups read into the caller's array.
    n: usize,
    /// Where scanning resumes when the run is not classified.
    end: usize,
    /// Not glued to a letter on its right, and no single group over the bounds.
    clean: bool,
    /// More groups follow than the bounds let one run hold: the `n` groups read are only the
    /// run's start.
    cut: bool,
}

/// Reads digit groups joined by one space or dash from `first`, at most [`MAX_GROUPS`] groups
/// and [`MAX_RUN_DIGITS`] digits.
fn read_groups(bytes: &[u8], first: usize, groups: &mut [Group; MAX_GROUPS]) -> Run {
    let mut n = 0;
    let mut j = first;
    let mut total_digits = 0;
    loop {
        let start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        let mut has_x = false;
        if j < bytes.len()
            && (bytes[j] == b'X' || bytes[j] == b'x')
            && !bytes.get(j + 1).copied().is_some_and(is_word_byte)
        {
            has_x = true;
            j += 1;
        }
        total_digits += j - start;
        if n > 0 && (n == MAX_GROUPS || total_digits > MAX_RUN_DIGITS) {
            // The groups read so far start a longer run; the caller decides them one at a time.
            return Run {
                n,
                end: groups[n - 1].end,
                clean: true,
                cut: true,
            };
        }
        if total_digits > MAX_RUN_DIGITS {
            // One group longer than any personal number: skip it and whatever it is glued to,
            // but not what follows a separator.
            while j < bytes.len() && is_word_byte(bytes[j]) {
                j += 1;
            }
            return Run {
                n: 0,
                end: j,
                clean: false,
                cut: false,
            };
        }
        groups[n] = Group {
            start,
            end: j,
            has_x,
        };
        n += 1;
        if j < bytes.len() && is_word_byte(bytes[j]) {
            if n > 1 {
                // Only this last group is glued to a word; the groups before it are decided
                // on their own, one at a time (`13812345678 5678abc`, found by fuzzing).
                return Run {
                    n: n - 1,
                    end: groups[n - 2].end,
                    clean: true,
                    cut: true,
                };
            }
            while j < bytes.len() && is_word_byte(bytes[j]) {
                j += 1;
            }
            return Run {
                n,
                end: j,
                clean: false,
                cut: false,
            };
        }
        // One separator then a digit continues the run; an X ends it (it can only be last).
        if !has_x && j + 1 < bytes.len() && is_sep(bytes[j]) && bytes[j + 1].is_ascii_digit() {
            j += 1;
            continue;
        }
        return Run {
            n,
            end: j,
            clean: true,
            cut: false,
        };
    }
}

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// The digits of `groups` concatenated (an `X` check character as `b'X'`), bounded.
struct Digits {
    buf: [u8; MAX_RUN_DIGITS],
    len: usize,
}

impl Digits {
    fn of(bytes: &[u8], groups: &[Group]) -> Option<Digits> {
        let mut d = Digits {
            buf: [0; MAX_RUN_DIGITS],
            len: 0,
        };
        for g in groups {
            for &b in &bytes[g.start..g.end] {
                if d.len == MAX_RUN_DIGITS {
                    return None;
                }
                d.buf[d.len] = b.to_ascii_uppercase();
                d.len += 1;
            }
        }
        Some(d)
    }
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The longest personal number made of a prefix of `groups`, as (groups used, kind).
fn classify(bytes: &[u8], groups: &[Group], plus: bool) -> Option<(usize, Kind)> {
    let max = groups.len().min(6);
    for used in (1..=max).rev() {
        let gs = &groups[..used];
        // Only the very last group of a run may carry an X, and only a resident ID has one.
        if gs[..used - 1].iter().any(|g| g.has_x) {
            continue;
        }
        let Some(d) = Digits::of(bytes, gs) else {
            continue;
        };
        let d = d.as_slice();
        let lens = GroupLens::of(gs);
        if gs[used - 1].has_x {
            if !plus && is_resident_id(d, &lens) {
                return Some((used, Kind::Id));
            }
            continue;
        }
        if is_mobile(d, &lens, plus) {
            return Some((used, Kind::Mobile));
        }
        if plus {
            continue;
        }
        if is_resident_id(d, &lens) {
            return Some((used, Kind::Id));
        }
        if is_landline(d, &lens) {
            return Some((used, Kind::Landline));
        }
        if is_card(d, &lens) {
            return Some((used, Kind::Card));
        }
    }
    None
}

/// The digit counts of the groups of a candidate, bounded like the groups themselves.
struct GroupLens {
    lens: [usize; MAX_GROUPS],
    n: usize,
}

impl GroupLens {
    fn of(groups: &[Group]) -> GroupLens {
        let mut lens = [0; MAX_GROUPS];
        for (l, g) in lens.iter_mut().zip(groups) {
            *l = g.end - g.start;
        }
        GroupLens {
            lens,
            n: groups.len().min(MAX_GROUPS),
        }
    }
    fn get(&self) -> &[usize] {
        &self.lens[..self.n]
    }
}

/// `1[3-9]` and nine more digits, optionally after `86` (its own group, or glued to the number
/// when written `+86…`/`86…` as 13 digits), written whole or as 3-4-4 or 3-8.
fn is_mobile(d: &[u8], lens: &GroupLens, plus: bool) -> bool {
    let lens = lens.get();
    let (rest, rest_lens): (&[u8], &[usize]) = if lens[0] == 2 && &d[..2] == b"86" {
        (&d[2..], &lens[1..])
    } else if lens[0] == 13 && d.starts_with(b"86") {
        // `8613812345678`: the prefix is glued on; the number itself is one group of 11.
        (&d[2..], &[11][..])
    } else if plus {
        return false;
    } else {
        (d, lens)
    };
    rest.len() == 11
        && rest[0] == b'1'
        && (b'3'..=b'9').contains(&rest[1])
        && matches!(rest_lens, [11] | [3, 4, 4] | [3, 8])
}

/// An area code (`0` and 2–3 digits) and a 7–8 digit local number that does not start with 0
/// or 1, the local part whole or in two groups. A bare local number is not masked: without an
/// area code it cannot be told from an amount or a code.
fn is_landline(d: &[u8], lens: &GroupLens) -> bool {
    let lens = lens.get();
    if lens.len() < 2 || lens.len() > 3 {
        return false;
    }
    let area = lens[0];
    let local = d.len() - area;
    d[0] == b'0'
        && (3..=4).contains(&area)
        && d[1] != b'0'
        && (7..=8).contains(&local)
        && (b'2'..=b'9').contains(&d[area])
}

/// GB 11643: 6-digit region, 8-digit birth date, 3-digit sequence, ISO 7064 MOD 11-2 check
/// character. Written whole or as 6-8-4. The birth date must be a plausible date, which real
/// numbers always are and one order number in eleven that passes the checksum rarely is.
fn is_resident_id(d: &[u8], lens: &GroupLens) -> bool {
    if d.len() != 18 || !matches!(lens.get(), [18] | [6, 8, 4]) {
        return false;
    }
    if !d[..17].iter().all(u8::is_ascii_digit) || !(b'1'..=b'9').contains(&d[0]) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        d[r].iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    id_check_char(&d[..17]) == Some(d[17])
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID.
pub fn id_check_char(first17: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(CHECK[(sum % 11) as usize])
}

/// 16–19 digits starting 3–6 (the issuer ranges of UnionPay, Visa, Mastercard, JCB) with a
/// valid Luhn digit, whole or in groups of four (the last group may be shorter).
fn is_card(d: &[u8], lens: &GroupLens) -> bool {
    let lens = lens.get();
    if !(16..=19).contains(&d.len()) || !(b'3'..=b'6').contains(&d[0]) {
        return false;
    }
    let grouped = lens.len() >= 4
        && lens[..lens.len() - 1].iter().all(|&l| l == 4)
        && (1..=4).contains(&lens[lens.len() - 1]);
    (lens.len() == 1 || grouped) && luhn_valid(d)
}

/// The Luhn check over ASCII digits.
pub fn luhn_valid(d: &[u8]) -> bool {
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &b)| {
            let v = u32::from(b - b'0');
            if k % 2 == 1 {
                let v2 = v * 2;
                if v2 > 9 {
                    v2 - 9
                } else {
                    v2
                }
            } else {
                v
            }
        })
        .sum();
    sum % 10 == 0
}

/// `(0731)84567890`, `（0731）8456 7890`, `(010) 6123-4567`.
fn scan_paren_landline(bytes: &[u8], i: usize, spans: &mut Vec<Span>) -> Option<usize> {
    let after_open = if bytes[i] == b'(' {
        i + 1
    } else if bytes[i..].starts_with(FW_OPEN) {
        i + FW_OPEN.len()
    } else {
        return None;
    };
    let mut j = after_open;
    while j < bytes.len() && bytes[j].is_ascii_digit() {
        j += 1;
    }
    let area = j - after_open;
    if !(3..=4).contains(&area) || bytes[after_open] != b'0' {
        return None;
    }
    if bytes.get(j) == Some(&b')') {
        j += 1;
    } else if bytes[j..].starts_with(FW_CLOSE) {
        j += FW_CLOSE.len();
    } else {
        return None;
    }
    if j < bytes.len() && is_sep(bytes[j]) {
        j += 1;
    }
    if !bytes.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut groups = [Group::default(); MAX_GROUPS];
    let run = read_groups(bytes, j, &mut groups);
    if !run.clean || !(b'2'..=b'9').contains(&bytes[j]) {
        return None;
    }
    // The local number is the run's first one or two groups, as a number at the start of a
    // plain run is: digits after it (`(0731)7789-196 138 1234 5678`) are another number, and
    // taking the whole run or nothing left the landline unmasked (found by fuzzing).
    for used in (1..=run.n.min(2)).rev() {
        let local = &groups[..used];
        if local.iter().any(|g| g.has_x) {
            continue;
        }
        let digits: usize = local.iter().map(Group::digits).sum();
        if (7..=8).contains(&digits) {
            let end = local[used - 1].end;
            spans.push(Span {
                start: i,
                end,
                kind: Kind::Landline,
            });
            return Some(end);
        }
    }
    None
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// At an `@`: an e-mail address if ASCII local-part characters precede it and a dotted domain
/// follows, else a mention when those are masked.
fn scan_at(text: &str, i: usize, mentions: bool, spans: &mut Vec<Span>) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut start = i;
    while start > 0 && is_email_local(bytes[start - 1]) {
        start -= 1;
    }
    if start < i {
        let mut end = i + 1;
        while end < bytes.len() && is_domain(bytes[end]) {
            end += 1;
        }
        // Trailing dots and dashes are sentence punctuation, not part of the domain.
        while end > i + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        // The address ends at the last label long enough to be a top-level domain: what
        // follows a shorter one (`li.si@example.com.X`) is sentence, not address. Without the
        // cut the address would be missed, and masking a number glued after it would make
        // the next pass find it (found by fuzzing).
        let mut tld_ok = false;
        while end > i + 1 {
            let domain = &bytes[i + 1..end];
            match domain.iter().rposition(|&b| b == b'.') {
                Some(dot) if dot > 0 && domain.len() - dot > 2 => {
                    tld_ok = true;
                    break;
                }
                Some(dot) if dot > 0 => end = i + 1 + dot,
                _ => break,
            }
        }
        if tld_ok {
            // An address swallows any span already masked inside its local part, and starts
            // where that span started: dropping the span instead would unmask the part of it
            // before the local part (`13812345678@a.cn@b.com`, found by fuzzing).
            let mut start = start;
            while let Some(last) = spans.last().filter(|s| s.end > start) {
                start = start.min(last.start);
                spans.pop();
            }
            spans.push(Span {
                start,
                end,
                kind: Kind::Email,
            });
            return Some(end);
        }
    }
    if mentions {
        scan_mention(text, i, spans)
    } else {
        None
    }
}

/// `@handle`: the handle runs over letters, digits (of any script), `_` and `-`, and ends at
/// whitespace, `:`/`：` or any other punctuation, which is where Weibo ends it too.
fn scan_mention(text: &str, i: usize, spans: &mut Vec<Span>) -> Option<usize> {
    let rest = &text[i + 1..];
    let len: usize = rest
        .chars()
        .take_while(|&c| c.is_alphanumeric() || c == '_' || c == '-')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let end = i + 1 + len;
    spans.push(Span {
        start: i,
        end,
        kind: Kind::Mention,
    });
    Some(end)
}

/// The error for an author-hashing key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HasherKeyError {
    #[error("environment variable {var} is not set; it must hold the author-hashing key (at least {min} bytes)", min = AuthorHasher::MIN_KEY_BYTES)]
    Missing { var: String },
    #[error("environment variable {var} is not valid UTF-8")]
    NotUnicode { var: String },
    #[error("environment variable {var} holds a {len}-byte key; the author-hashing key needs at least {min} bytes", min = AuthorHasher::MIN_KEY_BYTES)]
    TooShort { var: String, len: usize },
}

/// Keyed hash of author identifiers: HMAC-SHA256 under a deployment secret.
///
/// Keyed, not a plain hash, because phone numbers and account ids are few enough to enumerate:
/// without the secret nobody can recompute or reverse a hash, yet one author maps to one value
/// across events, which is what counting repeat reporters needs.
#[derive(Clone)]
pub struct AuthorHasher {
    /// HMAC state after the key: each hash clones it instead of hashing the key's two padded
    /// blocks again (half of the four SHA-256 blocks of a short identifier's HMAC).
    keyed: Hmac<Sha256>,
    key_len: usize,
}

impl fmt::Debug for AuthorHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorHasher")
            .field("key", &format_args!("<{} bytes redacted>", self.key_len))
            .finish()
    }
}

impl AuthorHasher {
    /// The shortest key [`AuthorHasher::from_env`] accepts.
    pub const MIN_KEY_BYTES: usize = 16;
    /// Hex characters kept of the digest: 128 bits, ample against collisions among authors.
    const HEX_CHARS: usize = 32;

    pub fn new(key: &[u8]) -> Self {
        AuthorHasher {
            // HMAC takes keys of any length, so this cannot fail.
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key)
                .expect("HMAC-SHA256 accepts keys of every length"),
            key_len: key.len(),
        }
    }

    /// Reads the key from environment variable `var`, refusing a missing or short key.
    pub fn from_env(var: &str) -> Result<Self, HasherKeyError> {
        let value = match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(HasherKeyError::Missing {
                    var: var.to_string(),
                })
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(HasherKeyError::NotUnicode {
                    var: var.to_string(),
                })
            }
        };
        if value.len() < Self::MIN_KEY_BYTES {
            return Err(HasherKeyError::TooShort {
                var: var.to_string(),
                len: value.len(),
            });
        }
        Ok(AuthorHasher::new(value.as_bytes()))
    }

    /// Hex digest of `channel:identifier`, the first 32 hex characters.
    pub fn hash(&self, channel: Channel, identifier: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(channel.as_str().as_bytes());
        mac.update(b":");
        mac.update(identifier.as_bytes());
        let digest = mac.finalize().into_bytes();
        // Only the bytes that are kept are encoded, by the table-driven encoder (`hex::encode`
        // builds its string one char at a time).
        let mut out = [0u8; Self::HEX_CHARS];
        hex::encode_to_slice(&digest[..Self::HEX_CHARS / 2], &mut out)
            .expect("two hex digits per byte fill the buffer exactly");
        String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_width_phone_numbers_are_masked() {
        let masker = super::PiiMasker::new();
        let masked = masker.mask("电话１３８１２３４５６７８，座机０７３１－８８８８６６６６");
        assert!(!masked.contains("１３８"), "{masked}");
        assert!(!masked.contains("13812345678"), "{masked}");
        assert!(masked.contains("[手机号]"), "{masked}");
        assert!(!masked.contains("88886666"), "{masked}");
        // Text without full-width digits is left as it was, full-width letters included.
        assert_eq!(masker.mask("ＡＢＣ 无号码"), "ＡＢＣ 无号码");
    }

    use super::*;

    fn m(s: &str) -> String {
        PiiMasker::new().mask(s)
    }

    #[test]
    fn mobile_forms() {
        for s in [
            "13812345678",
            "138-1234-5678",
            "138 1234 5678",
            "+8613812345678",
            "+86 138 1234 5678",
            "86-13812345678",
            "8613812345678",
        ] {
            assert_eq!(m(&format!("电话{s}，谢谢")), "电话[手机号]，谢谢", "{s}");
        }
    }

    #[test]
    fn digit_boundaries_decide() {
        assert_eq!(m("12345678901234567"), "12345678901234567");
        assert_eq!(m("编号913812345678"), "编号913812345678");
        assert_eq!(m("SN13812345678"), "SN13812345678");
        assert_eq!(m("13812345678 13987654321"), "[手机号] [手机号]");
    }

    #[test]
    fn an_address_overlapping_an_earlier_mask_extends_it() {
        // Found by fuzzing: each left part unmasked and masking was not idempotent.
        assert_eq!(m("13000000000@li.si@example.com"), "[邮箱]");
        assert_eq!(m("li.si@邮箱li.si@example.com.cn"), "li.si[邮箱]");
        assert_eq!(m("li.si@example.com.X("), "[邮箱].X(");
        for text in [
            "13000000000@li.si@example.com",
            "li.si@邮箱li.si@example.com.cn",
            "li.si@example.com.13000000000.X(",
        ] {
            assert_eq!(m(&m(text)), m(text), "{text}");
        }
    }

    #[test]
    fn long_runs_are_read_group_by_group() {
        // Found by fuzzing: a run over the digit or group bound used to be skipped whole, and
        // the phone at its end with it.
        assert_eq!(m("20261125091203 13812345678"), "20261125091203 [手机号]");
        assert_eq!(
            m("1 2 3 4 5 6 7 8 138 1234 5678"),
            "1 2 3 4 5 6 7 8 [手机号]"
        );
        assert_eq!(
            m("123456789012345678901234567890 13812345678"),
            "123456789012345678901234567890 [手机号]"
        );
        assert_eq!(m("12345678901234 138 1234 5678"), "12345678901234 [手机号]");
        assert_eq!(m("13000000000 13000000000XX"), "[手机号] 13000000000XX");
        // A single over-long group is still no number, nor is any slice of it.
        assert_eq!(m("1381234567813812345678138"), "1381234567813812345678138");
    }

    #[test]
    fn landlines() {
        for s in [
            "0731-84567890",
            "(0731)84567890",
            "（0731）84567890",
            "0731 8456 7890",
            "010-6123456",
        ] {
            assert_eq!(m(&format!("打{s}")), "打[座机]", "{s}");
        }
        assert_eq!(m("84567890"), "84567890");
        // Found by fuzzing: a bracketed landline followed by another number was left whole.
        assert_eq!(m("(0731)7789-196 138 1234 5678"), "[座机] [手机号]");
    }

    #[test]
    fn id_checksum() {
        let first = b"43010519900307123";
        let c = id_check_char(first).expect("17 digits") as char;
        let id = format!("{}{c}", std::str::from_utf8(first).expect("ascii"));
        assert_eq!(m(&format!("身份证{id}。")), "身份证[身份证号]。");
        let wrong = if c == '0' { '1' } else { '0' };
        let bad = format!("{}{wrong}", std::str::from_utf8(first).expect("ascii"));
        assert_eq!(m(&bad), bad);
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert_eq!(m("卡号4111 1111 1111 1111"), "卡号[银行卡号]");
        assert_eq!(m("卡号4111111111111112"), "卡号4111111111111112");
    }

    #[test]
    fn emails_and_mentions() {
        assert_eq!(m("发到 zhang.san@example.com.cn 吧"), "发到 [邮箱] 吧");
        assert_eq!(m("13812345678@qq.com"), "[邮箱]");
        assert_eq!(m("//@长沙发布:转发"), "//@[用户]:转发");
        assert_eq!(
            PiiMasker::new().with_mentions(false).mask("@长沙发布 你好"),
            "@长沙发布 你好"
        );
        assert_eq!(
            PiiMasker::new().mask_mentions("@a_b-c：13812345678"),
            "@[用户]：13812345678"
        );
    }

    #[test]
    fn nothing_to_mask_borrows() {
        let s = "2026年11月25日 12:30 花了1380元";
        assert!(matches!(PiiMasker::new().mask_cow(s), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_hides_key() {
        let h = AuthorHasher::new(b"super-secret-key-123");
        assert!(!format!("{h:?}").contains("super-secret"));
    }

    /// Expected digests from Python's `hmac` module (`hmac.new(key, b"channel:id", sha256)`,
    /// first 32 hex digits), including a key longer than SHA-256's 64-byte block.
    #[test]
    fn author_hash_is_hmac_sha256_of_channel_and_identifier() {
        let h = AuthorHasher::new(b"super-secret-key-123");
        for _ in 0..2 {
            assert_eq!(
                h.hash(Channel::Weibo, "1234567890"),
                "11285edf24f5c56f090f200633a712ed"
            );
            assert_eq!(
                h.hash(Channel::Police110, "13873112345"),
                "c3dbbd02e966e04a313cfeb339af1227"
            );
        }
        let long_key = AuthorHasher::new(&[b'k'; 100]);
        assert_eq!(
            long_key.hash(Channel::Wechat, "oABC"),
            "554d8399013101bded256f42e4883560"
        );
    }
}
