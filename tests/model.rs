//! The category model end to end: training on a fixture, file round trip, refusal of mismatched
//! or broken files, and (when `../shared/data` is present) the real data's cross-validated
//! figures and the shipped model's accuracy on raw messages segmented by jieba-rs.

use std::path::{Path, PathBuf};

use citypulse::model::{
    evaluate, read_raw_sample, train_category_model, CategoryModel, Labelled, ModelError,
    TrainOptions, CATEGORIES,
};
use citypulse::text::segment::Segmenter;

const TINY: &str = "tests/fixtures/routing_tiny.tsv";
const SHARED: &str = "../shared/data/routing";
/// The triage threshold the shipped model recommends (and the pipeline uses unless
/// `routing.triage_threshold` is set): the lowest on the 0.01 grid whose out-of-fold accuracy
/// reaches 97 % (5-fold cross-validation).
const SHIPPED_TRIAGE_THRESHOLD: f32 = 0.86;

fn toks(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn tiny_options(out: &Path) -> TrainOptions {
    let mut opts = TrainOptions::new(TINY, out);
    opts.folds = 3;
    opts.seed = 7;
    opts.quiet = true;
    opts
}

fn train_tiny(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    train_category_model(&tiny_options(&out)).expect("tiny fixture trains");
    out
}

fn json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).expect("model file readable");
    serde_json::from_slice(&bytes).expect("model file is JSON")
}

fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec(value).expect("serialisable")).expect("writable");
}

fn load_err(path: &Path) -> String {
    match CategoryModel::load(path) {
        Ok(_) => panic!("{} must not load", path.display()),
        Err(e) => e.to_string(),
    }
}

fn shared_data(file: &str) -> Option<PathBuf> {
    let path = Path::new(SHARED).join(file);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} absent (the shared reference data lives beside the checkout)",
            path.display()
        );
        None
    }
}

#[test]
fn same_seed_gives_identical_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = json(&train_tiny(dir.path(), "a.json"));
    let mut b = json(&train_tiny(dir.path(), "b.json"));
    // The only field allowed to differ is the training time.
    for v in [&mut a, &mut b] {
        v["training"]["trained_at"] = serde_json::Value::Null;
    }
    assert_eq!(a, b);
}

#[test]
fn trained_model_classifies_its_training_texts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = CategoryModel::load(&train_tiny(dir.path(), "m.json")).expect("loads");
    let examples = citypulse::model::read_segmented_tsv(Path::new(TINY)).expect("fixture");
    let report = evaluate(&model, &examples).expect("labels known");
    assert_eq!(report.accuracy, 1.0, "{report}");
    assert_eq!(model.predict(&toks("工地 噪音 扰民")).category, "环境保护");
    assert_eq!(model.predict(&toks("拖欠 工资")).category, "劳动和社会保障");
}

#[test]
fn model_round_trips_through_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let model = CategoryModel::load(&path).expect("loads");
    assert_eq!(model.categories(), CATEGORIES.map(String::from).as_slice());
    let info = model.training_info();
    assert_eq!(info.rows, 42);
    assert_eq!(info.data_file, "routing_tiny.tsv");
    assert_eq!(info.data_sha256.len(), 64);
    assert!(info.cv.is_some());
    // Re-serialising the loaded file and loading it again predicts the same.
    let copy = dir.path().join("copy.json");
    write_json(&copy, &json(&path));
    let again = CategoryModel::load(&copy).expect("copy loads");
    let tokens = toks("公交 班次 太少");
    assert_eq!(model.predict_scores(&tokens), again.predict_scores(&tokens));
}

#[test]
fn scores_are_probabilities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = CategoryModel::load(&train_tiny(dir.path(), "m.json")).expect("loads");
    let scores = model.predict_scores(&toks("医院 收费"));
    assert_eq!(scores.len(), 7);
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!((scores.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let best = model.predict(&toks("医院 收费"));
    assert_eq!(best.category, "卫生计生");
    assert_eq!(best.confidence, scores.iter().copied().fold(0.0, f32::max));
}

#[test]
fn empty_tokens_give_a_finite_low_confidence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = CategoryModel::load(&train_tiny(dir.path(), "m.json")).expect("loads");
    // Without known terms the answer is the intercepts' softmax, the same for both inputs; on
    // the real model that prior is below 0.5 (checked in `shipped_model_on_raw_sample`).
    let empty = model.predict::<&str>(&[]);
    assert!(
        empty.confidence.is_finite() && empty.confidence > 0.0,
        "{empty:?}"
    );
    assert!(empty.confidence < 1.0, "{empty:?}");
    assert_eq!(model.predict(&toks("qqq zzz")), empty);
}

