//! The models and dictionaries: embedded copies in the binary, or files named in the pipeline.
//!
//! Loaded once at start-up by `run`, `demo` and `process`, before the stages are built. The
//! embedded copies are the files under `models/` at build time, so the binary works from any
//! directory with no files beside it; a pipeline file may name other files instead.

use crate::config::{ModelsConfig, PipelineConfig};
use crate::metrics::Metrics;
use crate::model::relevance::RelevanceModel;
use crate::model::sentiment::SentimentModel;
use crate::model::{CategoryModel, ModelError};
use crate::route::Router;
use crate::stages::Stages;
use crate::text::mask::{AuthorHasher, PiiMasker};
use crate::text::segment::{SegmentError, Segmenter};
use std::path::Path;

pub const CATEGORY_MODEL: &[u8] = include_bytes!("../models/category.json");
pub const SENTIMENT_MODEL: &[u8] = include_bytes!("../models/sentiment.json");
pub const RELEVANCE_MODEL: &[u8] = include_bytes!("../models/relevance.json");
pub const USER_DICT: &[u8] = include_bytes!("../models/user_dict.txt");
pub const STOPWORDS: &[u8] = include_bytes!("../models/stopwords.txt");

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(transparent)]
    Segmenter(#[from] SegmentError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("routing.rules name categories the model does not know: {0:?} (known: {1:?})")]
    UnknownRuleCategories(Vec<String>, Vec<String>),
}

/// jieba-rs with the domain dictionary and stop words.
pub fn load_segmenter(models: &ModelsConfig) -> Result<Segmenter, SegmentError> {
    match (&models.user_dict, &models.stopwords) {
        (None, None) => Segmenter::from_readers(
            USER_DICT,
            "embedded models/user_dict.txt",
            STOPWORDS,
            "embedded models/stopwords.txt",
        ),
        (dict, stopwords) => {
            let dict_label = dict.as_deref().map(Path::display);
            let stop_label = stopwords.as_deref().map(Path::display);
            let dict_bytes = read_or_embedded(dict.as_deref(), USER_DICT)?;
            let stop_bytes = read_or_embedded(stopwords.as_deref(), STOPWORDS)?;
            Segmenter::from_readers(
                dict_bytes.as_slice(),
                &dict_label.map_or("embedded models/user_dict.txt".into(), |p| p.to_string()),
                stop_bytes.as_slice(),
                &stop_label.map_or("embedded models/stopwords.txt".into(), |p| p.to_string()),
            )
        }
    }
}

fn read_or_embedded(path: Option<&Path>, embedded: &[u8]) -> Result<Vec<u8>, SegmentError> {
    match path {
        Some(path) => std::fs::read(path).map_err(|source| SegmentError::Io {
            path: path.display().to_string(),
            source,
        }),
        None => Ok(embedded.to_vec()),
    }
}

/// The category model named in the pipeline file, or the embedded one.
pub fn load_category_model(models: &ModelsConfig) -> Result<CategoryModel, ModelError> {
    match &models.category {
        Some(path) => CategoryModel::load(path),
        None => CategoryModel::from_slice(CATEGORY_MODEL, "embedded models/category.json"),
    }
}

/// The emotion and polarity model named in the pipeline file, or the embedded one.
pub fn load_sentiment_model(models: &ModelsConfig) -> Result<SentimentModel, ModelError> {
    match &models.sentiment {
        Some(path) => SentimentModel::load(path),
        None => SentimentModel::from_slice(SENTIMENT_MODEL, "embedded models/sentiment.json"),
    }
}

/// The relevance model named in the pipeline file, or the embedded one.
pub fn load_relevance_model(models: &ModelsConfig) -> Result<RelevanceModel, ModelError> {
    match &models.relevance {
        Some(path) => RelevanceModel::load(path),
        None => RelevanceModel::from_slice(RELEVANCE_MODEL, "embedded models/relevance.json"),
    }
}

/// Everything the stages need, from the pipeline file.
pub fn load_stages(
    config: &PipelineConfig,
    hasher: AuthorHasher,
    metrics: Metrics,
) -> Result<Stages, AssetError> {
    let segmenter = load_segmenter(&config.models)?;
    let model = load_category_model(&config.models)?;
    let sentiment = load_sentiment_model(&config.models)?;
    let relevance = load_relevance_model(&config.models)?;
    let recommended = model
        .training_info()
        .cv
        .as_ref()
        .and_then(|cv| cv.triage_threshold);
    let (threshold, source) = Router::threshold(&config.routing, recommended);
    tracing::info!(threshold = %threshold, ?source, "category triage threshold");
    let router = Router::new(&config.routing, recommended);
    let unknown: Vec<String> = config
        .routing
        .rules
        .iter()
        .filter(|rule| !model.categories().contains(&rule.category))
        .map(|rule| rule.category.clone())
        .collect();
    if !unknown.is_empty() {
        return Err(AssetError::UnknownRuleCategories(
            unknown,
            model.categories().to_vec(),
        ));
    }
    for category in router.uncovered_categories(model.categories()) {
        tracing::warn!(
            category,
            "no routing rule covers this category: its events go to triage"
        );
    }
    metrics.register_routes(&router.departments(), model.categories());
    Ok(Stages {
        masker: PiiMasker::new(),
        hasher,
        segmenter,
        model,
        sentiment,
        relevance,
        relevance_threshold: config.routing.relevance_threshold,
        ignored_department: config.routing.ignored_department.clone(),
        router,
        max_keywords: config.routing.max_keywords,
        metrics,
    })
}
