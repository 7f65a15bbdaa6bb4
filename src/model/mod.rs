//! The category model: which of the seven first-level categories (城乡建设, 环境保护 …) a
//! citizen message belongs to, with a confidence.
//!
//! Sits after segmentation in the flow (`segment → classify → route`): it takes the content
//! tokens produced by `text::segment` and returns a [`CategoryPrediction`]; routing sends
//! low-confidence events to triage. The model is a multinomial logistic regression fitted by
//! linfa-logistic over TF-IDF features ([`features`], [`train`]) whose logits are turned into
//! probabilities by a softmax with a temperature fitted on out-of-fold predictions, so that the confidence is calibrated; it is
//! stored as JSON (format documented in `models/README.md`). Inference is a sparse dot product
//! over features that come, for most documents, from the per-thread token cache of
//! [`inference::TermPlan`] rather than from hashing every term. [`Classifiers`] scores it
//! together with the sentiment and relevance models, as the classify stage runs them.

pub mod data;
pub mod eval;
pub mod features;
mod inference;
pub mod linear;
pub mod relevance;
pub mod sentiment;
pub mod train;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use data::{read_raw_sample, read_segmented_tsv, Labelled, RawLabelled, CATEGORIES};
pub use eval::{evaluate, EvalReport};
pub use features::{FeatureSettings, FEATURE_VERSION};
pub use train::{train_category_model, TrainOptions, TrainReport};

use features::{SparseVector, Vectorizer};
use relevance::RelevanceModel;
use sentiment::{SentimentModel, SentimentPrediction, Tokens};

use crate::text::segment::Segmented;

/// Identifies the file kind, so that loading some other JSON fails with a clear message.
const FORMAT_NAME: &str = "citypulse-category-model";
/// Bumped when the file layout changes (independently of [`FEATURE_VERSION`]).
pub const FORMAT_VERSION: u32 = 3;
/// A model file larger than this is refused: the shipped one is about 1 MB.
const MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {path}: {message}")]
    Load { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Data {
        path: String,
        line: usize,
        message: String,
    },
    #[error("example {index}: label {label:?} is not a category of the model")]
    UnknownLabel { index: usize, label: String },
    #[error("training failed: {0}")]
    Train(String),
    #[error("cannot write model {path}: {message}")]
    Save { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CategoryPrediction {
    pub category: String,
    pub confidence: f32,
}

/// How the model was made: written into the file for provenance, not used for prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// File name (not path) of the training data.
    pub data_file: String,
    /// SHA-256 of the training data file, hex.
    pub data_sha256: String,
    pub rows: usize,
    pub seed: u64,
    pub folds: usize,
    /// Which learner made the weights (see [`train`]).
    pub classifier: String,
    /// L2 regularisation strength of linfa-logistic (on the loss summed over rows).
    pub alpha: f32,
    /// L-BFGS iteration cap per fit.
    pub max_iterations: u64,
    /// L-BFGS gradient-norm tolerance.
    pub gradient_tolerance: f32,
    /// RFC 3339, UTC.
    pub trained_at: String,
    /// Cross-validation figures; absent when trained without cross-validation.
    pub cv: Option<CvSummary>,
}

/// Cross-validation figures: means over folds, and calibration figures of the pooled
/// out-of-fold predictions (with the fitted temperature applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvSummary {
    pub accuracy: f32,
    pub macro_f1: f32,
    pub per_class_f1: BTreeMap<String, f32>,
    /// Expected calibration error of the out-of-fold confidences.
    pub ece: f32,
    /// Lowest confidence threshold (of [`eval::THRESHOLDS`]) at which the out-of-fold
    /// predictions above it are at least [`train::TARGET_ROUTED_ACCURACY`] right; `None` when
    /// no threshold reaches it. The value to ship as `routing.triage_threshold`.
    pub triage_threshold: Option<f32>,
    /// Share of messages at or above `triage_threshold` (auto-routed).
    pub routed_share: f32,
    /// Accuracy among those messages.
    pub routed_accuracy: f32,
}

/// One vocabulary entry as stored: `[term, idf, [weight per category]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TermEntry(pub String, pub f32, pub Vec<f32>);

/// The model file, exactly as serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelFile {
    pub format: String,
    pub format_version: u32,
    pub features: FeatureSettings,
    pub training: TrainingInfo,
    pub categories: Vec<String>,
    /// Margins are divided by this before the softmax (temperature scaling).
    pub temperature: f32,
    pub intercepts: Vec<f32>,
    pub vocabulary: Vec<TermEntry>,
}