#[test]
fn other_feature_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let mut v = json(&path);
    v["features"]["version"] = serde_json::json!(999);
    write_json(&path, &v);
    let err = load_err(&path);
    assert!(err.contains("version: 999 vs 1"), "{err}");
}

#[test]
fn other_feature_settings_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let mut v = json(&path);
    v["features"]["char_ngram_max"] = serde_json::json!(5);
    write_json(&path, &v);
    let err = load_err(&path);
    assert!(err.contains("char_ngram_max: 5 vs"), "{err}");
    assert!(err.contains("retrain"), "{err}");
}

#[test]
fn corrupted_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let bytes = std::fs::read(&path).expect("readable");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("writable");
    let err = load_err(&path);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a valid model file"), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let err = load_err(Path::new("no/such/model.json"));
    assert!(err.contains("no/such/model.json"), "{err}");
}

#[test]
fn unknown_label_in_evaluation_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = CategoryModel::load(&train_tiny(dir.path(), "m.json")).expect("loads");
    let examples = vec![Labelled {
        tokens: toks("噪音"),
        label: "城乡".into(),
    }];
    assert!(matches!(
        evaluate(&model, &examples),
        Err(ModelError::UnknownLabel { index: 0, .. })
    ));
}

#[test]
fn training_on_a_bad_file_names_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("bad.tsv");
    std::fs::write(&data, "环境保护\t噪音 扰民\n环境保护\n").expect("writable");
    let mut opts = TrainOptions::new(&data, dir.path().join("m.json"));
    opts.quiet = true;
    let err = train_category_model(&opts)
        .expect_err("bad line")
        .to_string();
    assert!(err.contains(&format!("{}:2:", data.display())), "{err}");
}

#[test]
fn older_format_version_asks_for_retraining() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let mut v = json(&path);
    // Version 2 was the hand-written SVM's file, with `c` instead of `alpha`.
    v["format_version"] = serde_json::json!(2);
    v["training"]["c"] = serde_json::json!(1.0);
    write_json(&path, &v);
    let err = load_err(&path);
    assert!(err.contains("format_version is 2"), "{err}");
    assert!(err.contains("retrain"), "{err}");
}

#[test]
fn temperature_is_fitted_and_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = train_tiny(dir.path(), "m.json");
    let t = json(&path)["temperature"]
        .as_f64()
        .expect("temperature stored");
    assert!(t > 0.0 && t.is_finite() && t != 1.0, "{t}");
}

/// Cross-validation on the real training set with 3 folds (the shipped model's 5-fold run,
/// `citypulse train`, takes about 2.5 min; this one about 2 min in a release build on 2 cores).
/// Asserts floors a little under what this 3-fold run reaches (macro-F1 0.913, accuracy 0.918,
/// ECE 0.013; at 0.90, 76.4 % auto-routed, 97.3 % right; `models/README.md` has the
/// 5-fold figures: macro-F1 0.911, accuracy 0.917, ECE 0.010; at the shipped triage threshold
/// 0.90, 77.2 % auto-routed and 97.6 % of those right), so that a regression fails it but a
/// harmless change of rounding does not.
#[test]
fn real_data_cross_validates_above_bar() {
    let Some(data) = shared_data("routing_train_segmented.tsv") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = TrainOptions::new(data, dir.path().join("category.json"));
    opts.folds = 3;
    opts.quiet = true;
    let report = train_category_model(&opts).expect("trains");
    eprintln!("{report}");
    let cv = report.cv.expect("cross-validated");
    assert!(cv.macro_f1 >= 0.908, "CV macro-F1 {}", cv.macro_f1);
    assert!(cv.accuracy >= 0.912, "CV accuracy {}", cv.accuracy);
    assert!(cv.ece <= 0.02, "out-of-fold ECE {}", cv.ece);
    // 3 folds choose 0.87 (79.9 % auto-routed at 97.2 %); the floors sit just under that.
    let threshold = cv.triage_threshold.expect("some threshold reaches 97 %");
    assert!(threshold <= 0.88, "triage threshold {threshold}");
    assert!(cv.routed_accuracy >= 0.97, "{cv:?}");
    assert!(cv.routed_share >= 0.79, "{cv:?}");
    let oof = report.out_of_fold.expect("pooled out-of-fold report");
    let coarse = oof
        .thresholds
        .iter()
        .find(|t| t.threshold == 0.9)
        .expect("0.90 is reported");
    assert!(
        cv.routed_share > coarse.coverage,
        "the fine grid routes more than the 0.90 row: {cv:?} vs {coarse:?}"
    );
}

