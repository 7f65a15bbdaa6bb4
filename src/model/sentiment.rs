//! Emotion and sentiment of social posts: which of six emotions a Weibo or WeChat text shows,
//! and a sentiment score in [-1, 1].
//!
//! Runs on every event after segmentation (the caller strips Weibo emoticons with
//! [`crate::text::emoticons::strip_emoticons`] before segmenting, as training did). One model
//! file holds two linear heads over the same feature code ([`super::linear`]): a six-class
//! emotion head fitted on SMP2020-EWECT and a positive/negative polarity head fitted on
//! weibo_senti_100k. The term keys are computed once and looked up by both heads.
//!
//! The sentiment score is `(2·P(positive) − 1) · (1 − 0.8·P(neutral))`: its sign is the polarity
//! head's decision; the emotion head only shrinks it towards 0 when the text reads as neutral
//! (a factor in (0, 1], so the sign never changes).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::inference::FusedHeads;
use super::linear::{
    self, ClassReport, Corpus, DataSource, FitOptions, Head, HeadFile, TextFeatures,
    MAX_MODEL_BYTES, TEXT_FEATURE_VERSION,
};
use super::ModelError;
use crate::text::emoticons::strip_emoticons;
use crate::text::segment::Segmenter;

const FORMAT_NAME: &str = "citypulse-sentiment-model";
/// Bumped when the file layout changes (independently of the feature version).
pub const FORMAT_VERSION: u32 = 1;
/// Training files larger than this are refused (the real ones are ~2 MB).
const MAX_DATA_BYTES: u64 = 256 * 1024 * 1024;

/// The six emotions of SMP2020-EWECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Happy,
    Angry,
    Sad,
    Fear,
    Surprise,
    Neutral,
}

impl Emotion {
    /// Column order of the emotion head.
    pub const ALL: [Emotion; 6] = [
        Emotion::Happy,
        Emotion::Angry,
        Emotion::Sad,
        Emotion::Fear,
        Emotion::Surprise,
        Emotion::Neutral,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Emotion::Happy => "happy",
            Emotion::Angry => "angry",
            Emotion::Sad => "sad",
            Emotion::Fear => "fear",
            Emotion::Surprise => "surprise",
            Emotion::Neutral => "neutral",
        }
    }

    /// Parses a label; `neural` is SMP2020-EWECT's spelling of neutral.
    pub fn parse(label: &str) -> Option<Emotion> {
        match label {
            "neural" => Some(Emotion::Neutral),
            _ => Emotion::ALL.into_iter().find(|e| e.as_str() == label),
        }
    }
}

impl fmt::Display for Emotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentimentPrediction {
    pub emotion: Emotion,
    /// Probability of `emotion`.
    pub emotion_confidence: f32,
    /// In [-1, 1]; negative for negative polarity, near 0 for neutral text.
    pub sentiment: f32,
}

/// The model file, exactly as serialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SentimentFile {
    format: String,
    format_version: u32,
    features: TextFeatures,
    /// [`TextFeatures::fingerprint`] at training time.
    feature_fingerprint: String,
    /// Which token stream the model reads (see [`Tokens`]).
    tokens: Tokens,
    /// RFC 3339, UTC.
    trained_at: String,
    emotion: HeadFile,
    polarity: HeadFile,
}

/// Which tokens of a text a model was trained on, hence must be given at inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokens {
    /// `Segmenter::segment(..).tokens` of the pipeline's segmenter: stop words removed.
    Content,
    /// The same cut with stop words kept (punctuation, digits and whitespace still dropped):
    /// what [`words_segmenter`] produces. Negations and particles (不, 没有, 吗, 啊, 怕 …) are
    /// stop words for routing but carry most of the sentiment of a short post.
    Words,
}

