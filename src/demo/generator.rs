//! Deterministic citizen traffic in the real wire formats of the four channels, for
//! `citypulse demo` and the end-to-end tests.
//!
//! Sits in front of the whole flow: it produces the bytes a Kafka producer writes to `raw.weibo`,
//! `raw.wechat`, `raw.12345` and `raw.110`, labelled with what they are ([`RecordKind`]) so a
//! test can compare the pipeline's output with the truth. Everything is drawn from one seeded
//! RNG: the same seed and the same calls give the same bytes.
//!
//! The caller owns time and volume: [`TrafficGenerator::next_record`] takes the event time,
//! [`daily_rhythm`] gives a relative volume per hour, and [`TrafficGenerator::incident`] injects
//! a burst of near-duplicate reports about one thing in one district. The Chinese texts live in
//! `templates.rs`.

use super::templates::{self, IncidentTexts};
pub use super::templates::{District, DISTRICTS};
use crate::event::Channel;
use chrono::{DateTime, Duration, FixedOffset};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The seven first-level categories, in the order of [`GeneratorConfig::category_weights`].
pub const CATEGORIES: [&str; 7] = [
    "城乡建设",
    "环境保护",
    "交通运输",
    "教育文体",
    "劳动和社会保障",
    "商贸旅游",
    "卫生计生",
];

/// Ground-truth label of 110 calls about crime and danger (fights, theft, fire, someone
/// trapped), which belong to none of the seven categories. Evaluations of the category model
/// should leave these out.
pub const PUBLIC_SAFETY: &str = "公共安全";

/// What a generated record is, so tests can compare the pipeline's verdict with the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A citizen report. `category` is one of [`CATEGORIES`], or [`PUBLIC_SAFETY`].
    Report { category: &'static str },
    /// Weibo or WeChat talk that is no report (greetings, daily life, ads).
    Chatter,
    /// A WeChat `location` message: a place without words.
    Location,
    /// A WeChat event push (`subscribe`, `unsubscribe`, menu click): never a report.
    EventPush,
    /// Bytes a decoder must reject, and why.
    Malformed { why: Malformation },
}

impl RecordKind {
    pub fn is_report(&self) -> bool {
        matches!(self, RecordKind::Report { .. })
    }
}

/// How a malformed record is broken. The `&'static str` names the field concerned, as the
/// channel spells it (`bjnr`, `诉求内容`, `Content`, `created_at` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// The bytes stop part-way (a producer died mid-write); still valid UTF-8.
    Truncated,
    /// A required field is absent.
    MissingField(&'static str),
    /// A required field holds the wrong type (`"created_at": 12`, content as a number, a
    /// WeChat `CreateTime` that is no number).
    WrongType(&'static str),
    /// The content holds bytes that are not UTF-8 (`0xFF 0xFE`).
    InvalidUtf8,
    /// The content field is present but empty.
    EmptyContent(&'static str),
}

impl Malformation {
    /// A short code from a fixed set, for logs and test output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Malformation::Truncated => "truncated",
            Malformation::MissingField(_) => "missing_field",
            Malformation::WrongType(_) => "wrong_type",
            Malformation::InvalidUtf8 => "invalid_utf8",
            Malformation::EmptyContent(_) => "empty_content",
        }
    }
}

impl std::fmt::Display for Malformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformation::MissingField(field)
            | Malformation::WrongType(field)
            | Malformation::EmptyContent(field) => write!(f, "{} ({field})", self.as_str()),
            Malformation::Truncated | Malformation::InvalidUtf8 => f.write_str(self.as_str()),
        }
    }
}

/// One record as a channel would deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRecord {
    pub channel: Channel,
    /// The channel's own id (Weibo `idstr`, WeChat `MsgId`, 12345 工单编号, 110 `jjdbh`), so a
    /// test can find the output event `"{channel}:{native_id}"`. `None` for WeChat event
    /// pushes, which carry no `MsgId`. Unique within one generator.
    pub native_id: Option<String>,
    pub bytes: Vec<u8>,
    pub kind: RecordKind,
}

/// The incidents [`TrafficGenerator::incident`] can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    /// 爆管 / 停水: a burst water main.
    WaterMainBurst,
    /// 煤气泄漏味: gas smell in a compound.
    GasSmell,
    /// 路面塌陷: a road collapse.
    RoadCollapse,
    /// 化工厂异味: a factory's smell at night.
    FactorySmellAtNight,
    /// 车祸: a traffic accident, mostly reported to 110.
    TrafficAccident,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 5] = [
        IncidentKind::WaterMainBurst,
        IncidentKind::GasSmell,
        IncidentKind::RoadCollapse,
        IncidentKind::FactorySmellAtNight,
        IncidentKind::TrafficAccident,
    ];

    /// The category the incident's reports belong to.
    pub fn category(self) -> &'static str {
        self.texts().category
    }

    /// Every report of the incident contains at least one of these terms.
    pub fn key_terms(self) -> &'static [&'static str] {
        self.texts().key_terms
    }

    fn texts(self) -> &'static IncidentTexts {
        match self {
            IncidentKind::WaterMainBurst => &templates::WATER_MAIN,
            IncidentKind::GasSmell => &templates::GAS_SMELL,
            IncidentKind::RoadCollapse => &templates::ROAD_COLLAPSE,
            IncidentKind::FactorySmellAtNight => &templates::FACTORY_SMELL,
            IncidentKind::TrafficAccident => &templates::TRAFFIC_ACCIDENT,
        }
    }
}

/// What traffic to generate. Shares are probabilities in [0, 1]; weights are relative and
/// need not sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Share of records that are broken in one of the [`Malformation`] ways.
    pub malformed_share: f64,
    /// Share of Weibo and WeChat records that are chatter rather than reports.
    pub chatter_share: f64,
    /// Share of WeChat records that are event pushes.
    pub event_push_share: f64,
    /// Relative volume per channel, in [`Channel::ALL`] order (Weibo, WeChat, 12345, 110).
    pub channel_weights: [f64; 4],
    /// Relative volume per category for reports outside 110, in [`CATEGORIES`] order.
    pub category_weights: [f64; 7],
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 20261125,
            malformed_share: 0.02,
            chatter_share: 0.3,
            event_push_share: 0.04,
            channel_weights: [0.35, 0.2, 0.35, 0.1],
            // Roughly the shares of a city's message board: building and labour complaints
            // dominate, transport is the smallest.
            category_weights: [0.22, 0.1, 0.07, 0.17, 0.21, 0.13, 0.1],
        }
    }
}

/// Every problem of a [`GeneratorConfig`], found at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid generator config: {}", .problems.join("; "))]
pub struct GeneratorConfigError {
    pub problems: Vec<String>,
}

impl GeneratorConfig {
    /// Checks every share and weight, and reports all problems together.
    pub fn validate(&self) -> Result<(), GeneratorConfigError> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("malformed_share", self.malformed_share),
            ("chatter_share", self.chatter_share),
            ("event_push_share", self.event_push_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("{field} = {value} is outside [0, 1]"));
            }
        }
        check_weights("channel_weights", &self.channel_weights, &mut problems);
        check_weights("category_weights", &self.category_weights, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GeneratorConfigError { problems })
        }
    }
}

fn check_weights(field: &str, weights: &[f64], problems: &mut Vec<String>) {
    for (i, w) in weights.iter().enumerate() {
        if !w.is_finite() || *w < 0.0 {
            problems.push(format!("{field}[{i}] = {w} is not a finite weight >= 0"));
        }
    }
    if weights.iter().all(|w| *w <= 0.0 || !w.is_finite()) {
        problems.push(format!("{field} has no positive weight"));
    }
}

