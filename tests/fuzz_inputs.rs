//! The CI-light fuzz run: proptest feeds every decoder, the `process` envelope reader and the
//! masker arbitrary bytes and mutated seeds, and checks each outcome with the same invariants
//! as the cargo-fuzz targets (`fuzz/src/lib.rs`, included below).
//!
//! Seeds are the hand-written corpora under `fuzz/corpus/<target>/`; mutations are
//! structure-aware: byte flips, truncations, insertions of tokens that break parsers (NUL, BOM,
//! quotes, CDATA ends, entity and escape fragments, huge numbers, odd Unicode), duplicated
//! spans, and deep nesting. The default case count keeps the whole file under a minute in
//! `cargo test --release`; `CITYPULSE_FUZZ_CASES=N` sets the cases of every property for the
//! long documented run (`fuzz/README.md`).

#[path = "../fuzz/src/lib.rs"]
mod checks;

use citypulse::event::Channel;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::path::{Path, PathBuf};

/// Cases per property in CI.
const DEFAULT_CASES: u32 = 10_000;

fn cases() -> u32 {
    match std::env::var("CITYPULSE_FUZZ_CASES") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("CITYPULSE_FUZZ_CASES={value:?} is not a case count")),
        Err(_) => DEFAULT_CASES,
    }
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Finds become named regression tests (see the end of this file), not hidden files.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// The seed inputs of one fuzz target, read from `fuzz/corpus/<target>/`.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {} unreadable: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|path| std::fs::read(path).expect("seed file readable"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Fragments that break parsers and masks when dropped anywhere into an input.
const TOKENS: &[&str] = &[
    "\0",
    "\u{feff}",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00\\ud800",
    "\\u0000",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "-0",
    "1e999999",
    "-1e-999999",
    "18446744073709551616",
    "-9223372036854775809",
    "9007199254740993",
    "0.0000000000000000000000000000000000000000000000001",
    "<",
    ">",
    "</xml>",
    "<xml>",
    "<![CDATA[",
    "]]>",
    "&",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&#xD800;",
    "&unknown;",
    "<!DOCTYPE x [<!ENTITY e \"boom\">]>",
    "<?xml version=\"1.0\" encoding=\"GBK\"?>",
    "\r\n",
    "\n",
    "\t",
    "\u{202e}",
    "\u{200b}",
    "\u{10ffff}",
    "\u{fffd}",
    "𠀀",
    "é",
    "\u{301}",
    "１３８１２３４５６７８",
    "13812345678",
    "+86",
    " ",
    "-",
    "@",
    "（",
    "）",
    "430105199003077018",
];

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, token: usize },
    InsertBytes { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    // Positions are drawn wide and reduced modulo the length at apply time.
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::InsertBytes { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Edit::Remove { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let at = |at: usize, input: &Vec<u8>| at % (input.len() + 1);
        match edit {
            Edit::Flip { at: pos, mask } => {
                if !input.is_empty() {
                    let pos = pos % input.len();
                    input[pos] ^= mask;
                }
            }
            Edit::Truncate { at: pos } => input.truncate(at(*pos, &input)),
            Edit::Insert { at: pos, token } => {
                let pos = at(*pos, &input);
                input.splice(pos..pos, TOKENS[*token].bytes());
            }
            Edit::InsertBytes { at: pos, bytes } => {
                let pos = at(*pos, &input);
                input.splice(pos..pos, bytes.iter().copied());
            }
            Edit::Remove { at: pos, len } => {
                let pos = at(*pos, &input);
                let end = (pos + len).min(input.len());
                input.drain(pos..end);
            }
            Edit::Duplicate { at: pos, len } => {
                let pos = at(*pos, &input);
                let end = (pos + len).min(input.len());
                let copy = input[pos..end].to_vec();
                input.splice(end..end, copy);
            }
        }
    }
    input
}

/// A seed of `target` with one to eight edits.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 1..8),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits))
}

/// A seed with a deeply nested value spliced in at some point: `[[[…`, `{"a":{"a":…`,
/// `<a><a>…` — well past serde_json's recursion limit and any sane XML depth.
fn nested(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    (
        prop::sample::select(seeds),
        any::<usize>(),
        0usize..3,
        1usize..3000,
        any::<bool>(),
    )
        .prop_map(|(seed, at, kind, depth, closed)| {
            let (open, close) = match kind {
                0 => ("[", "]"),
                1 => ("{\"a\":", "}"),
                _ => ("<a>", "</a>"),
            };
            let mut nest = open.repeat(depth);
            if closed {
                nest.push('1');
                nest.push_str(&close.repeat(depth));
            }
            let at = at % (seed.len() + 1);
            let mut out = seed[..at].to_vec();
            out.extend_from_slice(nest.as_bytes());
            out.extend_from_slice(&seed[at..]);
            out
        })
}

