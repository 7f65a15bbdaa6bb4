//! The one processing path: decode → mask → segment → classify → route, free of I/O.
//!
//! Shared by `run` (records from Kafka, in `pipeline.rs`) and `process` (lines from a file, in
//! `process.rs`), so both give the same event for the same bytes. A record comes in as bytes
//! with its channel; an [`Outcome`] comes out, which the caller turns into output messages.

use crate::channels::{self, Decoded};
use crate::event::{Channel, Event, Record, Route, SourceRef, SCHEMA_VERSION};
use crate::metrics::{Metrics, Stage};
use crate::model::relevance::RelevanceModel;
use crate::model::sentiment::SentimentModel;
use crate::model::{CategoryModel, Classifiers};
use crate::priority::{priority, PriorityFacts};
use crate::route::{RouteDecision, Router};
use crate::text::emoticons::strip_emoticons;
use crate::text::mask::{AuthorHasher, PiiMasker};
use crate::text::segment::Segmenter;
use crate::text::tokens::TokenList;
use chrono::{DateTime, FixedOffset};
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// What became of one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A citizen report, routed or triaged (see `event.route`), with its content tokens for
    /// detection downstream.
    Event {
        event: Box<Event>,
        tokens: TokenList,
    },
    /// Not a citizen report (a WeChat event push …): counted, not published.
    Skipped { reason: String },
    /// Bad input: the original bytes go to the dead-letter topic with this reason.
    DeadLetter(DeadLetter),
}

/// Why a record went to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Short code from a fixed set (`invalid_json`, `missing_field`, …, `internal_error`).
    pub reason: &'static str,
    /// Full message naming the problem.
    pub message: String,
}

/// Everything the stages need, loaded once at start-up and shared read-only by all workers.
pub struct Stages {
    pub masker: PiiMasker,
    pub hasher: AuthorHasher,
    pub segmenter: Segmenter,
    pub model: CategoryModel,
    pub sentiment: SentimentModel,
    pub relevance: RelevanceModel,
    pub relevance_threshold: f32,
    pub ignored_department: String,
    pub router: Router,
    pub max_keywords: usize,
    pub metrics: Metrics,
}