/// Relative traffic volume for an hour of the day (0–23, wrapping), averaging 1.0 over the day:
/// quiet at night, busiest mid-morning, a second hump in the evening. Multiply by a base rate
/// to get records per hour.
pub fn daily_rhythm(hour: u32) -> f64 {
    const RHYTHM: [f64; 24] = [
        0.30, 0.18, 0.12, 0.10, 0.10, 0.18, 0.40, 0.85, 1.35, 1.70, 1.80, 1.60, 1.25, 1.35, 1.55,
        1.55, 1.45, 1.35, 1.25, 1.40, 1.45, 1.25, 0.90, 0.55,
    ];
    let mean = RHYTHM.iter().sum::<f64>() / 24.0;
    RHYTHM[(hour % 24) as usize] / mean
}

/// The generator. Deterministic: one seeded RNG, no clock, no global state.
pub struct TrafficGenerator {
    config: GeneratorConfig,
    rng: StdRng,
    channels: WeightedIndex<f64>,
    categories: WeightedIndex<f64>,
    /// Counter folded into every native id, so ids never repeat within one generator.
    seq: u64,
    /// The official account's `gh_` id: one account receives all WeChat messages.
    wechat_account: String,
}

impl TrafficGenerator {
    /// A generator for a config built in code.
    ///
    /// # Panics
    /// When the config is invalid (see [`GeneratorConfig::validate`]); use
    /// [`TrafficGenerator::try_new`] for configs read from a file.
    pub fn new(config: GeneratorConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(config: GeneratorConfig) -> Result<Self, GeneratorConfigError> {
        config.validate()?;
        let weights_error = |e: rand::distr::weighted::Error| GeneratorConfigError {
            problems: vec![format!("weights rejected: {e}")],
        };
        let channels = WeightedIndex::new(config.channel_weights).map_err(weights_error)?;
        let categories = WeightedIndex::new(config.category_weights).map_err(weights_error)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let wechat_account = format!("gh_{:012x}", rng.random_range(0..1u64 << 48));
        Ok(TrafficGenerator {
            config,
            rng,
            channels,
            categories,
            seq: 0,
            wechat_account,
        })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// One record on a channel drawn from the configured mix, as it would arrive at `at`
    /// (event time). Deterministic for a seed and call order.
    pub fn next_record(&mut self, at: DateTime<FixedOffset>) -> GeneratedRecord {
        let channel = Channel::ALL[self.channels.sample(&mut self.rng)];
        self.next_record_on(channel, at)
    }

    /// One record on the given channel, for callers that drive the channel mix themselves.
    pub fn next_record_on(
        &mut self,
        channel: Channel,
        at: DateTime<FixedOffset>,
    ) -> GeneratedRecord {
        let malformed = self.chance(self.config.malformed_share);
        let built = if malformed {
            // Breaking a report shows what a decoder must reject; chatter would add nothing.
            self.report(channel, at, false)
        } else {
            match channel {
                Channel::Weibo if self.chance(self.config.chatter_share) => self.weibo_chatter(at),
                Channel::Wechat if self.chance(self.config.event_push_share) => {
                    self.wechat_event(at)
                }
                Channel::Wechat if self.chance(self.config.chatter_share) => {
                    self.wechat_chatter(at)
                }
                _ => self.report(channel, at, true),
            }
        };
        if malformed {
            self.break_record(channel, built)
        } else {
            built.finish(channel)
        }
    }

    /// An incident: `count` reports about the same thing at the same place in `district`,
    /// spread over the channels in the incident's usual mix, at times drawn uniformly from
    /// `start ..= start + span` and returned in time order. The wordings are near-duplicates
    /// sharing the incident's [`IncidentKind::key_terms`] and the district name.
    ///
    /// `district` should be one of [`DISTRICTS`]' names; another name is used as given, with
    /// the city's code (430100) and the roads of a district drawn at random. A negative `span`
    /// counts as zero. Times are whole seconds after `start`, as the wire formats carry them.
    pub fn incident(
        &mut self,
        kind: IncidentKind,
        district: &str,
        start: DateTime<FixedOffset>,
        span: Duration,
        count: usize,
    ) -> Vec<(DateTime<FixedOffset>, GeneratedRecord)> {
        let texts = kind.texts();
        let place = self.incident_place(district);
        let span_secs = span.num_seconds().max(0);
        let mut offsets: Vec<i64> = (0..count)
            .map(|_| self.rng.random_range(0..=span_secs))
            .collect();
        offsets.sort_unstable();
        let channels = WeightedIndex::new(texts.channel_weights)
            .unwrap_or_else(|e| panic!("incident channel weights of {kind:?} are invalid: {e}"));
        offsets
            .into_iter()
            .map(|secs| {
                let at = start + Duration::seconds(secs);
                let channel = Channel::ALL[channels.sample(&mut self.rng)];
                let record = self.incident_record(texts, &place, channel, at);
                (at, record)
            })
            .collect()
    }

    // ---- choosing what to say -------------------------------------------------------------

    fn report(
        &mut self,
        channel: Channel,
        at: DateTime<FixedOffset>,
        allow_variants: bool,
    ) -> Built {
        let place = self.random_place();
        let slots = Slots::draw(&mut self.rng, &place);
        if channel == Channel::Police110 {
            let template = pick(&mut self.rng, templates::POLICE);
            let body = slots.fill(template.body);
            let kind = RecordKind::Report {
                category: template.category,
            };
            return self.police110(at, body, template.jqlb, &place, kind);
        }
        let texts = &templates::CATEGORY_TEXTS[self.categories.sample(&mut self.rng)];
        let kind = RecordKind::Report {
            category: texts.category,
        };
        let template = pick(&mut self.rng, texts.reports);
        let title = slots.fill(template.title);
        let body = slots.fill(template.body);
        match channel {
            Channel::Weibo => {
                // Most posts are short; some citizens paste the whole complaint.
                let text = if self.chance(0.6) {
                    slots.fill(pick(&mut self.rng, texts.posts))
                } else {
                    body
                };
                self.weibo_report(at, text, texts.hashtags, &place, kind, 0.25)
            }
            Channel::Wechat => {
                if allow_variants && self.chance(0.1) {
                    return self.wechat_location(at, &place);
                }
                let text = if self.chance(0.4) {
                    slots.fill(pick(&mut self.rng, texts.posts))
                } else {
                    body
                };
                let voice = allow_variants && self.chance(0.15);
                self.wechat_report(at, text, voice, kind)
            }
            Channel::Hotline12345 | Channel::Police110 => {
                self.hotline12345(at, title, body, template.kind, &place, kind)
            }
        }
    }

    fn incident_record(
        &mut self,
        texts: &IncidentTexts,
        place: &Place,
        channel: Channel,
        at: DateTime<FixedOffset>,
    ) -> GeneratedRecord {
        let slots = Slots::draw(&mut self.rng, place);
        let kind = RecordKind::Report {
            category: texts.category,
        };
        let built = match channel {
            Channel::Weibo => {
                let text = slots.fill(pick(&mut self.rng, texts.posts));
                self.weibo_report(at, text, templates::CITY_HASHTAGS, place, kind, 0.5)
            }
            Channel::Wechat => {
                let text = slots.fill(pick(&mut self.rng, texts.formal));
                let voice = self.chance(0.2);
                self.wechat_report(at, text, voice, kind)
            }
            Channel::Hotline12345 => {
                let body = slots.fill(pick(&mut self.rng, texts.formal));
                let request_type = if self.chance(0.7) { "求助" } else { "投诉" };
                self.hotline12345(at, slots.fill(texts.title), body, request_type, place, kind)
            }
            Channel::Police110 => {
                let body = slots.fill(pick(&mut self.rng, texts.police));
                self.police110(at, body, texts.jqlb, place, kind)
            }
        };
        built.finish(channel)
    }

    fn random_place(&mut self) -> Place {
        let district = &DISTRICTS[self.rng.random_range(0..DISTRICTS.len())];
        let spread = 0.02;
        Place::in_district(&mut self.rng, district, district.name, spread)
    }

    fn incident_place(&mut self, name: &str) -> Place {
        match DISTRICTS.iter().find(|d| d.name == name) {
            Some(district) => Place::in_district(&mut self.rng, district, name, 0.01),
            None => {
                let roads_from = &DISTRICTS[self.rng.random_range(0..DISTRICTS.len())];
                let mut place = Place::in_district(&mut self.rng, roads_from, name, 0.01);
                place.code = CITY_CODE;
                place.lat = CITY_CENTRE.0;
                place.lon = CITY_CENTRE.1;
                place
            }
        }
    }

    // ---- Weibo -----------------------------------------------------------------------------

    fn weibo_report(
        &mut self,
        at: DateTime<FixedOffset>,
        text: String,
        hashtags: &[&str],
        place: &Place,
        kind: RecordKind,
        geo_share: f64,
    ) -> Built {
        let mut post = String::new();
        if self.chance(0.45) {
            let tag = if self.chance(0.5) {
                pick(&mut self.rng, templates::CITY_HASHTAGS)
            } else {
                pick(&mut self.rng, hashtags)
            };
            post.push_str(tag);
        }
        post.push_str(&text);
        if self.chance(0.1) {
            post.push_str(pick(&mut self.rng, templates::QUOTED_REMARKS));
        }
        if self.chance(0.55) {
            post.push_str(pick(&mut self.rng, templates::ANGRY_EMOTICONS));
        }
        if self.chance(0.2) {
            post.push(' ');
            post.push_str(pick(&mut self.rng, templates::MENTIONS));
        }
        let geo = self.chance(geo_share).then(|| self.near(place, 0.004));

        let native_id;
        let status = if self.chance(0.2) {
            // A repost: the report is the nested original; the reposter only comments.
            let original_at = at - Duration::minutes(self.rng.random_range(5..600));
            let media = self.chance(0.3);
            let original = self.weibo_status(original_at, &post, geo, media, None);
            let comment = self.repost_chain();
            let (id, status) = self.weibo_status(at, &comment, None, false, Some(original.1));
            native_id = id;
            status
        } else {
            let (id, status) = self.weibo_status(at, &post, geo, false, None);
            native_id = id;
            status
        };
        Built::json(status, "text", "created_at", native_id, kind)
    }

    fn weibo_chatter(&mut self, at: DateTime<FixedOffset>) -> Built {
        let place = self.random_place();
        let slots = Slots::draw(&mut self.rng, &place);
        let mut post = slots.fill(pick(&mut self.rng, templates::WEIBO_CHATTER));
        if self.chance(0.6) {
            post.push_str(pick(&mut self.rng, templates::HAPPY_EMOTICONS));
        }
        let geo = self.chance(0.15).then(|| self.near(&place, 0.02));
        let (id, status) = self.weibo_status(at, &post, geo, false, None);
        Built::json(status, "text", "created_at", id, RecordKind::Chatter)
    }

    /// `//@` chains: each reposter's comment follows the next one's, newest first.
    fn repost_chain(&mut self) -> String {
        let mut chain = pick(&mut self.rng, templates::REPOST_COMMENTS).to_string();
        if self.chance(0.4) {
            chain.push_str(pick(&mut self.rng, templates::ANGRY_EMOTICONS));
        }
        for _ in 0..self.rng.random_range(0..=2) {
            let name = self.screen_name();
            let comment = pick(&mut self.rng, templates::REPOST_COMMENTS);
            chain.push_str(&format!("//@{name}:{comment}"));
        }
        html_escape::encode_double_quoted_attribute(&chain).into_owned()
    }

    /// A status as the Weibo API returns it; `text` is escaped the way Weibo escapes it.
    /// Returns the status's `idstr` and JSON.
    fn weibo_status(
        &mut self,
        at: DateTime<FixedOffset>,
        text: &str,
        geo: Option<(f64, f64)>,
        media: bool,
        retweeted: Option<Value>,
    ) -> (String, Value) {
        let id = 5_000_000_000_000_000 + self.next_seq() * 1000 + self.rng.random_range(0..1000);
        let user = self.weibo_user(media);
        let (reposts, comments, likes) = if media {
            (
                self.rng.random_range(50..5000),
                self.rng.random_range(20..2000),
                self.rng.random_range(100..20000),
            )
        } else {
            (
                self.heavy_tail(3.0),
                self.heavy_tail(2.5),
                self.heavy_tail(3.5),
            )
        };
        let source = format!(
            "<a href=\"http://app.weibo.com/t/feed/{:x}\" rel=\"nofollow\">{}</a>",
            self.rng.random_range(0x1000..0xffff_u32),
            pick(&mut self.rng, templates::WEIBO_SOURCES)
        );
        let text = html_escape::encode_double_quoted_attribute(text);
        let mut status = json!({
            "created_at": china(at).format("%a %b %d %H:%M:%S %z %Y").to_string(),
            "id": id,
            "idstr": id.to_string(),
            "mid": id.to_string(),
            "text": text,
            "source": source,
            "user": user,
            "geo": geo.map(|(lat, lon)| json!({"type": "Point", "coordinates": [lat, lon]})),
            "reposts_count": reposts,
            "comments_count": comments,
            "attitudes_count": likes,
        });
        if let (Some(original), Some(object)) = (retweeted, status.as_object_mut()) {
            object.insert("retweeted_status".to_string(), original);
        }
        (id.to_string(), status)
    }

    fn weibo_user(&mut self, media: bool) -> Value {
        let uid: u64 = self.rng.random_range(1_000_000_000..8_000_000_000);
        let (screen_name, followers, verified) = if media {
            let name = pick(&mut self.rng, templates::MEDIA_ACCOUNTS).to_string();
            (name, self.rng.random_range(100_000..5_000_000), true)
        } else if self.chance(0.25) {
            // Accounts that never chose a name are called after their id.
            (format!("用户{uid}"), self.heavy_tail(2.0), false)
        } else {
            let verified = self.chance(0.03);
            (self.screen_name(), self.heavy_tail(4.0), verified)
        };
        json!({
            "id": uid,
            "idstr": uid.to_string(),
            "screen_name": screen_name,
            "location": pick(&mut self.rng, templates::USER_LOCATIONS),
            "followers_count": followers,
            "verified": verified,
        })
    }

    fn screen_name(&mut self) -> String {
        let head = pick(&mut self.rng, templates::SCREEN_NAME_HEADS);
        let tail = pick(&mut self.rng, templates::SCREEN_NAME_TAILS);
        if self.chance(0.4) {
            format!("{head}{tail}{}", self.rng.random_range(1..9999))
        } else {
            format!("{head}{tail}")
        }
    }

    // ---- WeChat ----------------------------------------------------------------------------

    fn wechat_report(
        &mut self,
        at: DateTime<FixedOffset>,
        text: String,
        voice: bool,
        kind: RecordKind,
    ) -> Built {
        let mut message = self.wechat_message(at, if voice { "voice" } else { "text" });
        if voice {
            let opening = pick(&mut self.rng, templates::VOICE_OPENINGS);
            let media_id = self.random_token(64);
            message.push("MediaId", XmlValue::CData(media_id));
            message.push("Format", XmlValue::CData("amr".to_string()));
            message.push("Recognition", XmlValue::CData(format!("{opening}，{text}")));
        } else {
            message.push("Content", XmlValue::CData(text));
        }
        self.finish_wechat(message, kind)
    }

    fn wechat_location(&mut self, at: DateTime<FixedOffset>, place: &Place) -> Built {
        let (lat, lon) = self.near(place, 0.01);
        let mut message = self.wechat_message(at, "location");
        let number = self.rng.random_range(1..300);
        message.push("Location_X", XmlValue::Plain(format!("{lat:.6}")));
        message.push("Location_Y", XmlValue::Plain(format!("{lon:.6}")));
        message.push(
            "Scale",
            XmlValue::Plain(self.rng.random_range(14..=18).to_string()),
        );
        message.push(
            "Label",
            XmlValue::CData(format!(
                "湖南省长沙市{}{}{number}号",
                place.district, place.road
            )),
        );
        self.finish_wechat(message, RecordKind::Location)
    }

    fn wechat_chatter(&mut self, at: DateTime<FixedOffset>) -> Built {
        let place = self.random_place();
        let slots = Slots::draw(&mut self.rng, &place);
        let text = slots.fill(pick(&mut self.rng, templates::WECHAT_CHATTER));
        let mut message = self.wechat_message(at, "text");
        message.push("Content", XmlValue::CData(text));
        self.finish_wechat(message, RecordKind::Chatter)
    }

    fn wechat_event(&mut self, at: DateTime<FixedOffset>) -> Built {
        let mut message = self.wechat_message(at, "event");
        let roll = self.rng.random::<f64>();
        let (event, key) = if roll < 0.7 {
            ("subscribe", String::new())
        } else if roll < 0.9 {
            ("unsubscribe", String::new())
        } else {
            ("CLICK", "MENU_REPORT".to_string())
        };
        message.push("Event", XmlValue::CData(event.to_string()));
        message.push("EventKey", XmlValue::CData(key));
        message.msg_id = None;
        Built {
            draft: Draft::Xml(message),
            native_id: None,
            kind: RecordKind::EventPush,
        }
    }

    fn wechat_message(
        &mut self,
        at: DateTime<FixedOffset>,
        msg_type: &'static str,
    ) -> WechatMessage {
        let msg_id =
            24_000_000_000_000_000 + self.next_seq() * 1000 + self.rng.random_range(0..1000);
        WechatMessage {
            to: self.wechat_account.clone(),
            from: format!("o{}", self.random_token(27)),
            create_time: at.timestamp().to_string(),
            msg_type,
            fields: Vec::new(),
            msg_id: Some(msg_id),
        }
    }

    fn finish_wechat(&mut self, message: WechatMessage, kind: RecordKind) -> Built {
        Built {
            native_id: message.msg_id.map(|id| id.to_string()),
            draft: Draft::Xml(message),
            kind,
        }
    }

    // ---- 12345 and 110 ---------------------------------------------------------------------

    fn hotline12345(
        &mut self,
        at: DateTime<FixedOffset>,
        title: String,
        body: String,
        request_type: &'static str,
        place: &Place,
        kind: RecordKind,
    ) -> Built {
        let ticket = format!("GD{}{:06}", china(at).format("%Y%m%d"), self.next_seq());
        let call_time = china(at).format("%Y-%m-%d %H:%M:%S").to_string();
        let phone = if self.chance(0.85) {
            mobile_number(&mut self.rng)
        } else {
            format!("0731-8{:07}", self.rng.random_range(0..10_000_000))
        };
        // Operators often open with a set phrase before the caller's words.
        let content = if self.chance(0.25) {
            format!("市民来电反映：{body}")
        } else {
            body
        };
        let address = self.address(place);
        let source = pick(&mut self.rng, templates::HOTLINE_SOURCES);
        let (record, content_key, time_key) = if self.chance(0.85) {
            let record = json!({
                "工单编号": ticket,
                "来电时间": call_time,
                "来电号码": phone,
                "诉求类型": request_type,
                "诉求标题": title,
                "诉求内容": content,
                "事发地址": address,
                "所属区县": place.district,
                "来源渠道": source,
            });
            (record, "诉求内容", "来电时间")
        } else {
            let record = json!({
                "ticket_id": ticket,
                "call_time": call_time,
                "caller_phone": phone,
                "request_type": request_type,
                "title": title,
                "content": content,
                "address": address,
                "district": place.district,
                "source_channel": source,
            });
            (record, "content", "call_time")
        };
        Built::json(record, content_key, time_key, ticket, kind)
    }

    fn police110(
        &mut self,
        at: DateTime<FixedOffset>,
        body: String,
        jqlb: &'static str,
        place: &Place,
        kind: RecordKind,
    ) -> Built {
        let local = china(at);
        let case_id = format!(
            "J{}{}{:05}",
            place.code,
            local.format("%Y%m%d%H%M%S"),
            self.next_seq()
        );
        let mut record = json!({
            "jjdbh": case_id,
            "bjsj": local.format("%Y-%m-%d %H:%M:%S").to_string(),
            "bjrdh": mobile_number(&mut self.rng),
            "afdd": self.address(place),
            "bjnr": body,
            "xzqh": place.code,
        });
        if let Some(object) = record.as_object_mut() {
            if self.chance(0.8) {
                object.insert("jqlb".to_string(), json!(jqlb));
            }
            if self.chance(0.9) {
                let (lat, lon) = self.near(place, 0.004);
                object.insert("x".to_string(), json!(lon));
                object.insert("y".to_string(), json!(lat));
            }
        }
        Built::json(record, "bjnr", "bjsj", case_id, kind)
    }

    fn address(&mut self, place: &Place) -> String {
        let number = self.rng.random_range(1..400);
        if self.chance(0.5) {
            format!("长沙市{}{}{number}号", place.district, place.road)
        } else {
            format!(
                "长沙市{}{}{}栋",
                place.district,
                place.community,
                number % 30 + 1
            )
        }
    }

    // ---- breaking records ------------------------------------------------------------------

    fn break_record(&mut self, channel: Channel, built: Built) -> GeneratedRecord {
        let Built {
            draft,
            native_id,
            kind: _,
        } = built;
        let roll = self.rng.random_range(0..5);
        let (bytes, why) = match (roll, draft) {
            (0, draft) => {
                let full = draft.render();
                let text = String::from_utf8_lossy(&full).into_owned();
                let mut cut = self.rng.random_range(text.len() / 3..=text.len() * 2 / 3);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                (text.as_bytes()[..cut].to_vec(), Malformation::Truncated)
            }
            (
                1,
                Draft::Json {
                    mut value,
                    content_key,
                    ..
                },
            ) => {
                if let Some(object) = value.as_object_mut() {
                    object.remove(content_key);
                }
                (
                    value.to_string().into_bytes(),
                    Malformation::MissingField(content_key),
                )
            }
            (1, Draft::Xml(mut message)) => {
                message.fields.retain(|(name, _)| *name != "Content");
                (message.render(), Malformation::MissingField("Content"))
            }
            (
                2,
                Draft::Json {
                    mut value,
                    content_key,
                    time_key,
                },
            ) => {
                let (field, wrong) = if self.chance(0.5) {
                    (time_key, json!(12))
                } else {
                    (content_key, json!(12345))
                };
                if let Some(object) = value.as_object_mut() {
                    object.insert(field.to_string(), wrong);
                }
                (
                    value.to_string().into_bytes(),
                    Malformation::WrongType(field),
                )
            }
            (2, Draft::Xml(mut message)) => {
                message.create_time = "yesterday".to_string();
                (message.render(), Malformation::WrongType("CreateTime"))
            }
            (3, mut draft) => {
                draft.map_content(|content| {
                    let mut middle = content.len() / 2;
                    while !content.is_char_boundary(middle) {
                        middle -= 1;
                    }
                    format!("{}{INVALID_MARK}{}", &content[..middle], &content[middle..])
                });
                let bytes = replace_bytes(draft.render(), INVALID_MARK.as_bytes(), &[0xFF, 0xFE]);
                (bytes, Malformation::InvalidUtf8)
            }
            (_, mut draft) => {
                draft.map_content(|_| String::new());
                let field = draft.content_key();
                (draft.render(), Malformation::EmptyContent(field))
            }
        };
        GeneratedRecord {
            channel,
            native_id,
            bytes,
            kind: RecordKind::Malformed { why },
        }
    }

    // ---- small draws -----------------------------------------------------------------------

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.rng.random_bool(p))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Counts with a long tail: most posts get a few reactions, a few get thousands.
    fn heavy_tail(&mut self, max_log10: f64) -> u64 {
        let exponent = self.rng.random_range(0.0..max_log10) * self.rng.random::<f64>();
        (10f64.powf(exponent) - 1.0).round() as u64
    }

    fn near(&mut self, place: &Place, spread: f64) -> (f64, f64) {
        let lat = place.lat + self.rng.random_range(-spread..=spread);
        let lon = place.lon + self.rng.random_range(-spread..=spread);
        ((lat * 1e6).round() / 1e6, (lon * 1e6).round() / 1e6)
    }

    fn random_token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        (0..len)
            .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
            .collect()
    }
}