/// The shipped model on raw messages, segmented by jieba-rs as the pipeline does. These rows
/// are the official sample and overlap the training set, so this measures robustness to the
/// segmenter change, not generalisation.
#[test]
fn shipped_model_on_raw_sample() {
    let Some(raw) = shared_data("routing_sample_raw.tsv") else {
        return;
    };
    let model = CategoryModel::load(Path::new("models/category.json")).expect("shipped model");
    let segmenter = Segmenter::from_files(
        Path::new("models/user_dict.txt"),
        Path::new("models/stopwords.txt"),
    )
    .expect("shipped dictionaries");
    let raw_rows = read_raw_sample(&raw).expect("raw sample parses");
    let started = std::time::Instant::now();
    let examples: Vec<Labelled> = raw_rows
        .into_iter()
        .map(|r| Labelled {
            tokens: segmenter.segment(&r.text, 0).owned_tokens(),
            label: r.label,
        })
        .collect();
    let segmenting = started.elapsed();
    // Best of a few rounds: the first one also pays for cold caches.
    let classifying = (0..5)
        .map(|_| {
            let started = std::time::Instant::now();
            for e in &examples {
                std::hint::black_box(model.predict(&e.tokens));
            }
            started.elapsed()
        })
        .min()
        .unwrap_or_default();
    // A measurement, not an assertion: timing in a shared CI machine is too noisy to gate on.
    eprintln!(
        "per message: segmentation {:.1} µs, classification {:.1} µs ({:.0} %)",
        segmenting.as_secs_f64() * 1e6 / examples.len() as f64,
        classifying.as_secs_f64() * 1e6 / examples.len() as f64,
        100.0 * classifying.as_secs_f64() / segmenting.as_secs_f64()
    );
    assert_eq!(examples.len(), 322);
    let prior = model.predict::<&str>(&[]);
    assert!(prior.confidence < 0.5, "{prior:?}");
    let cv = model
        .training_info()
        .cv
        .as_ref()
        .expect("shipped with CV figures");
    assert_eq!(cv.triage_threshold, Some(SHIPPED_TRIAGE_THRESHOLD));
    let report = evaluate(&model, &examples).expect("labels known");
    eprintln!("{report}");
    assert!(report.accuracy >= 0.95, "{report}");
    assert!(report.macro_f1 >= 0.95, "{report}");
}

/// A pipeline file without `routing.triage_threshold` routes with the threshold the embedded
/// category model recommends; one that sets it wins.
#[test]
fn pipeline_routes_with_the_model_recommended_threshold_unless_configured() {
    use citypulse::assets::load_stages;
    use citypulse::config::PipelineConfig;
    use citypulse::metrics::Metrics;
    use citypulse::text::mask::AuthorHasher;

    let hasher = || AuthorHasher::new(b"threshold test key");
    let stages = load_stages(&PipelineConfig::default(), hasher(), Metrics::new())
        .expect("embedded models load");
    assert_eq!(stages.router.triage_threshold(), SHIPPED_TRIAGE_THRESHOLD);
    let mut config = PipelineConfig::default();
    config.routing.triage_threshold = Some(0.95);
    let stages = load_stages(&config, hasher(), Metrics::new()).expect("embedded models load");
    assert_eq!(stages.router.triage_threshold(), 0.95);
}