/// The pipeline's segmenter (user dictionary from `models`, or the embedded one) with no stop
/// words: its `segment(..).tokens` are the [`Tokens::Words`] stream.
pub fn words_segmenter(
    models: &crate::config::ModelsConfig,
) -> Result<Segmenter, crate::text::segment::SegmentError> {
    match &models.user_dict {
        Some(path) => {
            let dict = std::fs::File::open(path).map_err(|source| {
                crate::text::segment::SegmentError::Io {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Segmenter::from_readers(dict, &path.display().to_string(), &b""[..], "no stop words")
        }
        None => Segmenter::from_readers(
            crate::assets::USER_DICT,
            "embedded models/user_dict.txt",
            &b""[..],
            "no stop words",
        ),
    }
}

pub struct SentimentModel {
    features: TextFeatures,
    tokens: Tokens,
    /// Both heads behind one lookup per term: what [`Self::predict`] runs on. `emotion` and
    /// `polarity` stay for the single-head queries and as the reference the tests compare with.
    fused: FusedHeads,
    emotion: Head,
    /// Column of [`Emotion`] `i` in the emotion head.
    emotion_columns: [usize; 6],
    polarity: Head,
    /// Column of "positive" in the polarity head.
    positive: usize,
    trained_at: String,
}

impl fmt::Debug for SentimentModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentimentModel")
            .field("emotion_terms", &self.emotion.vocabulary_len())
            .field("polarity_terms", &self.polarity.vocabulary_len())
            .field("trained_at", &self.trained_at)
            .finish()
    }
}

/// The two polarity classes, in head order.
const POLARITY_CLASSES: [&str; 2] = ["negative", "positive"];

impl SentimentModel {
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
        let file: SentimentFile = serde_json::from_slice(bytes)
            .map_err(|e| err(format!("not a valid sentiment model file: {e}")))?;
        Self::from_file(file).map_err(err)
    }

    fn from_file(file: SentimentFile) -> Result<Self, String> {
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
        let emotion = Head::from_file(file.emotion.clone(), "emotion")?;
        let mut emotion_columns = [0usize; 6];
        for (i, e) in Emotion::ALL.iter().enumerate() {
            emotion_columns[i] = emotion
                .classes
                .iter()
                .position(|c| c == e.as_str())
                .ok_or_else(|| format!("emotion.classes lacks {:?}", e.as_str()))?;
        }
        if emotion.classes.len() != 6 {
            return Err(format!(
                "emotion.classes has {} entries, expected the 6 emotions",
                emotion.classes.len()
            ));
        }
        let polarity = Head::from_file(file.polarity.clone(), "polarity")?;
        if polarity.classes != POLARITY_CLASSES {
            return Err(format!(
                "polarity.classes is {:?}, expected {POLARITY_CLASSES:?}",
                polarity.classes
            ));
        }
        let fused = FusedHeads::new(
            &file.features,
            &[(&file.emotion, "emotion"), (&file.polarity, "polarity")],
        )?;
        Ok(SentimentModel {
            features: file.features,
            tokens: file.tokens,
            fused,
            emotion,
            emotion_columns,
            polarity,
            positive: 1,
            trained_at: file.trained_at,
        })
    }

    /// Which token stream [`Self::predict`] expects.
    pub fn tokens(&self) -> Tokens {
        self.tokens
    }

    /// The segmenter whose `segment(..).tokens` this model expects: `pipeline` itself for
    /// [`Tokens::Content`], [`words_segmenter`] for [`Tokens::Words`].
    pub fn segmenter_for(
        &self,
        models: &crate::config::ModelsConfig,
    ) -> Result<Option<Segmenter>, crate::text::segment::SegmentError> {
        match self.tokens {
            Tokens::Content => Ok(None),
            Tokens::Words => words_segmenter(models).map(Some),
        }
    }

    /// Emotion and sentiment of a text from its tokens (emoticons stripped before segmenting;
    /// the stream named by [`Self::tokens`]).
    pub fn predict<T: AsRef<str>>(&self, tokens: &[T]) -> SentimentPrediction {
        let heads = self
            .fused
            .probabilities_of_tokens(&self.features, tokens, false)
            .unwrap_or_else(|| {
                let mut keys = Vec::new();
                linear::term_keys(&self.features, tokens, &mut keys);
                self.fused.probabilities(&self.features, &keys)
            });
        self.prediction(&heads[0], &heads[1])
    }

    /// This model's heads as a member of the classify stage's joint plan.
    pub(crate) fn joint_member(&self) -> Option<super::inference::Member<'_>> {
        self.fused.member(&self.features)
    }

    /// Names the vocabulary of [`Self::joint_member`].
    pub(crate) fn plan_id(&self) -> Option<u64> {
        self.fused.plan_id()
    }

    /// Whether [`Self::predict`] takes the token plan for this document.
    #[cfg(test)]
    pub(crate) fn plan_applies<T: AsRef<str>>(&self, tokens: &[T]) -> bool {
        self.fused.plan_applies(tokens, false)
    }

    /// The prediction from the probabilities of the emotion and the polarity head.
    pub(crate) fn prediction(&self, emotions: &[f32], polarity: &[f32]) -> SentimentPrediction {
        let (best, emotion_confidence) = linear::argmax(emotions);
        let emotion = Emotion::ALL
            .into_iter()
            .zip(self.emotion_columns)
            .find(|&(_, c)| c == best)
            .map_or(Emotion::Neutral, |(e, _)| e);
        let p_positive = polarity[self.positive];
        let p_neutral = emotions[self.emotion_columns[5]];
        SentimentPrediction {
            emotion,
            emotion_confidence,
            sentiment: combine(p_positive, p_neutral),
        }
    }

    /// Probability of each emotion, in [`Emotion::ALL`] order.
    pub fn emotion_scores<T: AsRef<str>>(&self, tokens: &[T]) -> [f32; 6] {
        let mut keys = Vec::new();
        linear::term_keys(&self.features, tokens, &mut keys);
        let p = self.emotion.probabilities(&self.features, &keys);
        self.emotion_columns.map(|c| p[c])
    }

    /// Probability that the text is positive (polarity head alone).
    pub fn positive_probability<T: AsRef<str>>(&self, tokens: &[T]) -> f32 {
        let mut keys = Vec::new();
        linear::term_keys(&self.features, tokens, &mut keys);
        self.polarity.probabilities(&self.features, &keys)[self.positive]
    }

    /// Cross-validation figures recorded at training time: (emotion, polarity).
    pub fn cv_figures(&self) -> (Option<&linear::CvFigures>, Option<&linear::CvFigures>) {
        (
            self.emotion.training.cv.as_ref(),
            self.polarity.training.cv.as_ref(),
        )
    }
}

