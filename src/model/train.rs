//! Training of the category model (`citypulse train`): read the segmented TSV, cross-validate,
//! fit the temperature on the out-of-fold margins, fit on all rows, write the compact model file.
//!
//! Offline only; the streaming pipeline never trains. Each fit builds its own vocabulary from its
//! training rows (so cross-validation does not peek at the held-out fold), turns documents into a
//! dense `f32` matrix with the same [`Vectorizer`] inference uses, and fits a multinomial logistic
//! regression with linfa-logistic (L-BFGS). The coefficients are then copied into the sparse
//! layout of [`CategoryModel`]. linfa-logistic only takes dense records, so the cost of a fit
//! grows with rows × vocabulary × iterations: the vocabulary cap, the iteration cap and the
//! gradient tolerance are what keep `citypulse train` within minutes (`models/README.md` has
//! the measured trade-off). Folds and the final fit are independent and run in parallel.
//!
//! linfa-logistic 0.8 ignores `Dataset` sample weights (its loss reads only records and
//! targets), so there is no class weighting; the classes are imbalanced 1366 : 438 at worst and
//! macro-F1 is reported so that the small classes are not hidden by accuracy.
//!
//! A regularised fit's probabilities are over- or under-confident depending on `alpha`:
//! `softmax(logits / T)` is calibrated once the temperature `T` is fitted to minimise the
//! log-loss of the pooled out-of-fold logits (temperature scaling, a one-parameter search).
//! Without cross-validation there is nothing to fit `T` on, and 1 is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use linfa::traits::Fit;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::features::{self, FeatureSettings, Selection, Vectorizer};
use super::{
    read_segmented_tsv, CategoryModel, CvSummary, EvalReport, Labelled, ModelError, ModelFile,
    TermEntry, TrainingInfo, CATEGORIES, FORMAT_NAME, FORMAT_VERSION,
};

/// The learner recorded in the model file.
pub const CLASSIFIER: &str = "linfa-logistic-multinomial";

/// Accuracy the auto-routed messages must reach: the recommended triage threshold is the lowest
/// one whose out-of-fold accuracy is at least this.
pub const TARGET_ROUTED_ACCURACY: f32 = 0.97;

/// Default regularisation: see the experiments table in `models/README.md`.
pub const ALPHA: f32 = 0.1;
/// Default L-BFGS iteration cap.
pub const MAX_ITERATIONS: u64 = 100;
/// Default gradient-norm tolerance of L-BFGS.
pub const GRADIENT_TOLERANCE: f32 = 1e-3;

/// What to train on and how.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Segmented TSV, `label<TAB>tokens`.
    pub data: PathBuf,
    /// Where the model file is written.
    pub out: PathBuf,
    /// Cross-validation folds; 0 skips cross-validation.
    pub folds: usize,
    /// Seed of the fold assignment; fitting itself is deterministic.
    pub seed: u64,
    /// L2 regularisation strength (linfa's `alpha`, applied to the loss summed over rows).
    pub alpha: f32,
    /// L-BFGS iteration cap per fit.
    pub max_iterations: u64,
    /// L-BFGS stops early when the gradient norm falls below this.
    pub gradient_tolerance: f32,
    /// Feature extraction and vocabulary size. Only [`FeatureSettings::current`] gives a model
    /// that loads; other values are for measuring alternatives by cross-validation.
    pub features: FeatureSettings,
    /// Fits run at once (folds and the final fit are independent); 0 = available cores.
    pub threads: usize,
    /// No per-fold lines on stderr (progress bars still hide themselves off a terminal).
    pub quiet: bool,
}

impl TrainOptions {
    pub fn new(data: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            data: data.into(),
            out: out.into(),
            folds: 5,
            seed: 42,
            alpha: ALPHA,
            max_iterations: MAX_ITERATIONS,
            gradient_tolerance: GRADIENT_TOLERANCE,
            features: FeatureSettings::current(),
            threads: 0,
            quiet: false,
        }
    }
}

/// Figures of one cross-validation fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldReport {
    pub fold: usize,
    pub test_rows: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
}

