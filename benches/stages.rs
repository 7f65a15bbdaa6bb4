//! Per-stage cost of the processing path on the same texts: decode (per channel), mask, segment
//! (with raw jieba-rs `cut` beside it), classify (each model, and all three as the stage runs
//! them), route, detect, and the whole `Stages::process`. Run with `cargo bench --bench stages`.
//!
//! The goal of issue 3 reads off `classify_all` against `segment`: classification should cost
//! no more than a quarter of segmentation per event.
//!
//! Texts: the raw citizen messages of `../shared/data/routing/routing_sample_raw.tsv` when that
//! file is there (long, real messages, ~1 KB), else messages from the demo generator. The point
//! of the comparison is the ratio of each stage to segmentation, measured in one run.
//!
//! The `short_post` group measures the same path on the short Weibo posts of `citypulse bench`
//! (~55 characters, `bench::short_post_records`): there the goal is a small cost per message
//! outside segmentation, `process_whole` minus `jieba_cut_raw`.

use chrono::{FixedOffset, TimeZone};
use citypulse::assets;
use citypulse::channels;
use citypulse::config::PipelineConfig;
use citypulse::demo::generator::{GeneratorConfig, TrafficGenerator};
use citypulse::detect::Detector;
use citypulse::detection::detect_input;
use citypulse::event::Channel;
use citypulse::metrics::Metrics;
use citypulse::model::sentiment::Tokens;
use citypulse::stages::Outcome;
use citypulse::text::mask::AuthorHasher;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

fn sample_texts() -> Vec<String> {
    let raw = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/routing/routing_sample_raw.tsv");
    if let Ok(data) = std::fs::read_to_string(&raw) {
        let texts: Vec<String> = data
            .lines()
            .skip(1)
            .filter_map(|line| {
                let columns: Vec<&str> = line.split('\t').collect();
                (columns.len() >= 6).then(|| format!("{}\n{}", columns[2], columns[4]))
            })
            .collect();
        if !texts.is_empty() {
            return texts;
        }
    }
    eprintln!("benches: ../shared/data absent, using generated texts");
    let mut generator = TrafficGenerator::new(GeneratorConfig::default());
    let at = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    (0..300)
        .map(|_| {
            let record = generator.next_record_on(Channel::Hotline12345, at);
            String::from_utf8_lossy(&record.bytes).into_owned()
        })
        .collect()
}

fn hotline_record(text: &str, i: usize) -> Vec<u8> {
    serde_json::json!({
        "工单编号": format!("B{i:06}"), "来电时间": "2026-11-25 09:12:03", "来电号码": "13912345678",
        "诉求类型": "投诉", "诉求内容": text, "所属区县": "雨花区"
    })
    .to_string()
    .into_bytes()
}