/// Sentiment score: the polarity head's signed confidence, shrunk towards 0 by the neutral
/// probability. The factor is in (0, 1] unless neutral is certain, so the sign is the polarity
/// head's decision.
fn combine(p_positive: f32, p_neutral: f32) -> f32 {
    let s = (2.0 * p_positive - 1.0) * (1.0 - 0.8 * p_neutral.clamp(0.0, 1.0));
    s.clamp(-1.0, 1.0)
}

/// One emotion-labelled post of the SMP2020-EWECT JSON.
#[derive(Debug, Deserialize)]
struct EwectRow {
    content: String,
    label: String,
}

/// Reads SMP2020-EWECT (`[{id, content, label}, …]`), emoticons stripped; an unknown label is
/// an error naming the element.
pub fn read_emotion_json(path: &Path) -> Result<Vec<(String, Emotion)>, ModelError> {
    let bytes = linear::read_bounded(path, MAX_DATA_BYTES)?;
    let rows: Vec<EwectRow> = serde_json::from_slice(&bytes).map_err(|e| ModelError::Data {
        path: path.display().to_string(),
        line: e.line(),
        message: format!("column {}: {e}", e.column()),
    })?;
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| {
            let emotion = Emotion::parse(&row.label).ok_or_else(|| ModelError::Data {
                path: path.display().to_string(),
                line: 0,
                message: format!("element {i}: unknown emotion label {:?}", row.label),
            })?;
            Ok((strip_emoticons(&row.content).into_owned(), emotion))
        })
        .collect()
}