/// The 行政区划 code and centre used for a district name the generator does not know.
const CITY_CODE: &str = "430100";
const CITY_CENTRE: (f64, f64) = (28.2282, 112.9388);

/// Placeholder spliced into content before rendering, then swapped for invalid bytes: ASCII
/// that neither JSON nor CDATA escapes, so it survives rendering unchanged.
const INVALID_MARK: &str = "@@INVALID-UTF8@@";

/// Wire times are China Standard Time whatever offset the caller's clock uses.
fn china(at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let cst = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&cst)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    assert!(!items.is_empty(), "template lists are never empty");
    items[rng.random_range(0..items.len())]
}

fn mobile_number(rng: &mut StdRng) -> String {
    let prefix = pick(rng, templates::MOBILE_PREFIXES);
    format!("{prefix}{:08}", rng.random_range(0..100_000_000))
}

/// An 18-digit resident ID number (GB 11643) for someone registered in `region`.
fn resident_id(rng: &mut StdRng, region: &str) -> String {
    let first17 = format!(
        "{region}{:04}{:02}{:02}{:03}",
        rng.random_range(1950..=2005),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
        rng.random_range(1..=999)
    );
    let check = resident_id_check_digit(&first17)
        .unwrap_or_else(|| panic!("'{first17}' is 17 digits by construction"));
    format!("{first17}{check}")
}