const DECODERS: [(Channel, &str); 4] = [
    (Channel::Weibo, "decode_weibo"),
    (Channel::Wechat, "decode_wechat"),
    (Channel::Hotline12345, "decode_hotline12345"),
    (Channel::Police110, "decode_police110"),
];

#[test]
fn seeds_themselves_pass_every_check() {
    for (channel, target) in DECODERS {
        for seed in seeds(target) {
            checks::check_decoder(channel, &seed);
        }
    }
    for seed in seeds("envelope") {
        checks::check_envelope(checks::stages(), &seed);
    }
    for seed in seeds("mask") {
        checks::check_mask(&String::from_utf8_lossy(&seed));
    }
}

#[test]
fn seeds_reach_the_interesting_outcomes() {
    // A corpus that only produced parse errors would fuzz nothing past the parser.
    use citypulse::channels::Decoded;
    for (channel, target) in DECODERS {
        let reports = seeds(target)
            .iter()
            .filter(|seed| {
                matches!(
                    checks::channel_decoder(channel)(seed),
                    Ok(Decoded::Report(_))
                )
            })
            .count();
        assert!(reports >= 1, "{target}: no seed decodes to a report");
    }
    let mut out = Vec::new();
    let seed = seeds("envelope").concat();
    let summary =
        citypulse::process::process_lines(checks::stages(), None, None, &seed[..], &mut out)
            .expect("in-memory process");
    assert!(
        summary.routed + summary.triaged + summary.ignored >= 3,
        "{summary:?}"
    );
    assert!(summary.errors >= 2, "{summary:?}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoders_survive_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        for (channel, _) in DECODERS {
            checks::check_decoder(channel, &data);
        }
    }

    #[test]
    fn weibo_survives_mutated_seeds(data in mutated("decode_weibo")) {
        checks::check_decoder(Channel::Weibo, &data);
    }

    #[test]
    fn wechat_survives_mutated_seeds(data in mutated("decode_wechat")) {
        checks::check_decoder(Channel::Wechat, &data);
    }

    #[test]
    fn hotline_survives_mutated_seeds(data in mutated("decode_hotline12345")) {
        checks::check_decoder(Channel::Hotline12345, &data);
    }

    #[test]
    fn police_survives_mutated_seeds(data in mutated("decode_police110")) {
        checks::check_decoder(Channel::Police110, &data);
    }

    #[test]
    fn decoders_survive_deep_nesting(
        weibo in nested("decode_weibo"),
        wechat in nested("decode_wechat"),
        hotline in nested("decode_hotline12345"),
        police in nested("decode_police110"),
    ) {
        checks::check_decoder(Channel::Weibo, &weibo);
        checks::check_decoder(Channel::Wechat, &wechat);
        checks::check_decoder(Channel::Hotline12345, &hotline);
        checks::check_decoder(Channel::Police110, &police);
    }

    #[test]
    fn envelope_reader_survives_arbitrary_bytes(
        data in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        checks::check_envelope(checks::stages(), &data);
    }

    #[test]
    fn envelope_reader_survives_mutated_seeds(data in mutated("envelope")) {
        checks::check_envelope(checks::stages(), &data);
    }

    #[test]
    fn masker_survives_arbitrary_text(text in "\\PC{0,200}") {
        checks::check_mask(&text);
    }

    #[test]
    fn masker_survives_mutated_seeds(data in mutated("mask")) {
        checks::check_mask(&String::from_utf8_lossy(&data));
    }

    #[test]
    fn masker_survives_number_soup(pieces in prop::collection::vec(number_piece(), 0..24)) {
        checks::check_mask(&pieces.concat());
    }
}

/// Digit groups, separators, personal numbers and the characters around them, in any order:
/// the inputs where a masker's run and boundary logic goes wrong.
fn number_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,20}",
        (3u8..=9, "[0-9]{9}").prop_map(|(second, rest)| format!("1{second}{rest}")),
        Just(" ".to_string()),
        Just("-".to_string()),
        Just("+".to_string()),
        Just("+86".to_string()),
        Just("@".to_string()),
        Just(".".to_string()),
        Just("X".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("（".to_string()),
        Just("）".to_string()),
        Just("电话".to_string()),
        Just("，".to_string()),
        "[a-zA-Z]{1,3}",
        Just("li.si@example.com".to_string()),
    ]
}
