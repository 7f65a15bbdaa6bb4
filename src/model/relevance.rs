//! Relevance of social posts: is a Weibo or WeChat message something a government department
//! should act on (a work order), or chatter, an advert, a greeting?
//!
//! Runs after segmentation on social events (hotline and 110 records are always relevant, the
//! caller decides that); an event scoring below [`RelevanceModel::DEFAULT_THRESHOLD`] is still
//! counted as public opinion but not routed. A binary linear head over the feature code of
//! [`super::linear`].
//!
//! There is no labelled relevance set, so training uses distant supervision: *relevant* are
//! citizen messages to a city government (the routing data, plus copies cut to their first few
//! tokens so that short posts are represented); *irrelevant* are general Weibo posts (the two
//! sentiment sets: mostly chatter, not requests). Cross-validation therefore measures how well
//! the model separates those sources; the hand-written set of `tests/sentiment.rs` checks it on
//! posts of the kind it will meet.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::inference::FusedHeads;
use super::linear::{
    self, ClassReport, Corpus, DataSource, FitOptions, Head, HeadFile, TextFeatures,
    MAX_MODEL_BYTES, TEXT_FEATURE_VERSION,
};
use super::sentiment::{read_emotion_json, read_polarity_tsv, segment_all};
use super::{read_raw_sample, read_segmented_tsv, ModelError};

const FORMAT_NAME: &str = "citypulse-relevance-model";
/// Bumped when the file layout changes.
pub const FORMAT_VERSION: u32 = 1;
const CLASSES: [&str; 2] = ["irrelevant", "relevant"];
/// Training files larger than this are refused (the real ones are at most ~6 MB).
const MAX_DATA_BYTES: u64 = 256 * 1024 * 1024;

/// The model file, exactly as serialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelevanceFile {
    format: String,
    format_version: u32,
    features: TextFeatures,
    feature_fingerprint: String,
    trained_at: String,
    relevance: HeadFile,
}

pub struct RelevanceModel {
    features: TextFeatures,
    /// The head behind the per-thread counting of [`FusedHeads`]: what inference runs on.
    fused: FusedHeads,
    /// The head as loaded: its figures, and the reference the tests compare `fused` with.
    head: Head,
    trained_at: String,
}

impl fmt::Debug for RelevanceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelevanceModel")
            .field("terms", &self.head.vocabulary_len())
            .field("trained_at", &self.trained_at)
            .finish()
    }
}

impl RelevanceModel {
    /// Below this score a social post is not routed to a department (see `models/README.md`).
    pub const DEFAULT_THRESHOLD: f32 = 0.3;

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = linear::read_bounded(path, MAX_MODEL_BYTES).map_err(|e| ModelError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses a model from its file content; `source` names it in errors.
    pub fn from_slice(bytes: &[u8], source: &str) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Load {
            path: source.to_string(),
            message,
        };
        let file: RelevanceFile = serde_json::from_slice(bytes)
            .map_err(|e| err(format!("not a valid relevance model file: {e}")))?;
        Self::from_file(file).map_err(err)
    }

    fn from_file(file: RelevanceFile) -> Result<Self, String> {
        super::check_format(
            &file.format,
            file.format_version,
            FORMAT_NAME,
            FORMAT_VERSION,
        )?;
        file.features.validate()?;
        let fingerprint = file.features.fingerprint();
        if file.feature_fingerprint != fingerprint {
            return Err(format!(
                "feature_fingerprint is {}, this build's feature code gives {fingerprint}: \
                 features differ, retrain the model",
                file.feature_fingerprint
            ));
        }
        let head = Head::from_file(file.relevance.clone(), "relevance")?;
        let fused = FusedHeads::new(&file.features, &[(&file.relevance, "relevance")])?;
        if head.classes != CLASSES {
            return Err(format!(
                "relevance.classes is {:?}, expected {CLASSES:?}",
                head.classes
            ));
        }
        Ok(RelevanceModel {
            features: file.features,
            fused,
            head,
            trained_at: file.trained_at,
        })
    }