/// The GB 11643 check character of the first 17 digits of a resident ID, or `None` when
/// `first17` is not 17 ASCII digits.
fn resident_id_check_digit(first17: &str) -> Option<char> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, weight) in first17.chars().zip(WEIGHTS) {
        sum += c.to_digit(10)? * weight;
    }
    Some(CHECK[(sum % 11) as usize])
}

fn replace_bytes(haystack: Vec<u8>, needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack,
    }
}

/// Where a record is about: a district, two of its roads and a compound, a point near them.
#[derive(Debug, Clone)]
struct Place {
    district: String,
    code: &'static str,
    lat: f64,
    lon: f64,
    road: &'static str,
    road2: &'static str,
    community: &'static str,
}

impl Place {
    fn in_district(rng: &mut StdRng, district: &District, name: &str, spread: f64) -> Place {
        let road_index = rng.random_range(0..district.roads.len());
        let road2_index =
            (road_index + rng.random_range(1..district.roads.len())) % district.roads.len();
        Place {
            district: name.to_string(),
            code: district.code,
            lat: district.lat + rng.random_range(-spread..=spread),
            lon: district.lon + rng.random_range(-spread..=spread),
            road: district.roads[road_index],
            road2: district.roads[road2_index],
            community: pick(rng, district.communities),
        }
    }
}

