//! Training of the category model (`citypulse train`): read the segmented TSV, cross-validate,
//! fit on all rows with linfa-logistic, write the compact model file.
//!
//! Offline only; the streaming pipeline never trains. Each fit builds its own vocabulary from its
//! training rows (so cross-validation does not peek at the held-out fold), turns documents into a
//! dense matrix with the same [`Vectorizer`] inference uses, and fits a multinomial logistic
//! regression. The coefficients are then copied into the sparse layout of [`CategoryModel`].
//!
//! linfa-logistic 0.8 ignores `Dataset` sample weights (its loss reads only records and
//! targets), so there is no class weighting; the classes are imbalanced 1366 : 438 at worst and
//! macro-F1 is reported so that the small classes are not hidden by accuracy.

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
    /// L2 regularisation strength (linfa's `alpha`, applied to the summed loss).
    pub alpha: f32,
    /// L-BFGS iteration cap per fit.
    pub max_iterations: u64,
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
            alpha: 0.1,
            max_iterations: 150,
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
            writeln!(f, "\nout-of-fold predictions pooled:\n{oof}")?;
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
    let dataset = linfa::Dataset::new(x, y);
    let model = MultiLogisticRegression::<f32>::default()
        .alpha(opts.alpha)
        .max_iterations(opts.max_iterations)
        .fit(&dataset)
        .map_err(|e| ModelError::Train(format!("linfa-logistic: {e}")))?;
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
    if model.classes().len() != k {
        return Err(ModelError::Train(format!(
            "a fit saw {} of {k} categories",
            model.classes().len()
        )));
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
    Fold(FoldReport, Vec<(usize, (usize, f32))>, EvalReport),
    Final(Fitted),
}

/// Trains, cross-validates and writes the model file. See [`TrainOptions`].
pub fn train_category_model(opts: &TrainOptions) -> Result<TrainReport, ModelError> {
    let started = Instant::now();
    let settings = FeatureSettings::current();
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
        let (fitted, vectorizer) = fit(&settings, &corpus, &train_rows, k, opts)?;
        let model = CategoryModel {
            categories: categories.clone(),
            intercepts: fitted.intercepts,
            vectorizer,
            weights: fitted.weights,
            training: placeholder_info(),
        };
        let predictions: Vec<(usize, (usize, f32))> = test_rows
            .iter()
            .map(|&r| (r, model.predict_index(&corpus.docs[r].tokens)))
            .collect();
        let truth: Vec<usize> = test_rows.iter().map(|&r| corpus.classes[r]).collect();
        let predicted: Vec<(usize, f32)> = predictions.iter().map(|p| p.1).collect();
        let report = EvalReport::from_predictions(&categories, &truth, &predicted);
        let fold = FoldReport {
            fold: job + 1,
            test_rows: test_rows.len(),
            accuracy: report.accuracy,
            macro_f1: report.macro_f1,
        };
        say(format!(
            "fold {}/{}: accuracy {:.4}, macro-F1 {:.4}",
            fold.fold, opts.folds, fold.accuracy, fold.macro_f1
        ));
        Ok(JobResult::Fold(fold, predictions, report))
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
    let mut oof: Vec<Option<(usize, f32)>> = vec![None; n];
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

    let (cv, out_of_fold) = if fold_reports.is_empty() {
        (None, None)
    } else {
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
        };
        let (truth, predicted): (Vec<usize>, Vec<(usize, f32)>) = oof
            .iter()
            .enumerate()
            .filter_map(|(r, p)| p.map(|p| (corpus.classes[r], p)))
            .unzip();
        let pooled = EvalReport::from_predictions(&categories, &truth, &predicted);
        say(format!(
            "cross-validation mean: accuracy {:.4}, macro-F1 {:.4}",
            cv.accuracy, cv.macro_f1
        ));
        (Some(cv), Some(pooled))
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
            alpha: opts.alpha,
            max_iterations: opts.max_iterations,
            trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cv: cv.clone(),
        },
        categories: categories.clone(),
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
        alpha: 0.0,
        max_iterations: 0,
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