/// Reads weibo_senti (`label<TAB>text`, 1 = positive, 0 = negative, optional header), emoticons
/// stripped. Returns (text, positive).
pub fn read_polarity_tsv(path: &Path) -> Result<Vec<(String, bool)>, ModelError> {
    let bytes = linear::read_bounded(path, MAX_DATA_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| ModelError::Data {
        path: path.display().to_string(),
        line: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (i == 0 && line.starts_with("label\t")) {
            continue;
        }
        let bad = |message: String| ModelError::Data {
            path: path.display().to_string(),
            line: i + 1,
            message,
        };
        let (label, body) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected label<TAB>text".into()))?;
        let positive = match label.trim() {
            "1" => true,
            "0" => false,
            other => return Err(bad(format!("label {other:?} is not 0 or 1"))),
        };
        rows.push((strip_emoticons(body).into_owned(), positive));
    }
    Ok(rows)
}

/// What to train on and how.
#[derive(Debug, Clone)]
pub struct SentimentTrainOptions {
    /// SMP2020-EWECT JSON.
    pub emotion_data: PathBuf,
    /// weibo_senti TSV.
    pub polarity_data: PathBuf,
    pub out: PathBuf,
    pub features: TextFeatures,
    pub fit: FitOptions,
    /// Token stream to train on.
    pub tokens: Tokens,
    /// Segmenter configuration; default = the embedded dictionary and stop words.
    pub models: crate::config::ModelsConfig,
}

impl SentimentTrainOptions {
    pub fn new(
        emotion_data: impl Into<PathBuf>,
        polarity_data: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
    ) -> Self {
        SentimentTrainOptions {
            emotion_data: emotion_data.into(),
            polarity_data: polarity_data.into(),
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
            tokens: Tokens::Words,
            models: Default::default(),
        }
    }
}

/// The feature settings the shipped sentiment model is trained with. No word bigrams: both heads
/// score the same without them (3-fold out-of-fold macro-F1, 2026-11-28: emotion 0.5302 against
/// 0.5296 with them, polarity 0.7077 against 0.7081), and at inference each adjacent pair cost
/// a hash lookup. Character unigrams stay: without them emotion fell to 0.512, polarity to 0.694.
pub fn default_features() -> TextFeatures {
    TextFeatures {
        version: TEXT_FEATURE_VERSION,
        word_unigrams: true,
        word_bigrams: false,
        char_ngram_min: 1,
        char_ngram_max: 2,
        max_chars: 2000,
        min_df: 2,
        max_features: 15000,
        sublinear_tf: true,
    }
}

/// Figures of a training run.
#[derive(Debug, Clone)]
pub struct SentimentTrainReport {
    pub emotion_rows: usize,
    pub polarity_rows: usize,
    /// Out-of-fold emotion figures (prior correction applied); `None` without folds.
    pub emotion_cv: Option<ClassReport>,
    /// Out-of-fold polarity figures of the sign of the sentiment score.
    pub polarity_cv: Option<ClassReport>,
    pub emotion_prior_shift: f32,
    pub polarity_prior_shift: f32,
    pub model_path: PathBuf,
    pub model_bytes: u64,
    pub elapsed: Duration,
}

impl fmt::Display for SentimentTrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.emotion_cv {
            writeln!(
                f,
                "emotion: {} rows, out-of-fold (prior shift {}):\n{r}",
                self.emotion_rows, self.emotion_prior_shift
            )?;
        }
        if let Some(r) = &self.polarity_cv {
            writeln!(
                f,
                "polarity: {} rows, out-of-fold sign of P(positive) (prior shift {}):\n{r}",
                self.polarity_rows, self.polarity_prior_shift
            )?;
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

/// Segments texts with `segmenter` (no keywords).
pub(crate) fn segment_all(segmenter: &Segmenter, texts: &[String]) -> Vec<Vec<String>> {
    texts
        .iter()
        .map(|t| segmenter.segment(t, 0).owned_tokens())
        .collect()
}

/// Trains both heads (cross-validated), writes the model file.
pub fn train_sentiment_model(
    opts: &SentimentTrainOptions,
) -> Result<SentimentTrainReport, ModelError> {
    let started = Instant::now();
    opts.features.validate().map_err(ModelError::Train)?;
    let segmenter = match opts.tokens {
        Tokens::Content => crate::assets::load_segmenter(&opts.models),
        Tokens::Words => words_segmenter(&opts.models),
    }
    .map_err(|e| ModelError::Train(format!("segmenter: {e}")))?;

    let emotion_rows = read_emotion_json(&opts.emotion_data)?;
    let emotion_bytes = linear::read_bounded(&opts.emotion_data, MAX_DATA_BYTES)?;
    let texts: Vec<String> = emotion_rows.iter().map(|(t, _)| t.clone()).collect();
    let docs: Vec<(Vec<String>, usize)> = segment_all(&segmenter, &texts)
        .into_iter()
        .zip(&emotion_rows)
        .map(|(tokens, (_, e))| (tokens, *e as usize))
        .collect();
    let emotion_classes: Vec<String> = Emotion::ALL.iter().map(|e| e.as_str().into()).collect();
    let corpus = Corpus::new(&opts.features, docs)?;
    let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
    let emotion = linear::cross_validate_and_fit(
        &opts.features,
        &corpus,
        &emotion_classes,
        &opts.fit,
        "emotion",
        &grid,
    )?;
    drop(corpus);

    let polarity_rows = read_polarity_tsv(&opts.polarity_data)?;
    let polarity_bytes = linear::read_bounded(&opts.polarity_data, MAX_DATA_BYTES)?;
    let texts: Vec<String> = polarity_rows.iter().map(|(t, _)| t.clone()).collect();
    let docs: Vec<(Vec<String>, usize)> = segment_all(&segmenter, &texts)
        .into_iter()
        .zip(&polarity_rows)
        .map(|(tokens, (_, positive))| (tokens, usize::from(*positive)))
        .collect();
    let polarity_classes: Vec<String> = POLARITY_CLASSES.iter().map(|c| c.to_string()).collect();
    let corpus = Corpus::new(&opts.features, docs)?;
    let polarity = linear::cross_validate_and_fit(
        &opts.features,
        &corpus,
        &polarity_classes,
        &opts.fit,
        "polarity",
        &[0.0, 0.5, 1.0],
    )?;

    let mut emotion_head = emotion.head;
    emotion_head.training.data = vec![DataSource::of(
        &opts.emotion_data,
        &emotion_bytes,
        emotion_rows.len(),
    )];
    let mut polarity_head = polarity.head;
    polarity_head.training.data = vec![DataSource::of(
        &opts.polarity_data,
        &polarity_bytes,
        polarity_rows.len(),
    )];
    let file = SentimentFile {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        feature_fingerprint: opts.features.fingerprint(),
        features: opts.features.clone(),
        tokens: opts.tokens,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        emotion: emotion_head.to_file(),
        polarity: polarity_head.to_file(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| ModelError::Save {
        path: opts.out.display().to_string(),
        message: e.to_string(),
    })?;
    linear::write_atomically(&opts.out, &bytes)?;
    Ok(SentimentTrainReport {
        emotion_rows: emotion_rows.len(),
        polarity_rows: polarity_rows.len(),
        emotion_prior_shift: emotion_head.training.prior_shift,
        polarity_prior_shift: polarity_head.training.prior_shift,
        emotion_cv: emotion.report,
        polarity_cv: polarity.report,
        model_path: opts.out.clone(),
        model_bytes: bytes.len() as u64,
        elapsed: started.elapsed(),
    })
}

/// `citypulse eval --task emotion`: the model on an SMP2020-EWECT JSON file, emoticons
/// stripped and segmented by `segmenter`, which must produce the model's token stream: the
/// pipeline's segmenter for [`Tokens::Content`], [`SentimentModel::segmenter_for`]'s for
/// [`Tokens::Words`].
pub fn evaluate_emotion_file(
    model: &SentimentModel,
    segmenter: &Segmenter,
    path: &Path,
) -> Result<ClassReport, ModelError> {
    let rows = read_emotion_json(path)?;
    let classes: Vec<String> = Emotion::ALL.iter().map(|e| e.as_str().into()).collect();
    let mut truth = Vec::with_capacity(rows.len());
    let mut predicted = Vec::with_capacity(rows.len());
    for (text, emotion) in &rows {
        let p = model.predict(&segmenter.segment(text, 0).tokens);
        truth.push(*emotion as usize);
        predicted.push((p.emotion as usize, p.emotion_confidence));
    }
    Ok(ClassReport::new(&classes, &truth, &predicted))
}

/// `citypulse eval --task polarity`: the sign of the sentiment score on a weibo_senti TSV,
/// emoticons stripped, segmented by `segmenter` (as for [`evaluate_emotion_file`]). The confidence of a prediction is `|sentiment|` mapped to [0.5, 1]
/// (that is, `max(P(positive), P(negative))` before the neutral shrinkage).
pub fn evaluate_polarity_file(
    model: &SentimentModel,
    segmenter: &Segmenter,
    path: &Path,
) -> Result<ClassReport, ModelError> {
    let rows = read_polarity_tsv(path)?;
    let classes: Vec<String> = POLARITY_CLASSES.iter().map(|c| c.to_string()).collect();
    let mut truth = Vec::with_capacity(rows.len());
    let mut predicted = Vec::with_capacity(rows.len());
    for (text, positive) in &rows {
        let tokens = segmenter.segment(text, 0).tokens;
        let p = model.positive_probability(&tokens);
        let sentiment = model.predict(&tokens).sentiment;
        truth.push(usize::from(*positive));
        predicted.push((usize::from(sentiment > 0.0), p.max(1.0 - p)));
    }
    Ok(ClassReport::new(&classes, &truth, &predicted))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused inference must give exactly what the two reference heads give: a faster path
    /// may not change an output.
    #[test]
    fn fused_inference_equals_the_reference_heads() {
        let model = crate::assets::load_sentiment_model(&Default::default())
            .expect("the embedded sentiment model loads");
        let segmenter = words_segmenter(&Default::default()).expect("embedded dictionary");
        let mut texts: Vec<String> = [
            "小区门口的路灯坏了三天，晚上很黑，请尽快维修",
            "今天天气真好和朋友去吃火锅，开心",
            "太可怕了，楼下着火了，不知道有没有人受伤",
            "早安",
            "",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.extend(crate::model::inference::shared_texts(400));
        for text in &texts {
            let stripped = strip_emoticons(text);
            let tokens = segmenter.segment(&stripped, 0).tokens;
            let fast = model.predict(&tokens);
            let mut keys = Vec::new();
            linear::term_keys(&model.features, &tokens, &mut keys);
            let emotions = model.emotion.probabilities(&model.features, &keys);
            let (best, confidence) = linear::argmax(&emotions);
            let positive = model.polarity.probabilities(&model.features, &keys)[model.positive];
            let neutral = emotions[model.emotion_columns[5]];
            assert_eq!(fast.emotion.as_str(), model.emotion.classes[best], "{text}");
            assert_eq!(
                fast.emotion_confidence.to_bits(),
                confidence.to_bits(),
                "{text}"
            );
            assert_eq!(
                fast.sentiment.to_bits(),
                combine(positive, neutral).to_bits(),
                "{text}"
            );
        }
    }

    #[test]
    fn neutral_label_spellings() {
        assert_eq!(Emotion::parse("neural"), Some(Emotion::Neutral));
        assert_eq!(Emotion::parse("neutral"), Some(Emotion::Neutral));
        assert_eq!(Emotion::parse("fear"), Some(Emotion::Fear));
        assert_eq!(Emotion::parse("joy"), None);
    }

    #[test]
    fn combine_keeps_sign_and_shrinks_neutral() {
        assert!(combine(0.9, 0.0) > 0.79);
        assert!(combine(0.1, 0.0) < -0.79);
        assert!(combine(0.9, 0.99).abs() < combine(0.9, 0.0).abs() / 2.0);
        assert!(combine(0.9, 1.0) > 0.0);
        assert!(combine(0.2, 1.0) < 0.0);
        assert_eq!(combine(0.5, 0.3), 0.0);
    }

    #[test]
    fn emotion_serialises_lowercase() {
        assert_eq!(
            serde_json::to_string(&Emotion::Surprise).ok().as_deref(),
            Some("\"surprise\"")
        );
    }
}