impl Stages {
    /// Run one record through every stage.
    ///
    /// Never panics: a panic inside a stage (a bug that some input triggers) is caught and the
    /// record dead-lettered as `internal_error`, so one poison record cannot crash-loop the
    /// pipeline.
    pub fn process(
        &self,
        channel: Channel,
        bytes: &[u8],
        source: Option<SourceRef>,
        received_at: DateTime<FixedOffset>,
    ) -> Outcome {
        self.metrics.channel(channel).events_in.inc();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.process_unguarded(channel, bytes, source, received_at)
        }))
        .unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%channel, %detail, "a stage panicked; record dead-lettered");
            Outcome::DeadLetter(DeadLetter {
                reason: "internal_error",
                message: format!("internal error while processing: {detail}"),
            })
        });
        self.count(channel, &outcome);
        outcome
    }

    fn process_unguarded(
        &self,
        channel: Channel,
        bytes: &[u8],
        source: Option<SourceRef>,
        received_at: DateTime<FixedOffset>,
    ) -> Outcome {
        let started = Instant::now();
        let decoded = channels::decode(channel, bytes);
        let mut lap = self.lap(Stage::Decode, started);
        let record = match decoded {
            Ok(Decoded::Report(record)) => record,
            Ok(Decoded::Skipped { reason }) => return Outcome::Skipped { reason },
            Err(error) => {
                return Outcome::DeadLetter(DeadLetter {
                    reason: error.reason_code(),
                    message: error.to_string(),
                })
            }
        };
        let masked = self.mask(record);
        lap = self.lap(Stage::Mask, lap);

        let mut joined = String::new();
        let for_models = model_text(masked.title.as_deref(), &masked.text, &mut joined);
        // One cut serves every model: content tokens for category and relevance, the words
        // with stop words kept for sentiment when its model was trained on those.
        let segmented = self.segmenter.segment(&for_models, self.max_keywords);
        // The tokens borrow the text, which moves into the event below: detection gets them
        // copied into one buffer.
        let tokens = TokenList::of(&segmented.tokens);
        lap = self.lap(Stage::Segment, lap);

        // All models at once: the event's tokens are looked up once for every model.
        let classified = self.classifiers().classify(&segmented, channel.is_social());
        let (prediction, feeling) = (classified.category, classified.sentiment);
        // Hotline and 110 records are reports by definition; only social posts are scored.
        let relevance = classified.relevance.unwrap_or(1.0);
        lap = self.lap(Stage::Classify, lap);
        let keywords = segmented.keywords;

        let decision = if relevance < self.relevance_threshold {
            RouteDecision {
                department: self.ignored_department.clone(),
                route: Route::Ignored,
            }
        } else {
            self.router.decide(
                channel,
                masked.district.as_deref(),
                &prediction.category,
                prediction.confidence,
            )
        };
        let event = Event {
            schema_version: SCHEMA_VERSION,
            id: format!("{}:{}", channel.as_str(), masked.native_id),
            channel,
            received_at,
            occurred_at: masked.occurred_at,
            priority: priority(&PriorityFacts {
                channel,
                report_kind: masked.report_kind.as_deref(),
                category: &prediction.category,
                emotion: Some(feeling.emotion.as_str()),
                engagement: masked.engagement,
                text: &masked.text,
            }),
            title: masked.title,
            text: masked.text,
            context: masked.context,
            district: masked.district,
            address: masked.address,
            coordinates: masked.coordinates,
            author_hash: masked.author_hash,
            report_kind: masked.report_kind,
            engagement: masked.engagement,
            keywords,
            emotion: feeling.emotion.as_str().to_string(),
            sentiment: feeling.sentiment,
            relevance,
            category: prediction.category,
            category_confidence: prediction.confidence,
            department: decision.department,
            route: decision.route,
            source,
            incident_id: None,
        };
        self.lap(Stage::Route, lap);
        Outcome::Event {
            event: Box::new(event),
            tokens,
        }
    }

    /// An event's content tokens as [`Stages::process`] gave them to detection, cut again from
    /// the event's (masked) title and text: inline detection rebuilds its state from output
    /// events, which do not carry their tokens.
    pub fn detection_tokens(&self, title: Option<&str>, text: &str) -> TokenList {
        let mut joined = String::new();
        let for_models = model_text(title, text, &mut joined);
        TokenList::of(&self.segmenter.segment(&for_models, 0).tokens)
    }

    /// The models of the classify stage, to be scored together.
    pub fn classifiers(&self) -> Classifiers<'_> {
        Classifiers {
            category: &self.model,
            sentiment: &self.sentiment,
            relevance: &self.relevance,
        }
    }

    /// Mask every free-text field and replace the author identifier by its keyed hash.
    fn mask(&self, record: Record) -> MaskedRecord {
        let social = record.channel.is_social();
        // Most texts hold nothing to mask: they are then moved on as they are, not copied.
        let mask_text = |text: String| {
            let masked = match self.masker.mask_cow(&text) {
                Cow::Owned(masked) => Some(masked),
                Cow::Borrowed(_) => None,
            };
            let masked = masked.unwrap_or(text);
            // Mentions start with '@'; without one, masking them would only copy the text.
            if social && masked.contains('@') {
                self.masker.mask_mentions(&masked)
            } else {
                masked
            }
        };
        MaskedRecord {
            author_hash: record
                .author
                .as_deref()
                .map(|author| self.hasher.hash(record.channel, author)),
            title: record.title.map(mask_text),
            text: mask_text(record.text),
            context: record.context.map(mask_text),
            address: record.address.map(mask_text),
            native_id: record.native_id,
            occurred_at: record.occurred_at,
            district: record.district,
            coordinates: record.coordinates,
            report_kind: record.report_kind,
            engagement: record.engagement,
        }
    }

    fn lap(&self, stage: Stage, since: Instant) -> Instant {
        let now = Instant::now();
        self.metrics
            .observe_stage(stage, now.duration_since(since).as_secs_f64());
        now
    }

    fn count(&self, channel: Channel, outcome: &Outcome) {
        let metrics = &self.metrics;
        let series = metrics.channel(channel);
        if let Outcome::Event { event, .. } = outcome {
            match series.emotion(&event.emotion) {
                Some(counter) => counter.inc(),
                None => metrics
                    .emotions
                    .with_label_values(&[channel.as_str(), event.emotion.as_str()])
                    .inc(),
            }
            series.sentiment.observe(f64::from(event.sentiment));
            metrics
                .events_by_district
                .with_label_values(&[Metrics::district_label(event.district.as_deref())])
                .inc();
            metrics
                .category_confidence_of(event.route)
                .observe(f64::from(event.category_confidence));
        }
        match outcome {
            Outcome::Event { event, .. } => match event.route {
                Route::Routed => metrics
                    .routed
                    .with_label_values(&[event.department.as_str(), event.category.as_str()])
                    .inc(),
                Route::Triage => series.triaged.inc(),
                Route::Ignored => series.ignored.inc(),
            },
            Outcome::Skipped { .. } => series.skipped.inc(),
            Outcome::DeadLetter(dead) => metrics
                .dead_letters
                .with_label_values(&[channel.as_str(), dead.reason])
                .inc(),
        }
    }
}