    /// Probability in [0, 1] that the post is a work order, from its content tokens
    /// (emoticons stripped before segmenting, as for the sentiment model).
    pub fn relevance<T: AsRef<str>>(&self, tokens: &[T]) -> f32 {
        if let Some(heads) = self
            .fused
            .probabilities_of_tokens(&self.features, tokens, true)
        {
            return heads[0][1];
        }
        let mut keys = Vec::new();
        // Copying the tokens only when some must go: most Chinese posts have no ASCII token.
        if tokens.iter().any(|t| t.as_ref().is_ascii()) {
            linear::term_keys(&self.features, &without_codes(tokens), &mut keys);
        } else {
            linear::term_keys(&self.features, tokens, &mut keys);
        }
        self.fused.probabilities(&self.features, &keys)[0][1]
    }

    /// This model's head as a member of the classify stage's joint plan.
    pub(crate) fn joint_member(&self) -> Option<super::inference::Member<'_>> {
        self.fused.member(&self.features)
    }

    /// Names the vocabulary of [`Self::joint_member`].
    pub(crate) fn plan_id(&self) -> Option<u64> {
        self.fused.plan_id()
    }

    /// The same score through the reference `Head::probabilities`, for the equality tests.
    #[cfg(test)]
    pub(crate) fn relevance_reference<T: AsRef<str>>(&self, tokens: &[T]) -> f32 {
        let tokens = without_codes(tokens);
        let mut keys = Vec::new();
        linear::term_keys(&self.features, &tokens, &mut keys);
        self.head.probabilities(&self.features, &keys)[1]
    }

    /// Whether [`Self::relevance`] takes the token plan for this document.
    #[cfg(test)]
    pub(crate) fn plan_applies<T: AsRef<str>>(&self, tokens: &[T]) -> bool {
        self.fused.plan_applies(tokens, true)
    }

    /// Cross-validation figures recorded at training time.
    pub fn cv_figures(&self) -> Option<&linear::CvFigures> {
        self.head.training.cv.as_ref()
    }
}

/// What to train on and how.
#[derive(Debug, Clone)]
pub struct RelevanceTrainOptions {
    /// Pre-segmented routing TSV (`label<TAB>tokens`): relevant.
    pub routing_segmented: PathBuf,
    /// Raw routing sample (`留言主题`, `留言详情` …): relevant.
    pub routing_raw: PathBuf,
    /// SMP2020-EWECT JSON: irrelevant.
    pub emotion_data: PathBuf,
    /// weibo_senti TSV: irrelevant.
    pub polarity_data: PathBuf,
    pub out: PathBuf,
    pub features: TextFeatures,
    pub fit: FitOptions,
    /// Each relevant message also enters as a copy cut to its first 4–15 tokens, so that the
    /// model sees short requests and does not learn "long = relevant".
    pub short_copies: bool,
    pub models: crate::config::ModelsConfig,
}

impl RelevanceTrainOptions {
    /// Paths of the four data files under `shared_data` (`…/shared/data`).
    pub fn new(shared_data: &Path, out: impl Into<PathBuf>) -> Self {
        RelevanceTrainOptions {
            routing_segmented: shared_data.join("routing/routing_train_segmented.tsv"),
            routing_raw: shared_data.join("routing/routing_sample_raw.tsv"),
            emotion_data: shared_data.join("sentiment/smp2020_ewect_train.json"),
            polarity_data: shared_data.join("sentiment/weibo_senti_train.tsv"),
            out: out.into(),
            features: default_features(),
            fit: FitOptions {
                folds: 5,
                seed: 42,
                alpha: 1.0,
                max_iterations: 50,
                threads: 0,
                quiet: false,
            },
            short_copies: true,
            models: Default::default(),
        }
    }
}

/// The feature settings the shipped relevance model is trained with.
pub fn default_features() -> TextFeatures {
    TextFeatures {
        version: TEXT_FEATURE_VERSION,
        word_unigrams: true,
        word_bigrams: false,
        char_ngram_min: 1,
        char_ngram_max: 2,
        max_chars: 2000,
        min_df: 3,
        max_features: 8000,
        sublinear_tf: true,
    }
}