/// What training did and measured.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub rows: usize,
    pub categories: Vec<String>,
    pub folds: Vec<FoldReport>,
    /// Mean over folds; `None` without cross-validation.
    pub cv: Option<CvSummary>,
    /// Fitted temperature (1 without cross-validation).
    pub temperature: f32,
    /// All out-of-fold predictions pooled: confusion matrix, thresholds, calibration.
    pub out_of_fold: Option<EvalReport>,
    pub vocabulary_len: usize,
    pub model_path: PathBuf,
    pub model_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for fold in &self.folds {
            writeln!(
                f,
                "fold {}: {} rows, accuracy {:.4}, macro-F1 {:.4}",
                fold.fold, fold.test_rows, fold.accuracy, fold.macro_f1
            )?;
        }
        if let Some(cv) = &self.cv {
            writeln!(
                f,
                "cross-validation mean ({} folds): accuracy {:.4}, macro-F1 {:.4}",
                self.folds.len(),
                cv.accuracy,
                cv.macro_f1
            )?;
        }
        if let Some(oof) = &self.out_of_fold {
            writeln!(
                f,
                "\nout-of-fold predictions pooled (temperature {:.4}):\n{oof}",
                self.temperature
            )?;
        }
        if let Some(cv) = &self.cv {
            match cv.triage_threshold {
                Some(t) => writeln!(
                    f,
                    "triage threshold to ship: {t:.2} (out of fold: {:.1} % auto-routed, {:.1} % of \
                     them right)",
                    cv.routed_share * 100.0,
                    cv.routed_accuracy * 100.0
                )?,
                None => writeln!(
                    f,
                    "no threshold reaches {:.0} % accuracy out of fold",
                    TARGET_ROUTED_ACCURACY * 100.0
                )?,
            }
        }
        writeln!(
            f,
            "model: {} ({} bytes, {} terms, {} rows), {:.1} s",
            self.model_path.display(),
            self.model_bytes,
            self.vocabulary_len,
            self.rows,
            self.elapsed.as_secs_f32()
        )
    }
}

/// Documents prepared once for every fit: class index and distinct term ids.
struct Corpus {
    docs: Vec<Labelled>,
    classes: Vec<usize>,
    /// Distinct interned term ids per document, sorted.
    doc_terms: Vec<Vec<u32>>,
    /// Interned term texts, indexed by id.
    terms: Vec<String>,
}

impl Corpus {
    fn new(
        settings: &FeatureSettings,
        docs: Vec<Labelled>,
        categories: &[String],
    ) -> Result<Self, ModelError> {
        let mut ids: FxHashMap<u64, u32> = FxHashMap::default();
        let mut terms: Vec<String> = Vec::new();
        let mut doc_terms = Vec::with_capacity(docs.len());
        let mut classes = Vec::with_capacity(docs.len());
        for doc in &docs {
            let mut row = Vec::new();
            for (key, text) in features::distinct_terms(settings, &doc.tokens) {
                let id = match ids.get(&key) {
                    Some(&id) => {
                        if terms[id as usize] != text {
                            return Err(ModelError::Train(format!(
                                "feature key collision between {:?} and {text:?}",
                                terms[id as usize]
                            )));
                        }
                        id
                    }
                    None => {
                        let id = u32::try_from(terms.len())
                            .map_err(|_| ModelError::Train("more than 2^32 terms".into()))?;
                        ids.insert(key, id);
                        terms.push(text);
                        id
                    }
                };
                row.push(id);
            }
            row.sort_unstable();
            doc_terms.push(row);
            let class = categories
                .iter()
                .position(|c| *c == doc.label)
                .ok_or_else(|| {
                    ModelError::Train(format!("label {:?} not a category", doc.label))
                })?;
            classes.push(class);
        }
        Ok(Corpus {
            docs,
            classes,
            doc_terms,
            terms,
        })
    }
}

/// Coefficients of one fit, already in the model's term-major layout.
struct Fitted {
    vocabulary: Vec<(String, f32)>,
    intercepts: Vec<f32>,
    /// `weights[column * k + class]`
    weights: Vec<f32>,
}