fn bench_stages(c: &mut Criterion) {
    let texts = sample_texts();
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum::<u64>() / texts.len() as u64;
    let config = PipelineConfig::default();
    let stages = assets::load_stages(
        &config,
        AuthorHasher::new(b"bench-key-0123456789"),
        Metrics::new(),
    )
    .expect("embedded assets load");
    let records: Vec<Vec<u8>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| hotline_record(t, i))
        .collect();
    let segmented: Vec<_> = texts
        .iter()
        .map(|t| stages.segmenter.segment(t, 0))
        .collect();
    let tokens: Vec<Vec<&str>> = segmented.iter().map(|s| s.tokens.clone()).collect();
    let sentiment_input: Vec<Vec<&str>> = segmented
        .iter()
        .map(|s| match stages.sentiment.tokens() {
            Tokens::Words => s.words.clone(),
            Tokens::Content => s.tokens.clone(),
        })
        .collect();
    let jieba = jieba_rs::Jieba::new();
    // One generated record per channel and a few of each, for decoding.
    let mut generator = TrafficGenerator::new(GeneratorConfig {
        malformed_share: 0.0,
        ..GeneratorConfig::default()
    });
    let at = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    let per_channel: Vec<(Channel, Vec<Vec<u8>>)> = Channel::ALL
        .iter()
        .map(|&channel| {
            let records = (0..64)
                .map(|_| generator.next_record_on(channel, at).bytes)
                .collect();
            (channel, records)
        })
        .collect();
    let received = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();

    let mut group = c.benchmark_group("per_message");
    group.throughput(Throughput::Elements(1));
    eprintln!("benches: {} texts, {bytes} bytes on average", texts.len());
    let mut i = 0;
    let mut next = |n: usize| {
        i = (i + 1) % n;
        i
    };
    group.bench_function("decode_12345_long", |b| {
        b.iter(|| {
            black_box(channels::decode(
                Channel::Hotline12345,
                &records[next(records.len())],
            ))
        })
    });
    for (channel, generated) in &per_channel {
        group.bench_function(format!("decode_{}_generated", channel.as_str()), |b| {
            b.iter(|| {
                black_box(channels::decode(
                    *channel,
                    &generated[next(generated.len())],
                ))
            })
        });
    }
    group.bench_function("mask", |b| {
        b.iter(|| black_box(stages.masker.mask(&texts[next(texts.len())])))
    });
    group.bench_function("segment", |b| {
        b.iter(|| black_box(stages.segmenter.segment(&texts[next(texts.len())], 5)))
    });
    group.bench_function("jieba_cut_raw", |b| {
        b.iter(|| black_box(jieba.cut(&texts[next(texts.len())], true)))
    });
    group.bench_function("classify_category", |b| {
        b.iter(|| black_box(stages.model.predict(&tokens[next(tokens.len())])))
    });
    group.bench_function("classify_sentiment", |b| {
        b.iter(|| {
            black_box(
                stages
                    .sentiment
                    .predict(&sentiment_input[next(sentiment_input.len())]),
            )
        })
    });
    group.bench_function("classify_relevance", |b| {
        b.iter(|| black_box(stages.relevance.relevance(&tokens[next(tokens.len())])))
    });
    // What the classify stage runs for a social post (hotline records skip relevance): all
    // three models through one resolution of the tokens.
    let classifiers = stages.classifiers();
    group.bench_function("classify_all", |b| {
        b.iter(|| black_box(classifiers.classify(&segmented[next(segmented.len())], true)))
    });
    // The same three models called one by one, each resolving the tokens on its own.
    group.bench_function("classify_each", |b| {
        b.iter(|| {
            let k = next(tokens.len());
            black_box((
                stages.model.predict(&tokens[k]),
                stages.sentiment.predict(&sentiment_input[k]),
                stages.relevance.relevance(&tokens[k]),
            ))
        })
    });
    group.bench_function("route", |b| {
        b.iter(|| {
            black_box(
                stages
                    .router
                    .decide(Channel::Hotline12345, Some("雨花区"), "环境保护", 0.9),
            )
        })
    });
    // Detection as `process` runs it in line: on the events of the texts, in time order.
    let events: Vec<_> = records
        .iter()
        .filter_map(
            |record| match stages.process(Channel::Hotline12345, record, None, received) {
                Outcome::Event { event, tokens } => Some((event, tokens)),
                _ => None,
            },
        )
        .collect();
    let mut detector = Detector::new(config.detect.clone());
    group.bench_function("detect", |b| {
        b.iter(|| {
            let (event, tokens) = &events[next(events.len())];
            black_box(detector.observe(&detect_input(event, tokens)))
        })
    });
    group.bench_function("serialize", |b| {
        b.iter(|| black_box(serde_json::to_vec(&*events[next(events.len())].0)))
    });
    group.bench_function("process_whole", |b| {
        b.iter_batched(
            || records[next(records.len())].clone(),
            |record| black_box(stages.process(Channel::Hotline12345, &record, None, received)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    bench_short_posts(c, &stages, received);
}

/// Short Weibo posts (~55 characters), the records `citypulse bench` uses: the stages whose
/// cost per message is the short-post overhead of the performance goals, beside raw jieba on
/// the same texts.
fn bench_short_posts(
    c: &mut Criterion,
    stages: &citypulse::stages::Stages,
    received: chrono::DateTime<FixedOffset>,
) {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let citypulse::bench::ShortPosts {
        channel,
        records,
        texts,
    } = citypulse::bench::short_post_records(&shared).expect("short posts");
    let segmented: Vec<_> = texts
        .iter()
        .map(|t| stages.segmenter.segment(t, 0))
        .collect();
    let jieba = jieba_rs::Jieba::new();
    let classifiers = stages.classifiers();
    let mut group = c.benchmark_group("short_post");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    let mut next = |n: usize| {
        i = (i + 1) % n;
        i
    };
    group.bench_function("decode", |b| {
        b.iter(|| black_box(channels::decode(channel, &records[next(records.len())])))
    });
    group.bench_function("mask", |b| {
        b.iter(|| black_box(stages.masker.mask(&texts[next(texts.len())])))
    });
    group.bench_function("jieba_cut_raw", |b| {
        b.iter(|| black_box(jieba.cut(&texts[next(texts.len())], true)))
    });
    group.bench_function("segment", |b| {
        b.iter(|| black_box(stages.segmenter.segment(&texts[next(texts.len())], 5)))
    });
    group.bench_function("classify_all", |b| {
        b.iter(|| black_box(classifiers.classify(&segmented[next(segmented.len())], true)))
    });
    group.bench_function("process_whole", |b| {
        b.iter_batched(
            || records[next(records.len())].clone(),
            |record| black_box(stages.process(channel, &record, None, received)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);