/// The check every model file starts with: its format name and version must be the ones this
/// build reads. The message names both, so an operator knows to retrain or upgrade.
pub(crate) fn check_format(
    format: &str,
    version: u32,
    expected_format: &str,
    expected_version: u32,
) -> Result<(), String> {
    if format != expected_format {
        return Err(format!(
            "format is {format:?}, expected {expected_format:?}"
        ));
    }
    if version != expected_version {
        return Err(format!(
            "format_version is {version}, this build reads {expected_version}"
        ));
    }
    Ok(())
}

pub struct CategoryModel {
    categories: Vec<String>,
    intercepts: Vec<f32>,
    vectorizer: Vectorizer,
    /// Term-major weights: `weights[column * k + class]`, so one feature's weights are adjacent.
    weights: Vec<f32>,
    /// Divides the margins before the softmax; fitted on out-of-fold predictions.
    temperature: f32,
    training: TrainingInfo,
}

impl CategoryModel {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Load {
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_MODEL_BYTES {
            return Err(err(format!(
                "file is {} bytes, more than the {MAX_MODEL_BYTES} accepted",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses a model from its file content; `source` names it in errors (a path, or "embedded
    /// models/category.json" for the copy built into the binary).
    pub fn from_slice(bytes: &[u8], source: &str) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Load {
            path: source.to_string(),
            message,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| err(format!("not a valid model file: {e}")))?;
        // Format and version first: a file of another version fails on some renamed field, and
        // "retrain" is the useful message, not the field's name.
        let format = value.get("format").and_then(|v| v.as_str());
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if format == Some(FORMAT_NAME) && version != Some(u64::from(FORMAT_VERSION)) {
            return Err(err(format!(
                "format_version is {}, this build reads {FORMAT_VERSION}; retrain the model",
                version.map_or("absent".to_string(), |v| v.to_string())
            )));
        }
        let file: ModelFile = serde_json::from_value(value)
            .map_err(|e| err(format!("not a valid model file: {e}")))?;
        Self::from_file(file).map_err(err)
    }

    /// Validates a parsed file; the error text names the offending part.
    pub(crate) fn from_file(file: ModelFile) -> Result<Self, String> {
        check_format(
            &file.format,
            file.format_version,
            FORMAT_NAME,
            FORMAT_VERSION,
        )?;
        let current = FeatureSettings::current();
        if file.features != current {
            return Err(format!(
                "feature settings differ from this build's (model vs code): {}; retrain the model",
                file.features.differences(&current).join(", ")
            ));
        }
        let k = file.categories.len();
        if k < 2 {
            return Err(format!("{k} categories, need at least 2"));
        }
        let mut sorted = file.categories.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != k {
            return Err("categories are not distinct".into());
        }
        if !(file.temperature.is_finite() && file.temperature > 0.0) {
            return Err(format!("temperature {} not positive", file.temperature));
        }
        if file.intercepts.len() != k || file.intercepts.iter().any(|v| !v.is_finite()) {
            return Err(format!("intercepts: expected {k} finite numbers"));
        }
        let mut terms = Vec::with_capacity(file.vocabulary.len());
        let mut weights = Vec::with_capacity(file.vocabulary.len() * k);
        for (i, TermEntry(term, idf, w)) in file.vocabulary.into_iter().enumerate() {
            if w.len() != k || w.iter().any(|v| !v.is_finite()) {
                return Err(format!(
                    "vocabulary entry {i} ({term:?}): expected {k} finite weights"
                ));
            }
            if !(idf.is_finite() && idf > 0.0) {
                return Err(format!(
                    "vocabulary entry {i} ({term:?}): idf {idf} not positive"
                ));
            }
            weights.extend_from_slice(&w);
            terms.push((term, idf));
        }
        let vectorizer = Vectorizer::new(file.features, &terms).map_err(|e| e.to_string())?;
        Ok(CategoryModel {
            categories: file.categories,
            intercepts: file.intercepts,
            vectorizer,
            weights,
            temperature: file.temperature,
            training: file.training,
        })
    }

    /// Classify a text from its content tokens (as produced by `text::segment`).
    pub fn predict<T: AsRef<str>>(&self, tokens: &[T]) -> CategoryPrediction {
        let (best, confidence) = self.predict_index(tokens);
        CategoryPrediction {
            category: self.categories[best].clone(),
            confidence,
        }
    }

    /// [`Self::predict`] from the margins [`Self::margins`] would give.
    fn prediction_of_margins(&self, mut z: Vec<f32>) -> CategoryPrediction {
        self.calibrate(&mut z);
        let (best, confidence) = argmax(&z);
        CategoryPrediction {
            category: self.categories[best].clone(),
            confidence,
        }
    }

    /// This model as a member of the classify stage's joint plan; `None` without a token plan.
    fn joint_member(&self) -> Option<inference::Member<'_>> {
        let table = inference::Table::new(&self.intercepts, self.vectorizer.idf(), &self.weights)?;
        Some(inference::Member::single(
            self.vectorizer.plan()?,
            table,
            self.vectorizer.settings().sublinear_tf,
        ))
    }

    /// Probability of every category, in [`Self::categories`] order; sums to 1. With no known
    /// term (or no tokens) this is the softmax of the intercepts: the training prior, low
    /// confidence.
    pub fn predict_scores<T: AsRef<str>>(&self, tokens: &[T]) -> Vec<f32> {
        let mut z = self.margins(tokens);
        self.calibrate(&mut z);
        z
    }

    /// Raw per-category margins (before temperature and softmax): what cross-validation pools
    /// to fit the temperature.
    pub(crate) fn margins<T: AsRef<str>>(&self, tokens: &[T]) -> Vec<f32> {
        let x = self.vectorizer.vectorize(tokens);
        self.linear(&x)
    }

    /// [`Self::margins`] through the reference vectorizer alone, for the equality tests.
    #[cfg(test)]
    pub(crate) fn margins_reference<T: AsRef<str>>(&self, tokens: &[T]) -> Vec<f32> {
        self.linear(&self.vectorizer.vectorize_reference(tokens))
    }

    /// Whether the vectorizer takes its token plan for this document.
    #[cfg(test)]
    pub(crate) fn plan_applies<T: AsRef<str>>(&self, tokens: &[T]) -> bool {
        self.vectorizer.plan_applies(tokens)
    }

    /// Margins → probabilities, in place.
    pub(crate) fn calibrate(&self, z: &mut [f32]) {
        calibrate(z, self.temperature);
    }

    /// Index of the best category and its probability.
    pub(crate) fn predict_index<T: AsRef<str>>(&self, tokens: &[T]) -> (usize, f32) {
        let scores = self.predict_scores(tokens);
        argmax(&scores)
    }

    fn linear(&self, x: &SparseVector) -> Vec<f32> {
        let k = self.categories.len();
        let mut z = self.intercepts.clone();
        for (&column, &value) in x.indices.iter().zip(&x.values) {
            let start = column as usize * k;
            for (zc, w) in z.iter_mut().zip(&self.weights[start..start + k]) {
                *zc += value * w;
            }
        }
        z
    }

    /// The category names the model knows.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// Provenance and cross-validation figures recorded at training time.
    pub fn training_info(&self) -> &TrainingInfo {
        &self.training
    }

    /// Number of vocabulary terms.
    pub fn vocabulary_len(&self) -> usize {
        self.vectorizer.len()
    }
}

/// The three models of the classify stage, scored together by [`Self::classify`].
#[derive(Clone, Copy)]
pub struct Classifiers<'a> {
    pub category: &'a CategoryModel,
    pub sentiment: &'a SentimentModel,
    pub relevance: &'a RelevanceModel,
}

/// What the classify stage gives for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub category: CategoryPrediction,
    pub sentiment: SentimentPrediction,
    /// Relevance of a social post; `None` for the other channels, which are not scored.
    pub relevance: Option<f32>,
}

impl Classifiers<'_> {
    /// Category, emotion/sentiment and (when `social`) relevance of one segmented event:
    /// exactly what `category.predict(&tokens)`, `sentiment.predict(..)` on the stream it
    /// reads and `relevance.relevance(&tokens)` give, bit for bit. The event's tokens are
    /// resolved once for all models through the joint plan of [`inference::JointPlan`]; a
    /// model whose input the plan declines is scored by its own path.
    pub fn classify(&self, segmented: &Segmented<'_>, social: bool) -> Classification {
        match self.sentiment.tokens() {
            Tokens::Words => self.classify_streams(&segmented.tokens, &segmented.words, social),
            Tokens::Content => self.classify_streams(&segmented.tokens, &segmented.tokens, social),
        }
    }