/// Picks the vocabulary from the training rows `rows` and gives each term its IDF.
fn select_vocabulary(
    settings: &FeatureSettings,
    corpus: &Corpus,
    rows: &[usize],
    k: usize,
) -> Vec<(String, f32)> {
    let n_terms = corpus.terms.len();
    let mut df = vec![0u32; n_terms];
    // Per-class document frequency, term-major, for χ².
    let mut class_df = vec![0u32; n_terms * k];
    let mut class_docs = vec![0u32; k];
    for &r in rows {
        let c = corpus.classes[r];
        class_docs[c] += 1;
        for &t in &corpus.doc_terms[r] {
            df[t as usize] += 1;
            class_df[t as usize * k + c] += 1;
        }
    }
    let n = rows.len() as f64;
    let mut candidates: Vec<(f64, u32)> = (0..n_terms)
        .filter(|&t| df[t] >= settings.min_df)
        .map(|t| {
            let score = match settings.selection {
                Selection::DocFreq => f64::from(df[t]),
                Selection::Chi2 => (0..k)
                    .map(|c| {
                        let a = f64::from(class_df[t * k + c]);
                        let b = f64::from(df[t]) - a;
                        let cc = f64::from(class_docs[c]) - a;
                        let d = n - a - b - cc;
                        let denom = (a + cc) * (b + d) * (a + b) * (cc + d);
                        if denom > 0.0 {
                            n * (a * d - b * cc).powi(2) / denom
                        } else {
                            0.0
                        }
                    })
                    .fold(0.0, f64::max),
            };
            (score, t as u32)
        })
        .collect();
    // Ties broken by term text so that the choice does not depend on interning order.
    candidates.sort_unstable_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then_with(|| corpus.terms[x.1 as usize].cmp(&corpus.terms[y.1 as usize]))
    });
    candidates.truncate(settings.max_features as usize);
    let mut vocabulary: Vec<(String, f32)> = candidates
        .into_iter()
        .map(|(_, t)| {
            let idf = features::smooth_idf(rows.len(), df[t as usize] as usize);
            (corpus.terms[t as usize].clone(), round(idf, 4))
        })
        .collect();
    vocabulary.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    vocabulary
}

/// Rounds to `decimals` places: the model file stores short numbers, and fits use the same
/// rounded IDF the file will carry.
fn round(v: f32, decimals: i32) -> f32 {
    let scale = 10f64.powi(decimals);
    ((f64::from(v) * scale).round() / scale) as f32
}

fn fit(
    settings: &FeatureSettings,
    corpus: &Corpus,
    rows: &[usize],
    k: usize,
    opts: &TrainOptions,
) -> Result<(Fitted, Vectorizer), ModelError> {
    let vocabulary = select_vocabulary(settings, corpus, rows, k);
    let vectorizer = Vectorizer::new(settings.clone(), &vocabulary)
        .map_err(|e| ModelError::Train(e.to_string()))?;
    let mut x = Array2::<f32>::zeros((rows.len(), vocabulary.len()));
    for (i, &r) in rows.iter().enumerate() {
        let v = vectorizer.vectorize(&corpus.docs[r].tokens);
        for (&c, &value) in v.indices.iter().zip(&v.values) {
            x[[i, c as usize]] = value;
        }
    }
    let y: Array1<usize> = rows.iter().map(|&r| corpus.classes[r]).collect();
    let model = MultiLogisticRegression::<f32>::default()
        .alpha(opts.alpha)
        .max_iterations(opts.max_iterations)
        .gradient_tolerance(opts.gradient_tolerance)
        .fit(&linfa::Dataset::new(x, y))
        .map_err(|e| ModelError::Train(format!("linfa-logistic: {e}")))?;
    if model.classes().len() != k {
        return Err(ModelError::Train(format!(
            "a fit saw {} of {k} categories",
            model.classes().len()
        )));
    }
    // linfa orders its columns by sorted class value; map them back to category indices.
    let params = model.params();
    let mut intercepts = vec![0f32; k];
    let mut weights = vec![0f32; vocabulary.len() * k];
    for (col, &class) in model.classes().iter().enumerate() {
        intercepts[class] = model.intercept()[col];
        for t in 0..vocabulary.len() {
            weights[t * k + class] = params[[t, col]];
        }
    }
    Ok((
        Fitted {
            vocabulary,
            intercepts,
            weights,
        },
        vectorizer,
    ))
}