/// The values of every `{slot}` for one record, drawn once so a slot used twice in a template
/// says the same thing twice.
struct Slots {
    district: String,
    road: &'static str,
    road2: &'static str,
    community: &'static str,
    time: &'static str,
    shop: &'static str,
    restaurant: &'static str,
    school: &'static str,
    hospital: &'static str,
    company: &'static str,
    property: &'static str,
    days: u32,
    hours: u32,
    months: u32,
    years: u32,
    minutes: u32,
    n: u32,
    area: u32,
    floor: u32,
    amount: u32,
    price: u32,
    bus: u32,
    plate: String,
    phone: String,
    idcard: String,
}

impl Slots {
    fn draw(rng: &mut StdRng, place: &Place) -> Slots {
        const PLATE: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
        let plate = (0..5)
            .map(|_| char::from(PLATE[rng.random_range(0..PLATE.len())]))
            .collect();
        Slots {
            district: place.district.clone(),
            road: place.road,
            road2: place.road2,
            community: place.community,
            time: pick(rng, templates::TIMES),
            shop: pick(rng, templates::SHOPS),
            restaurant: pick(rng, templates::RESTAURANTS),
            school: pick(rng, templates::SCHOOLS),
            hospital: pick(rng, templates::HOSPITALS),
            company: pick(rng, templates::COMPANIES),
            property: pick(rng, templates::PROPERTY_COMPANIES),
            days: rng.random_range(2..=30),
            hours: rng.random_range(3..=20),
            months: rng.random_range(1..=12),
            years: rng.random_range(2..=10),
            minutes: rng.random_range(8..=20),
            n: rng.random_range(2..=28),
            area: rng.random_range(10..=80),
            floor: rng.random_range(2..=30),
            amount: rng.random_range(10..=600) * 100,
            price: rng.random_range(20..=800),
            bus: rng.random_range(1..=399),
            plate,
            phone: mobile_number(rng),
            idcard: resident_id(rng, place.code),
        }
    }

    /// The value of slot `name`; `None` for a name no template should use.
    fn value(&self, name: &str) -> Option<String> {
        let text = |s: &str| Some(s.to_string());
        match name {
            "district" => text(&self.district),
            "road" => text(self.road),
            "road2" => text(self.road2),
            "community" => text(self.community),
            "time" => text(self.time),
            "shop" => text(self.shop),
            "restaurant" => text(self.restaurant),
            "school" => text(self.school),
            "hospital" => text(self.hospital),
            "company" => text(self.company),
            "property" => text(self.property),
            "plate" => text(&self.plate),
            "phone" => text(&self.phone),
            "idcard" => text(&self.idcard),
            "days" => Some(self.days.to_string()),
            "hours" => Some(self.hours.to_string()),
            "months" => Some(self.months.to_string()),
            "years" => Some(self.years.to_string()),
            "minutes" => Some(self.minutes.to_string()),
            "n" => Some(self.n.to_string()),
            "area" => Some(self.area.to_string()),
            "floor" => Some(self.floor.to_string()),
            "amount" => Some(self.amount.to_string()),
            "price" => Some(self.price.to_string()),
            "bus" => Some(self.bus.to_string()),
            _ => None,
        }
    }

    /// `template` with every known `{slot}` replaced; an unknown slot stays as written, so the
    /// template test catches it.
    fn fill(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[open..]);
                return out;
            };
            let name = &after[..close];
            match self.value(name) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[open..open + close + 2]),
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// A record before it becomes bytes, kept structured so it can be broken on purpose.
struct Built {
    draft: Draft,
    native_id: Option<String>,
    kind: RecordKind,
}

impl Built {
    fn json(
        value: Value,
        content_key: &'static str,
        time_key: &'static str,
        native_id: String,
        kind: RecordKind,
    ) -> Built {
        Built {
            draft: Draft::Json {
                value,
                content_key,
                time_key,
            },
            native_id: Some(native_id),
            kind,
        }
    }

    fn finish(self, channel: Channel) -> GeneratedRecord {
        GeneratedRecord {
            channel,
            native_id: self.native_id,
            bytes: self.draft.render(),
            kind: self.kind,
        }
    }
}

enum Draft {
    /// Weibo, 12345 and 110 records, with the keys of their content and time fields.
    Json {
        value: Value,
        content_key: &'static str,
        time_key: &'static str,
    },
    Xml(WechatMessage),
}

impl Draft {
    fn render(&self) -> Vec<u8> {
        match self {
            Draft::Json { value, .. } => value.to_string().into_bytes(),
            Draft::Xml(message) => message.render(),
        }
    }