/// Tokens without the all-ASCII ones: the routing data's anonymised place codes (`A3`, `B6`)
/// and Weibo handles would otherwise teach the model its sources, not relevance. Applied to
/// training and inference alike.
fn without_codes<T: AsRef<str>>(tokens: &[T]) -> Vec<String> {
    tokens
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| !t.is_ascii())
        .map(str::to_string)
        .collect()
}

/// Where a training row came from, for per-source figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    RoutingSegmented,
    RoutingShort,
    RoutingRaw,
    RoutingRawSubject,
    Emotion,
    Polarity,
}

impl Source {
    const ALL: [Source; 6] = [
        Source::RoutingSegmented,
        Source::RoutingShort,
        Source::RoutingRaw,
        Source::RoutingRawSubject,
        Source::Emotion,
        Source::Polarity,
    ];

    fn name(self) -> &'static str {
        match self {
            Source::RoutingSegmented => "routing, pre-segmented (relevant)",
            Source::RoutingShort => "routing, first 4-15 tokens (relevant)",
            Source::RoutingRaw => "routing raw sample, subject+body (relevant)",
            Source::RoutingRawSubject => "routing raw sample, subject only (relevant)",
            Source::Emotion => "SMP2020-EWECT Weibo (irrelevant)",
            Source::Polarity => "weibo_senti Weibo (irrelevant)",
        }
    }
}

/// Figures of a training run.
#[derive(Debug, Clone)]
pub struct RelevanceTrainReport {
    pub rows: usize,
    /// Out-of-fold figures at 0.5; `None` without folds.
    pub cv: Option<ClassReport>,
    /// Per source: (name, rows, share scored on the right side of the default threshold).
    pub per_source: Vec<(String, usize, f32)>,
    pub model_path: PathBuf,
    pub model_bytes: u64,
    pub elapsed: Duration,
}

impl fmt::Display for RelevanceTrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.cv {
            writeln!(f, "relevance: {} rows, out-of-fold:\n{r}", self.rows)?;
            writeln!(
                f,
                "out-of-fold share on the right side of {} by source:",
                RelevanceModel::DEFAULT_THRESHOLD
            )?;
            for (name, rows, right) in &self.per_source {
                writeln!(f, "  {name:<46} {rows:>6} rows  {right:.4}")?;
            }
        }
        writeln!(
            f,
            "model: {} ({} bytes), {:.1} s",
            self.model_path.display(),
            self.model_bytes,
            self.elapsed.as_secs_f32()
        )
    }
}