    /// [`Self::classify`] on the content tokens and the stream the sentiment model reads.
    fn classify_streams<C: AsRef<str>, S: AsRef<str>>(
        &self,
        content: &[C],
        for_sentiment: &[S],
        social: bool,
    ) -> Classification {
        let joint = self.joint_scores(content, for_sentiment, social);
        let category = match joint.category {
            Some(z) => self.category.prediction_of_margins(z),
            None => self.category.predict(content),
        };
        let sentiment = match joint.sentiment {
            Some((emotions, polarity)) => self.sentiment.prediction(&emotions, &polarity),
            // The joint plan declined the event (a token too long to cache, a full cache).
            None => self.sentiment.predict(for_sentiment),
        };
        let relevance = social.then(|| match joint.relevance {
            Some(p) => p[1],
            None => self.relevance.relevance(content),
        });
        Classification {
            category,
            sentiment,
            relevance,
        }
    }

    pub(crate) fn joint_scores<C: AsRef<str>, S: AsRef<str>>(
        &self,
        content: &[C],
        for_sentiment: &[S],
        social: bool,
    ) -> inference::JointScores {
        let ids = (
            self.category.vectorizer.plan().map(|p| p.id()),
            self.sentiment.plan_id(),
            self.relevance.plan_id(),
        );
        let (Some(category), Some(sentiment), Some(relevance)) = ids else {
            return Default::default();
        };
        let build = || {
            inference::joint_plan([
                self.category.joint_member()?,
                self.sentiment.joint_member()?,
                self.relevance.joint_member()?,
            ])
        };
        let mut wanted = [true; 4];
        wanted[inference::RELEVANCE] = social;
        inference::JointPlan::scores(
            [category, sentiment, relevance],
            build,
            content,
            for_sentiment,
            wanted,
        )
        .unwrap_or_default()
    }
}

/// Index and value of the largest score; ties go to the first (stable across runs).
pub(crate) fn argmax(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
}

/// Softmax of `z / temperature`, in place.
pub(crate) fn calibrate(z: &mut [f32], temperature: f32) {
    for v in z.iter_mut() {
        *v /= temperature;
    }
    softmax(z);
}

/// In-place softmax, shifted by the maximum so that large scores cannot overflow.
fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_file() -> ModelFile {
        ModelFile {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            features: FeatureSettings::current(),
            training: TrainingInfo {
                data_file: "x.tsv".into(),
                data_sha256: String::new(),
                rows: 0,
                seed: 0,
                folds: 0,
                classifier: "test".into(),
                alpha: 1.0,
                max_iterations: 1,
                gradient_tolerance: 1e-3,
                trained_at: String::new(),
                cv: None,
            },
            categories: vec!["环境保护".into(), "交通运输".into()],
            temperature: 1.0,
            intercepts: vec![0.1, -0.1],
            vocabulary: vec![
                TermEntry("w:噪音".into(), 2.0, vec![3.0, -3.0]),
                TermEntry("w:公交".into(), 2.0, vec![-3.0, 3.0]),
            ],
        }
    }

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn predicts_by_sparse_dot_product() {
        let m = CategoryModel::from_file(tiny_file()).expect("valid model");
        assert_eq!(m.predict(&toks("噪音 扰民")).category, "环境保护");
        assert_eq!(m.predict(&toks("公交 晚点")).category, "交通运输");
        let scores = m.predict_scores(&toks("公交"));
        assert!((scores.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn empty_tokens_give_the_prior() {
        let m = CategoryModel::from_file(tiny_file()).expect("valid model");
        let p = m.predict::<&str>(&[]);
        assert_eq!(p.category, "环境保护");
        let expected = 1.0 / (1.0 + (-0.2f32).exp());
        assert!((p.confidence - expected).abs() < 1e-6);
    }

    #[test]
    fn wrong_weight_count_is_refused() {
        let mut f = tiny_file();
        f.vocabulary[1].2.pop();
        let err = CategoryModel::from_file(f).err().expect("must fail");
        assert!(err.contains("vocabulary entry 1"), "{err}");
    }

    #[test]
    fn non_finite_weight_is_refused() {
        let mut f = tiny_file();
        f.intercepts[0] = f32::NAN;
        assert!(CategoryModel::from_file(f).is_err());
    }

    #[test]
    fn temperature_softens_confidence_without_changing_the_answer() {
        let sharp = CategoryModel::from_file(tiny_file()).expect("valid model");
        let mut f = tiny_file();
        f.temperature = 4.0;
        let soft = CategoryModel::from_file(f).expect("valid model");
        let (a, b) = (sharp.predict(&toks("噪音")), soft.predict(&toks("噪音")));
        assert_eq!(a.category, b.category);
        assert!(
            b.confidence < a.confidence && b.confidence > 0.5,
            "{a:?} {b:?}"
        );
    }

    #[test]
    fn non_positive_temperature_is_refused() {
        let mut f = tiny_file();
        f.temperature = 0.0;
        let err = CategoryModel::from_file(f).err().expect("must fail");
        assert!(err.contains("temperature"), "{err}");
    }

    #[test]
    fn softmax_survives_huge_scores() {
        let mut z = vec![1e30, 0.0];
        softmax(&mut z);
        assert_eq!(z, vec![1.0, 0.0]);
    }
}