    fn content_key(&self) -> &'static str {
        match self {
            Draft::Json { content_key, .. } => content_key,
            Draft::Xml(_) => "Content",
        }
    }

    fn map_content(&mut self, change: impl FnOnce(&str) -> String) {
        let key = self.content_key();
        match self {
            Draft::Json { value, .. } => {
                if let Some(slot) = value.get_mut(key) {
                    let new = change(slot.as_str().unwrap_or_default());
                    *slot = Value::String(new);
                }
            }
            Draft::Xml(message) => {
                let field = message.fields.iter_mut().find(|(name, _)| *name == key);
                if let Some((_, XmlValue::CData(text))) = field {
                    *text = change(text);
                }
            }
        }
    }
}

/// A WeChat callback message; `render` writes it on one line, as WeChat sends it.
struct WechatMessage {
    to: String,
    from: String,
    /// Text rather than a number so a malformed record can hold a non-number.
    create_time: String,
    msg_type: &'static str,
    /// The type-specific elements, in order.
    fields: Vec<(&'static str, XmlValue)>,
    /// Event pushes carry none.
    msg_id: Option<u64>,
}

enum XmlValue {
    CData(String),
    Plain(String),
}

impl WechatMessage {
    fn push(&mut self, name: &'static str, value: XmlValue) {
        self.fields.push((name, value));
    }

    fn render(&self) -> Vec<u8> {
        let mut xml = String::with_capacity(512);
        xml.push_str("<xml>");
        push_element(&mut xml, "ToUserName", &XmlValue::CData(self.to.clone()));
        push_element(
            &mut xml,
            "FromUserName",
            &XmlValue::CData(self.from.clone()),
        );
        push_element(
            &mut xml,
            "CreateTime",
            &XmlValue::Plain(self.create_time.clone()),
        );
        push_element(
            &mut xml,
            "MsgType",
            &XmlValue::CData(self.msg_type.to_string()),
        );
        for (name, value) in &self.fields {
            push_element(&mut xml, name, value);
        }
        if let Some(id) = self.msg_id {
            push_element(&mut xml, "MsgId", &XmlValue::Plain(id.to_string()));
        }
        xml.push_str("</xml>");
        xml.into_bytes()
    }
}

fn push_element(xml: &mut String, name: &str, value: &XmlValue) {
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
    match value {
        XmlValue::CData(text) => {
            // A CDATA section cannot contain "]]>": split it across two sections.
            xml.push_str("<![CDATA[");
            xml.push_str(&text.replace("]]>", "]]]]><![CDATA[>"));
            xml.push_str("]]>");
        }
        XmlValue::Plain(text) => xml.push_str(text),
    }
    xml.push_str("</");
    xml.push_str(name);
    xml.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    fn t0() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-25T09:12:03+08:00").expect("test time")
    }

    /// `n` records 37 seconds apart, with the time each was generated for.
    fn sample(config: GeneratorConfig, n: usize) -> Vec<(DateTime<FixedOffset>, GeneratedRecord)> {
        let mut generator = TrafficGenerator::new(config);
        (0..n)
            .map(|i| {
                let at = t0() + Duration::seconds(37 * i as i64);
                (at, generator.next_record(at))
            })
            .collect()
    }

    fn clean() -> GeneratorConfig {
        GeneratorConfig {
            malformed_share: 0.0,
            ..GeneratorConfig::default()
        }
    }