/// What the models read of a record: title and text together (a 12345 title often names the
/// problem more plainly), with Weibo emoticons ([怒] …) dropped, as the models were trained
/// without them. `joined` holds the joined text when there is a title.
fn model_text<'a>(title: Option<&str>, text: &'a str, joined: &'a mut String) -> Cow<'a, str> {
    match title {
        Some(title) => {
            *joined = format!("{title}。{text}");
            strip_emoticons(joined)
        }
        None => strip_emoticons(text),
    }
}

/// A record after masking: the raw author is gone, replaced by its hash.
struct MaskedRecord {
    native_id: String,
    occurred_at: DateTime<FixedOffset>,
    title: Option<String>,
    text: String,
    context: Option<String>,
    district: Option<String>,
    address: Option<String>,
    coordinates: Option<crate::event::Coordinates>,
    author_hash: Option<String>,
    report_kind: Option<String>,
    engagement: Option<crate::event::Engagement>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;
    use crate::demo::generator::{GeneratorConfig, TrafficGenerator};
    use chrono::TimeZone;

    /// Inline detection's rebuild cuts an output event's text again: it must give detection
    /// exactly the tokens `process` gave it, on every channel (titles, emoticons, masked
    /// numbers included).
    #[test]
    fn detection_tokens_of_an_event_are_the_tokens_process_gave_detection() {
        let stages = crate::assets::load_stages(
            &PipelineConfig::default(),
            AuthorHasher::new(b"stages-test-key-0123456789"),
            Metrics::new(),
        )
        .expect("embedded assets load");
        let mut generator = TrafficGenerator::new(GeneratorConfig {
            malformed_share: 0.0,
            ..GeneratorConfig::default()
        });
        let at = FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .unwrap();
        let mut compared = [0usize; 4];
        let mut titled = 0;
        for _ in 0..400 {
            let record = generator.next_record(at);
            let Outcome::Event { event, tokens } =
                stages.process(record.channel, &record.bytes, None, at)
            else {
                continue;
            };
            let again = stages.detection_tokens(event.title.as_deref(), &event.text);
            assert_eq!(again, tokens, "{}", event.id);
            compared[Channel::ALL
                .iter()
                .position(|c| *c == event.channel)
                .unwrap()] += 1;
            titled += usize::from(event.title.is_some());
        }
        assert!(
            compared.iter().all(|&n| n > 0),
            "every channel: {compared:?}"
        );
        assert!(titled > 0, "events with a title among them");
    }
}