/// Trains the relevance head (cross-validated), writes the model file.
pub fn train_relevance_model(
    opts: &RelevanceTrainOptions,
) -> Result<RelevanceTrainReport, ModelError> {
    let started = Instant::now();
    opts.features.validate().map_err(ModelError::Train)?;
    let segmenter = crate::assets::load_segmenter(&opts.models)
        .map_err(|e| ModelError::Train(format!("segmenter: {e}")))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.fit.seed);
    // (tokens, class, group, source)
    let mut rows: Vec<(Vec<String>, usize, usize, Source)> = Vec::new();
    let mut next_group = 0usize;
    let mut sources = Vec::new();

    // The published rows were filtered by another stop-word list: apply ours too, so that
    // training sees what `Segmenter::segment` would keep.
    let segmented = read_segmented_tsv(&opts.routing_segmented)?;
    for doc in &segmented {
        let tokens: Vec<String> = doc
            .tokens
            .iter()
            .filter(|t| segmenter.is_content(t))
            .cloned()
            .collect();
        if tokens.is_empty() {
            continue;
        }
        if opts.short_copies {
            let m = rng.random_range(4..=15usize).min(tokens.len());
            rows.push((tokens[..m].to_vec(), 1, next_group, Source::RoutingShort));
        }
        rows.push((tokens, 1, next_group, Source::RoutingSegmented));
        next_group += 1;
    }
    sources.push(DataSource::of(
        &opts.routing_segmented,
        &linear::read_bounded(&opts.routing_segmented, MAX_DATA_BYTES)?,
        segmented.len(),
    ));

    let raw = read_raw_sample(&opts.routing_raw)?;
    for message in &raw {
        let subject = message.text.split('\n').next().unwrap_or_default();
        rows.push((
            segmenter.segment(&message.text, 0).owned_tokens(),
            1,
            next_group,
            Source::RoutingRaw,
        ));
        rows.push((
            segmenter.segment(subject, 0).owned_tokens(),
            1,
            next_group,
            Source::RoutingRawSubject,
        ));
        next_group += 1;
    }
    sources.push(DataSource::of(
        &opts.routing_raw,
        &linear::read_bounded(&opts.routing_raw, MAX_DATA_BYTES)?,
        raw.len(),
    ));

    let emotion: Vec<String> = read_emotion_json(&opts.emotion_data)?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let polarity: Vec<String> = read_polarity_tsv(&opts.polarity_data)?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    for (texts, source, path) in [
        (&emotion, Source::Emotion, &opts.emotion_data),
        (&polarity, Source::Polarity, &opts.polarity_data),
    ] {
        for tokens in segment_all(&segmenter, texts) {
            rows.push((tokens, 0, next_group, source));
            next_group += 1;
        }
        sources.push(DataSource::of(
            path,
            &linear::read_bounded(path, MAX_DATA_BYTES)?,
            texts.len(),
        ));
    }

    let row_sources: Vec<Source> = rows.iter().map(|r| r.3).collect();
    let groups: Vec<usize> = rows.iter().map(|r| r.2).collect();
    let n = rows.len();
    let corpus = Corpus::new(
        &opts.features,
        rows.into_iter()
            .map(|(t, c, _, _)| (without_codes(&t), c))
            .collect(),
    )?
    .with_groups(groups);
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    // No prior shift: the class balance here is an artefact of the data sources, not of the
    // stream; the threshold is the operator's knob.
    let fitted = linear::cross_validate_and_fit(
        &opts.features,
        &corpus,
        &classes,
        &opts.fit,
        "relevance",
        &[0.0],
    )?;
    let per_source = if fitted.oof.is_empty() {
        Vec::new()
    } else {
        Source::ALL
            .iter()
            .filter_map(|&s| {
                let members: Vec<usize> = (0..n).filter(|&i| row_sources[i] == s).collect();
                if members.is_empty() {
                    return None;
                }
                let right = members
                    .iter()
                    .filter(|&&i| {
                        let relevant = fitted.oof[i][1] >= RelevanceModel::DEFAULT_THRESHOLD;
                        relevant == (corpus.classes[i] == 1)
                    })
                    .count();
                Some((
                    s.name().to_string(),
                    members.len(),
                    right as f32 / members.len() as f32,
                ))
            })
            .collect()
    };
    let mut head = fitted.head;
    head.training.data = sources;
    let file = RelevanceFile {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        feature_fingerprint: opts.features.fingerprint(),
        features: opts.features.clone(),
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        relevance: head.to_file(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| ModelError::Save {
        path: opts.out.display().to_string(),
        message: e.to_string(),
    })?;
    linear::write_atomically(&opts.out, &bytes)?;
    Ok(RelevanceTrainReport {
        rows: n,
        cv: fitted.report,
        per_source,
        model_path: opts.out.clone(),
        model_bytes: bytes.len() as u64,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    /// The fused inference must give exactly the reference head's score: a faster path may not
    /// change an output.
    #[test]
    fn fused_inference_equals_the_reference_head() {
        let model = crate::assets::load_relevance_model(&Default::default())
            .expect("the embedded relevance model loads");
        let segmenter =
            crate::assets::load_segmenter(&Default::default()).expect("embedded segmenter");
        let mut texts: Vec<String> = [
            "小区门口的路灯坏了三天，晚上很黑，请尽快维修",
            "今天天气真好[哈哈]和朋友去吃火锅",
            "A3区西湖路占道经营严重，http://t.cn/A6vd7HC4 求管管",
            "早安",
            "",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.extend(crate::model::inference::shared_texts(400));
        for text in &texts {
            let tokens = segmenter.segment(text, 0).tokens;
            let fast = model.relevance(&tokens);
            let reference = model.relevance_reference(&tokens);
            assert_eq!(fast.to_bits(), reference.to_bits(), "{text}");
        }
    }
}