    /// Element texts of a WeChat message by tag, and whether `</xml>` was reached.
    fn wechat_fields(bytes: &[u8]) -> Result<(BTreeMap<String, String>, bool), String> {
        use quick_xml::events::Event as Xml;
        let mut reader = quick_xml::Reader::from_reader(bytes);
        let mut buf = Vec::new();
        let mut open: Vec<String> = Vec::new();
        let mut fields = BTreeMap::new();
        let mut closed = false;
        loop {
            match reader
                .read_event_into(&mut buf)
                .map_err(|e| e.to_string())?
            {
                Xml::Start(e) => {
                    open.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                }
                Xml::Text(t) => {
                    let text = t.decode().map_err(|e| e.to_string())?.into_owned();
                    let tag = open.last().cloned().unwrap_or_default();
                    fields
                        .entry(tag)
                        .or_insert_with(String::new)
                        .push_str(&text);
                }
                Xml::CData(c) => {
                    let text = c.decode().map_err(|e| e.to_string())?.into_owned();
                    let tag = open.last().cloned().unwrap_or_default();
                    fields
                        .entry(tag)
                        .or_insert_with(String::new)
                        .push_str(&text);
                }
                Xml::End(_) => {
                    let tag = open.pop().unwrap_or_default();
                    closed = tag == "xml";
                    fields.entry(tag).or_insert_with(String::new);
                }
                Xml::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        Ok((fields, closed))
    }

    fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
        value[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
    }

    fn char_len(text: &str) -> usize {
        text.chars().count()
    }

    fn assert_in_changsha(lat: f64, lon: f64) {
        assert!((27.8..28.7).contains(&lat), "latitude {lat}");
        assert!((112.3..113.9).contains(&lon), "longitude {lon}");
    }

    fn check_weibo_status(status: &Value) {
        let id = status["id"].as_u64().expect("id is a number");
        assert_eq!(str_field(status, "idstr"), id.to_string());
        let created = str_field(status, "created_at");
        DateTime::parse_from_str(created, "%a %b %d %H:%M:%S %z %Y")
            .unwrap_or_else(|e| panic!("created_at {created:?}: {e}"));
        assert!(!str_field(status, "text").is_empty());
        let user = &status["user"];
        assert!(str_field(user, "idstr").parse::<u64>().is_ok());
        assert!(!str_field(user, "screen_name").is_empty());
        str_field(user, "location");
        assert!(user["followers_count"].is_u64());
        assert!(user["verified"].is_boolean());
        for key in ["reposts_count", "comments_count", "attitudes_count"] {
            assert!(status[key].is_u64(), "{key} in {status}");
        }
        match &status["geo"] {
            Value::Null => {}
            geo => {
                assert_eq!(geo["type"], "Point");
                let lat = geo["coordinates"][0].as_f64().expect("lat");
                let lon = geo["coordinates"][1].as_f64().expect("lon");
                assert_in_changsha(lat, lon);
            }
        }
    }

    /// Checks one well-formed record against its channel's wire format and the time asked for.
    fn check_record(at: DateTime<FixedOffset>, record: &GeneratedRecord) {
        let text = std::str::from_utf8(&record.bytes).expect("clean records are UTF-8");
        let local = china(at).format("%Y-%m-%d %H:%M:%S").to_string();
        match record.channel {
            Channel::Weibo => {
                let status: Value = serde_json::from_str(text).expect("weibo JSON");
                check_weibo_status(&status);
                let created = str_field(&status, "created_at");
                let parsed = DateTime::parse_from_str(created, "%a %b %d %H:%M:%S %z %Y");
                assert_eq!(parsed.ok(), Some(at));
                assert_eq!(
                    record.native_id.as_deref(),
                    Some(str_field(&status, "idstr"))
                );
                if let Some(original) = status.get("retweeted_status") {
                    check_weibo_status(original);
                }
                // Weibo escapes these; only entities may appear in text.
                let body = str_field(&status, "text");
                assert!(!body.contains('"') && !body.contains('<'), "{body}");
            }
            Channel::Wechat => {
                let (fields, closed) = wechat_fields(&record.bytes).expect("wechat XML");
                assert!(closed, "{text}");
                assert!(text.starts_with("<xml><ToUserName><![CDATA[gh_") && !text.contains('\n'));
                let from = &fields["FromUserName"];
                assert!(from.starts_with('o') && from.len() == 28, "{from}");
                assert_eq!(
                    fields["CreateTime"].parse::<i64>().ok(),
                    Some(at.timestamp())
                );
                let msg_type = fields["MsgType"].as_str();
                match msg_type {
                    "text" => assert!(!fields["Content"].is_empty()),
                    "voice" => {
                        assert!(!fields["Recognition"].is_empty() && fields["Format"] == "amr")
                    }
                    "location" => {
                        let lat: f64 = fields["Location_X"].parse().expect("Location_X");
                        let lon: f64 = fields["Location_Y"].parse().expect("Location_Y");
                        assert_in_changsha(lat, lon);
                        assert!(fields["Scale"].parse::<u32>().is_ok());
                        assert!(fields["Label"].contains("长沙市"));
                    }
                    "event" => {
                        assert!(["subscribe", "unsubscribe", "CLICK"]
                            .contains(&fields["Event"].as_str()));
                        assert!(!fields.contains_key("MsgId"));
                    }
                    other => panic!("unexpected MsgType {other}"),
                }
                assert_eq!(msg_type == "event", record.kind == RecordKind::EventPush);
                assert_eq!(msg_type == "location", record.kind == RecordKind::Location);
                assert_eq!(record.native_id.as_ref(), fields.get("MsgId"));
            }
            Channel::Hotline12345 => {
                let order: Value = serde_json::from_str(text).expect("12345 JSON");
                let keys = if order.get("工单编号").is_some() {
                    [
                        "工单编号",
                        "来电时间",
                        "来电号码",
                        "诉求类型",
                        "诉求标题",
                        "诉求内容",
                        "事发地址",
                        "所属区县",
                        "来源渠道",
                    ]
                } else {
                    [
                        "ticket_id",
                        "call_time",
                        "caller_phone",
                        "request_type",
                        "title",
                        "content",
                        "address",
                        "district",
                        "source_channel",
                    ]
                };
                for key in keys {
                    assert!(!str_field(&order, key).is_empty(), "{key} in {order}");
                }
                assert_eq!(
                    record.native_id.as_deref(),
                    Some(str_field(&order, keys[0]))
                );
                assert_eq!(str_field(&order, keys[1]), local);
                assert!(
                    ["咨询", "投诉", "建议", "举报", "求助"].contains(&str_field(&order, keys[3]))
                );
                let content = str_field(&order, keys[5]);
                assert!((40..=300).contains(&char_len(content)), "{content}");
                assert!(DISTRICTS
                    .iter()
                    .any(|d| d.name == str_field(&order, keys[7])));
            }
            Channel::Police110 => {
                let call: Value = serde_json::from_str(text).expect("110 JSON");
                assert_eq!(record.native_id.as_deref(), Some(str_field(&call, "jjdbh")));
                assert_eq!(str_field(&call, "bjsj"), local);
                let phone = str_field(&call, "bjrdh");
                assert!(phone.len() == 11 && phone.starts_with('1'), "{phone}");
                assert!(str_field(&call, "afdd").starts_with("长沙市"));
                let content = str_field(&call, "bjnr");
                assert!((40..=300).contains(&char_len(content)), "{content}");
                assert!(DISTRICTS.iter().any(|d| d.code == str_field(&call, "xzqh")));
                if let Some(jqlb) = call.get("jqlb") {
                    assert!(jqlb.is_string());
                }
                if let (Some(x), Some(y)) = (call.get("x"), call.get("y")) {
                    assert_in_changsha(y.as_f64().expect("y"), x.as_f64().expect("x"));
                }
            }
        }
        if let RecordKind::Report { category } = record.kind {
            assert!(CATEGORIES.contains(&category) || category == PUBLIC_SAFETY);
        }
    }

    #[test]
    fn same_seed_gives_the_same_records_and_another_seed_does_not() {
        let run = |seed| {
            let config = GeneratorConfig {
                seed,
                malformed_share: 0.1,
                ..GeneratorConfig::default()
            };
            let mut generator = TrafficGenerator::new(config);
            let mut records: Vec<GeneratedRecord> =
                (0..300).map(|_| generator.next_record(t0())).collect();
            let incident = generator.incident(
                IncidentKind::GasSmell,
                "开福区",
                t0(),
                Duration::hours(1),
                20,
            );
            records.extend(incident.into_iter().map(|(_, record)| record));
            records
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn every_channel_and_kind_appears_in_about_the_configured_mix() {
        let records = sample(GeneratorConfig::default(), 3000);
        let share =
            |channel| records.iter().filter(|(_, r)| r.channel == channel).count() as f64 / 3000.0;
        for (channel, weight) in Channel::ALL.into_iter().zip([0.35, 0.2, 0.35, 0.1]) {
            let observed = share(channel);
            assert!(
                (observed - weight).abs() < 0.04,
                "{channel}: {observed} vs {weight}"
            );
        }
        let kinds: BTreeSet<&str> = records
            .iter()
            .map(|(_, r)| match r.kind {
                RecordKind::Report { .. } => "report",
                RecordKind::Chatter => "chatter",
                RecordKind::Location => "location",
                RecordKind::EventPush => "event",
                RecordKind::Malformed { .. } => "malformed",
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        let categories: BTreeSet<&str> = records
            .iter()
            .filter_map(|(_, r)| match r.kind {
                RecordKind::Report { category } => Some(category),
                _ => None,
            })
            .collect();
        assert!(
            CATEGORIES.iter().all(|c| categories.contains(c)),
            "{categories:?}"
        );
    }

    #[test]
    fn clean_records_are_well_formed_for_their_channel() {
        let records = sample(clean(), 3000);
        let mut ids = HashSet::new();
        for (at, record) in &records {
            assert!(!matches!(record.kind, RecordKind::Malformed { .. }));
            check_record(*at, record);
            if let (Channel::Police110, RecordKind::Report { category }) =
                (record.channel, record.kind)
            {
                // Outside incidents, 110 hears crime and danger, and traffic accidents.
                assert!(category == PUBLIC_SAFETY || category == "交通运输");
            }
            if let Some(id) = &record.native_id {
                assert!(
                    ids.insert((record.channel, id.clone())),
                    "duplicate id {id}"
                );
            }
        }
    }

    #[test]
    fn weibo_texts_look_like_weibo() {
        let records = sample(clean(), 3000);
        let texts: Vec<String> = records
            .iter()
            .filter(|(_, r)| r.channel == Channel::Weibo)
            .map(|(_, r)| {
                let status: Value = serde_json::from_slice(&r.bytes).expect("weibo JSON");
                str_field(&status, "text").to_string()
            })
            .collect();
        let some = |needle: &str| texts.iter().any(|t| t.contains(needle));
        for needle in ["&quot;", "&amp;", "//@", "#", "[怒]", "@长沙12345"] {
            assert!(some(needle), "no Weibo text contains {needle}");
        }
        assert!(texts.iter().any(|t| char_len(t) < 30) && texts.iter().any(|t| char_len(t) > 90));
    }

    #[test]
    fn malformed_records_are_broken_the_way_they_say() {
        let config = GeneratorConfig {
            malformed_share: 1.0,
            ..GeneratorConfig::default()
        };
        let mut seen = BTreeSet::new();
        for (_, record) in sample(config, 800) {
            let RecordKind::Malformed { why } = record.kind else {
                panic!("malformed_share 1 gave {:?}", record.kind);
            };
            seen.insert((record.channel, why.as_str()));
            let json = record.channel != Channel::Wechat;
            let utf8 = std::str::from_utf8(&record.bytes);
            if why == Malformation::InvalidUtf8 {
                assert!(utf8.is_err());
                continue;
            }
            assert!(utf8.is_ok(), "{why} must stay UTF-8");
            if json {
                let parsed = serde_json::from_slice::<Value>(&record.bytes);
                match why {
                    Malformation::Truncated => {
                        assert!(parsed.expect_err("truncated JSON must not parse").is_eof());
                    }
                    Malformation::MissingField(key) => {
                        assert!(["text", "诉求内容", "content", "bjnr"].contains(&key));
                        assert!(parsed.expect("parses").get(key).is_none());
                    }
                    Malformation::WrongType(key) => {
                        let value = parsed.expect("parses");
                        assert!(!value[key].is_null() && !value[key].is_string(), "{key}");
                    }
                    Malformation::EmptyContent(key) => {
                        assert_eq!(parsed.expect("parses")[key], "");
                    }
                    Malformation::InvalidUtf8 => unreachable!(),
                }
            } else {
                let parsed = wechat_fields(&record.bytes);
                match why {
                    Malformation::Truncated => assert!(!matches!(parsed, Ok((_, true)))),
                    Malformation::MissingField(key) => {
                        let (fields, closed) = parsed.expect("parses");
                        assert!(closed && !fields.contains_key(key) && fields["MsgType"] == "text");
                    }
                    Malformation::WrongType(key) => {
                        let (fields, _) = parsed.expect("parses");
                        assert!(fields[key].parse::<i64>().is_err());
                    }
                    Malformation::EmptyContent(key) => {
                        let (fields, _) = parsed.expect("parses");
                        assert_eq!(fields[key], "");
                    }
                    Malformation::InvalidUtf8 => unreachable!(),
                }
            }
        }
        // Every way of breaking a record shows up on every channel.
        assert_eq!(seen.len(), 4 * 5, "{seen:?}");
    }

    #[test]
    fn incident_records_share_district_time_span_and_key_terms() {
        let span = Duration::hours(2);
        for kind in IncidentKind::ALL {
            let mut generator = TrafficGenerator::new(clean());
            let records = generator.incident(kind, "雨花区", t0(), span, 40);
            assert_eq!(records.len(), 40);
            assert!(records.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
            let mut channels = BTreeSet::new();
            for (at, record) in &records {
                assert!(*at >= t0() && *at <= t0() + span);
                check_record(*at, record);
                assert_eq!(
                    record.kind,
                    RecordKind::Report {
                        category: kind.category()
                    }
                );
                let text = String::from_utf8_lossy(&record.bytes);
                assert!(text.contains("雨花区"), "{kind:?}: {text}");
                assert!(
                    kind.key_terms().iter().any(|term| text.contains(term)),
                    "{kind:?}: {text}"
                );
                channels.insert(record.channel);
            }
            assert!(channels.len() >= 2, "{kind:?} on {channels:?}");
            if kind == IncidentKind::TrafficAccident {
                assert!(channels.contains(&Channel::Police110));
            }
        }
    }

    #[test]
    fn incident_edge_cases_stay_graceful() {
        let mut generator = TrafficGenerator::new(clean());
        assert!(generator
            .incident(
                IncidentKind::RoadCollapse,
                "岳麓区",
                t0(),
                Duration::hours(1),
                0
            )
            .is_empty());
        let backwards = generator.incident(
            IncidentKind::RoadCollapse,
            "岳麓区",
            t0(),
            Duration::hours(-1),
            5,
        );
        assert!(backwards.iter().all(|(at, _)| *at == t0()));
        for (_, record) in generator.incident(
            IncidentKind::GasSmell,
            "湘江新区",
            t0(),
            Duration::hours(1),
            30,
        ) {
            let text = String::from_utf8_lossy(&record.bytes);
            assert!(text.contains("湘江新区"), "{text}");
            if record.channel == Channel::Police110 {
                assert!(
                    text.contains(&format!("\"xzqh\":\"{CITY_CODE}\"")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn check_digit_matches_the_standard_example() {
        assert_eq!(resident_id_check_digit("11010519491231002"), Some('X'));
        assert_eq!(resident_id_check_digit("1101051949123100"), None);
        assert_eq!(resident_id_check_digit("1101051949123100a"), None);
    }

    #[test]
    fn texts_carry_phone_numbers_and_id_numbers_with_valid_check_digits() {
        let numbers = regex::Regex::new("[0-9]+X?").expect("regex");
        let mut ids = 0;
        let mut phones = 0;
        for (_, record) in sample(clean(), 3000) {
            let text = String::from_utf8_lossy(&record.bytes).into_owned();
            for number in numbers.find_iter(&text).map(|m| m.as_str()) {
                if number.len() == 18 {
                    ids += 1;
                    assert_eq!(
                        resident_id_check_digit(&number[..17]),
                        number[17..].chars().next(),
                        "{number}"
                    );
                } else if number.len() == 11 && number.starts_with('1') {
                    phones += 1;
                }
            }
        }
        assert!(
            ids >= 20 && phones >= 100,
            "{ids} ID numbers, {phones} phone numbers"
        );
    }

    /// Every template, filled for every district: no slot left over, and formal texts within
    /// the 40–300 characters of a real work order (leaving room for the operator's prefix).
    #[test]
    fn every_template_fills_completely_within_length_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        let incidents = IncidentKind::ALL.map(IncidentKind::texts);
        let mut formal: Vec<&str> = Vec::new();
        let mut other: Vec<&str> = Vec::new();
        for texts in &templates::CATEGORY_TEXTS {
            formal.extend(texts.reports.iter().map(|r| r.body));
            other.extend(texts.reports.iter().map(|r| r.title));
            other.extend(texts.posts);
            other.extend(texts.hashtags);
            assert!(texts.reports.len() >= 8, "{}", texts.category);
        }
        formal.extend(templates::POLICE.iter().map(|p| p.body));
        for texts in &incidents {
            formal.extend(texts.formal);
            formal.extend(texts.police);
            other.extend(texts.posts);
            other.push(texts.title);
            for text in texts.formal.iter().chain(texts.posts).chain(texts.police) {
                assert!(text.contains("{district}"), "{text}");
                assert!(
                    texts.key_terms.iter().any(|term| text.contains(term)),
                    "{text}"
                );
            }
        }
        other.extend(templates::WEIBO_CHATTER);
        other.extend(templates::WECHAT_CHATTER);
        for district in &DISTRICTS {
            let place = Place::in_district(&mut rng, district, district.name, 0.0);
            let slots = Slots::draw(&mut rng, &place);
            for template in formal.iter().chain(&other) {
                let filled = slots.fill(template);
                assert!(!filled.contains('{') && !filled.contains('}'), "{filled}");
            }
            for template in &formal {
                let length = char_len(&slots.fill(template));
                assert!(
                    (40..=293).contains(&length),
                    "{length} characters: {template}"
                );
            }
        }
    }

    #[test]
    fn categories_are_listed_in_template_order() {
        let listed: Vec<&str> = templates::CATEGORY_TEXTS
            .iter()
            .map(|t| t.category)
            .collect();
        assert_eq!(listed, CATEGORIES);
    }

    #[test]
    fn daily_rhythm_is_quiet_at_night_busy_mid_morning_and_averages_one() {
        let mean = (0..24).map(daily_rhythm).sum::<f64>() / 24.0;
        assert!((mean - 1.0).abs() < 1e-9);
        assert!(daily_rhythm(3) < 0.2 && daily_rhythm(10) > 1.5);
        assert_eq!(daily_rhythm(27), daily_rhythm(3));
    }

    #[test]
    fn invalid_config_reports_every_problem() {
        assert!(GeneratorConfig::default().validate().is_ok());
        let mut config = GeneratorConfig {
            malformed_share: 1.5,
            channel_weights: [0.0; 4],
            ..GeneratorConfig::default()
        };
        config.category_weights[2] = f64::NAN;
        let error = TrafficGenerator::try_new(config)
            .err()
            .expect("invalid config");
        let message = error.to_string();
        assert_eq!(error.problems.len(), 3, "{message}");
        for needle in [
            "malformed_share = 1.5",
            "channel_weights has no positive",
            "category_weights[2]",
        ] {
            assert!(message.contains(needle), "{message}");
        }
    }
}