/// Mean negative log-likelihood of the true classes under `softmax(margins / temperature)`.
fn log_loss(margins: &[(Vec<f32>, usize)], temperature: f32) -> f64 {
    let mut z = Vec::new();
    let total: f64 = margins
        .iter()
        .map(|(m, truth)| {
            z.clone_from(m);
            super::calibrate(&mut z, temperature);
            -f64::from(z[*truth].max(1e-12)).ln()
        })
        .sum();
    total / margins.len().max(1) as f64
}

/// Temperature minimising the log-loss of out-of-fold margins. The loss is convex in 1/T, so a
/// golden-section search over ln T in [e⁻⁶, e⁶] finds the minimum.
fn fit_temperature(margins: &[(Vec<f32>, usize)]) -> f32 {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (-6f64, 6f64);
    let loss = |ln_t: f64| log_loss(margins, ln_t.exp() as f32);
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..60 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = loss(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = loss(b);
        }
    }
    round(((lo + hi) / 2.0).exp() as f32, 4)
}

/// Stratified fold of every row: each class is shuffled with the seed and dealt round-robin,
/// continuing the deal across classes so that fold sizes stay within one of each other.
fn stratified_folds(classes: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; classes.len()];
    let mut next = 0usize;
    for c in 0..k {
        let mut members: Vec<usize> = (0..classes.len()).filter(|&i| classes[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold_of[i] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Job `j < folds` is fold `j`'s fit and test; job `folds` is the final fit on all rows.
enum JobResult {
    /// The fold's figures, and the raw margins of its test rows.
    Fold(FoldReport, Vec<(usize, Vec<f32>)>, EvalReport),
    Final(Fitted),
}

/// Trains, cross-validates and writes the model file. See [`TrainOptions`].
pub fn train_category_model(opts: &TrainOptions) -> Result<TrainReport, ModelError> {
    let started = Instant::now();
    let settings = opts.features.clone();
    let docs = read_segmented_tsv(&opts.data)?;
    let data_bytes = std::fs::read(&opts.data).map_err(|e| ModelError::Io {
        path: opts.data.display().to_string(),
        source: e,
    })?;
    let data_sha256 = hex::encode(Sha256::digest(&data_bytes));
    let categories: Vec<String> = CATEGORIES
        .iter()
        .filter(|c| docs.iter().any(|d| d.label == **c))
        .map(|c| c.to_string())
        .collect();
    let k = categories.len();
    if k < 2 {
        return Err(ModelError::Train(format!(
            "{}: {k} categories present, need at least 2",
            opts.data.display()
        )));
    }
    if opts.folds == 1 {
        return Err(ModelError::Train(
            "folds must be 0 (no cross-validation) or at least 2".into(),
        ));
    }
    for c in &categories {
        let count = docs.iter().filter(|d| d.label == *c).count();
        if count < opts.folds.max(1) {
            return Err(ModelError::Train(format!(
                "category {c} has {count} rows, fewer than the {} folds",
                opts.folds
            )));
        }
    }
    let corpus = Corpus::new(&settings, docs, &categories)?;
    let n = corpus.docs.len();
    let fold_of = stratified_folds(&corpus.classes, k, opts.folds.max(1), opts.seed);

    let jobs = opts.folds + 1;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()),
        t => t,
    }
    .min(jobs);
    let progress = ProgressBar::new(jobs as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} fits {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let say = |line: String| {
        if opts.quiet {
        } else if progress.is_hidden() {
            eprintln!("{line}");
        } else {
            progress.println(line);
        }
    };

    let run_job = |job: usize| -> Result<JobResult, ModelError> {
        if job == opts.folds {
            let rows: Vec<usize> = (0..n).collect();
            let (fitted, _) = fit(&settings, &corpus, &rows, k, opts)?;
            return Ok(JobResult::Final(fitted));
        }
        let (train_rows, test_rows): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| fold_of[i] != job);
        let fit_started = Instant::now();
        let (fitted, vectorizer) = fit(&settings, &corpus, &train_rows, k, opts)?;
        let fit_seconds = fit_started.elapsed().as_secs_f32();
        let model = CategoryModel {
            categories: categories.clone(),
            intercepts: fitted.intercepts,
            vectorizer,
            weights: fitted.weights,
            temperature: 1.0,
            training: placeholder_info(),
        };
        let margins: Vec<(usize, Vec<f32>)> = test_rows
            .iter()
            .map(|&r| (r, model.margins(&corpus.docs[r].tokens)))
            .collect();
        let truth: Vec<usize> = test_rows.iter().map(|&r| corpus.classes[r]).collect();
        // Per-fold figures need only the argmax, which the temperature does not change.
        let predicted: Vec<(usize, f32)> = margins
            .iter()
            .map(|(_, m)| {
                let mut p = m.clone();
                model.calibrate(&mut p);
                super::argmax(&p)
            })
            .collect();
        let report = EvalReport::from_predictions(&categories, &truth, &predicted);
        let fold = FoldReport {
            fold: job + 1,
            test_rows: test_rows.len(),
            accuracy: report.accuracy,
            macro_f1: report.macro_f1,
        };
        say(format!(
            "fold {}/{}: accuracy {:.4}, macro-F1 {:.4} (fit {fit_seconds:.1} s)",
            fold.fold, opts.folds, fold.accuracy, fold.macro_f1
        ));
        Ok(JobResult::Fold(fold, margins, report))
    };

    // Folds and the final fit are independent: spread them over the cores, job by job.
    let next_job = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<JobResult, ModelError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let job = next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if job >= jobs {
                            break;
                        }
                        done.push((job, run_job(job)));
                        progress.inc(1);
                    }
                    done
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<JobResult, ModelError>)> = handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(done) => done,
                Err(_) => vec![(
                    usize::MAX,
                    Err(ModelError::Train("a fit thread panicked".into())),
                )],
            })
            .collect();
        all.sort_by_key(|(job, _)| *job);
        all.into_iter().map(|(_, r)| r).collect()
    });
    progress.finish_and_clear();

    let mut folds = Vec::new();
    let mut fold_reports = Vec::new();
    let mut oof: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut final_fit = None;
    for result in results {
        match result? {
            JobResult::Fold(fold, predictions, report) => {
                for (r, p) in predictions {
                    oof[r] = Some(p);
                }
                folds.push(fold);
                fold_reports.push(report);
            }
            JobResult::Final(fitted) => final_fit = Some(fitted),
        }
    }
    let fitted = final_fit.ok_or_else(|| ModelError::Train("final fit missing".into()))?;

    let (cv, out_of_fold, temperature) = if fold_reports.is_empty() {
        (None, None, 1.0)
    } else {
        let margins: Vec<(Vec<f32>, usize)> = oof
            .into_iter()
            .enumerate()
            .filter_map(|(r, m)| m.map(|m| (m, corpus.classes[r])))
            .collect();
        let temperature = fit_temperature(&margins);
        let (truth, predicted): (Vec<usize>, Vec<(usize, f32)>) = margins
            .into_iter()
            .map(|(mut z, t)| {
                super::calibrate(&mut z, temperature);
                (t, super::argmax(&z))
            })
            .unzip();
        let pooled = EvalReport::from_predictions(&categories, &truth, &predicted);
        // The report already chose the threshold to ship on the fine grid.
        let (triage_threshold, routed_share, routed_accuracy) =
            pooled.triage.as_ref().map_or((None, 0.0, 0.0), |t| {
                (Some(t.threshold), t.coverage, t.accuracy)
            });
        let m = fold_reports.len() as f32;
        let per_class_f1: BTreeMap<String, f32> = categories
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let mean = fold_reports.iter().map(|r| r.per_class[c].f1).sum::<f32>() / m;
                (name.clone(), round(mean, 4))
            })
            .collect();
        let cv = CvSummary {
            accuracy: round(fold_reports.iter().map(|r| r.accuracy).sum::<f32>() / m, 4),
            macro_f1: round(fold_reports.iter().map(|r| r.macro_f1).sum::<f32>() / m, 4),
            per_class_f1,
            ece: round(pooled.ece, 4),
            triage_threshold,
            routed_share: round(routed_share, 4),
            routed_accuracy: round(routed_accuracy, 4),
        };
        say(format!(
            "cross-validation mean: accuracy {:.4}, macro-F1 {:.4}",
            cv.accuracy, cv.macro_f1
        ));
        (Some(cv), Some(pooled), temperature)
    };

    let file = ModelFile {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        features: settings,
        training: TrainingInfo {
            data_file: opts
                .data
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            data_sha256,
            rows: n,
            seed: opts.seed,
            folds: opts.folds,
            classifier: CLASSIFIER.to_string(),
            alpha: opts.alpha,
            max_iterations: opts.max_iterations,
            gradient_tolerance: opts.gradient_tolerance,
            trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cv: cv.clone(),
        },
        categories: categories.clone(),
        temperature,
        intercepts: fitted.intercepts.iter().map(|&v| round(v, 4)).collect(),
        vocabulary: fitted
            .vocabulary
            .iter()
            .enumerate()
            .map(|(t, (term, idf))| {
                let w = fitted.weights[t * k..(t + 1) * k]
                    .iter()
                    .map(|&v| round(v, 4))
                    .collect();
                TermEntry(term.clone(), *idf, w)
            })
            .collect(),
    };
    let model_bytes = write_model(&opts.out, &file)?;
    Ok(TrainReport {
        rows: n,
        categories,
        folds,
        cv,
        temperature,
        out_of_fold,
        vocabulary_len: file.vocabulary.len(),
        model_path: opts.out.clone(),
        model_bytes,
        elapsed: started.elapsed(),
    })
}

/// Fold models are never written, so their provenance is empty.
fn placeholder_info() -> TrainingInfo {
    TrainingInfo {
        data_file: String::new(),
        data_sha256: String::new(),
        rows: 0,
        seed: 0,
        folds: 0,
        classifier: CLASSIFIER.to_string(),
        alpha: 0.0,
        max_iterations: 0,
        gradient_tolerance: 0.0,
        trained_at: String::new(),
        cv: None,
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written model
/// where the pipeline would load it.
fn write_model(out: &Path, file: &ModelFile) -> Result<u64, ModelError> {
    let err = |message: String| ModelError::Save {
        path: out.display().to_string(),
        message,
    };
    let bytes = serde_json::to_vec(file).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, out).map_err(|e| err(e.to_string()))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_balanced() {
        let classes: Vec<usize> = (0..30).map(|i| usize::from(i >= 20)).collect();
        let fold_of = stratified_folds(&classes, 2, 5, 7);
        for f in 0..5 {
            let members: Vec<usize> = (0..30).filter(|&i| fold_of[i] == f).collect();
            assert_eq!(members.len(), 6);
            assert_eq!(members.iter().filter(|&&i| classes[i] == 1).count(), 2);
        }
    }

    #[test]
    fn folds_depend_on_seed_only() {
        let classes: Vec<usize> = (0..40).map(|i| i % 3).collect();
        assert_eq!(
            stratified_folds(&classes, 3, 4, 1),
            stratified_folds(&classes, 3, 4, 1)
        );
        assert_ne!(
            stratified_folds(&classes, 3, 4, 1),
            stratified_folds(&classes, 3, 4, 2)
        );
    }

    #[test]
    fn round_keeps_four_decimals() {
        assert_eq!(round(0.123_456, 4), 0.1235);
        assert_eq!(round(-2.0, 4), -2.0);
    }
}
