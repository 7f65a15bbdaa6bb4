//! The pipeline file: typed configuration, loaded and validated with every error reported at once.
//!
//! Read by `run`, `demo`, `process` and `check` before anything else starts. Each section is
//! deserialised on its own (unknown keys refused), so one bad section does not hide errors in
//! another; semantic checks then run over whatever parsed, and every problem names its key.

use crate::detect::DetectConfig;
use crate::event::Channel;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole pipeline file. Every section has defaults, so an empty file is a valid
/// configuration for a local broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub pipeline: StageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Early-warning thresholds and windows (see `detect::config`).
    #[serde(default)]
    pub detect: DetectConfig,
}

/// Where to read and write, and how to talk to the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list; `--brokers` overrides it.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group: instances in one group share the input partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Input topic per channel (`weibo`, `wechat`, `12345`, `110`).
    #[serde(default = "default_input_topics")]
    pub input_topics: BTreeMap<String, String>,
    #[serde(default = "default_routed_topic")]
    pub routed_topic: String,
    #[serde(default = "default_triage_topic")]
    pub triage_topic: String,
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// Social posts that are not reports (route `ignored`), key = event id.
    #[serde(default = "default_ignored_topic")]
    pub ignored_topic: String,
    /// Internal: every event, keyed by district, for detection (the repartition step).
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// Alert lifecycle messages, key = alert id.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// How long the producer keeps retrying a message before failing it; 0 = for ever, so a
    /// broker outage pauses the pipeline (in-flight records are bounded) instead of failing it.
    #[serde(default)]
    pub delivery_timeout_ms: u64,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// This instance's stable name in both consumer groups (Kafka static membership,
    /// `group.instance.id`); `citypulse run --instance-id` or `CITYPULSE_INSTANCE_ID` override
    /// it. Unset: dynamic membership. Set, a restarted instance (a crash, a deploy) takes back
    /// its own partitions at once instead of waiting for the group to notice the old member's
    /// death and rebalance. Each instance of a group needs its own name (e.g. the pod name);
    /// stage 2's consumer, in its own group, is `<name>-detect`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Extra librdkafka properties for both clients (security settings, tuning).
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

/// Model and dictionary files. A missing entry means the copy embedded in the binary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub category: Option<PathBuf>,
    pub sentiment: Option<PathBuf>,
    pub relevance: Option<PathBuf>,
    pub user_dict: Option<PathBuf>,
    pub stopwords: Option<PathBuf>,
}

/// Who gets what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Below this category confidence an event goes to triage instead of a department. Unset:
    /// the threshold the category model's file recommends (chosen on out-of-fold predictions
    /// so that ≥ 97 % of auto-routed messages are right), so a retrained model brings its own.
    #[serde(default)]
    pub triage_threshold: Option<f32>,
    /// The `department` value of triaged events.
    #[serde(default = "default_triage_department")]
    pub triage_department: String,
    /// Weibo and WeChat posts whose relevance is below this are not routed (route `ignored`).
    #[serde(default = "default_relevance_threshold")]
    pub relevance_threshold: f32,
    /// The `department` value of ignored posts.
    #[serde(default = "default_ignored_department")]
    pub ignored_department: String,
    /// Every 110 event goes here, whatever its category.
    #[serde(default = "default_police_department")]
    pub police_department: String,
    /// How many keywords each event carries.
    #[serde(default = "default_max_keywords")]
    pub max_keywords: usize,
    /// First matching rule wins; list specific rules (with channel or district) first.
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleConfig>,
}

/// One routing rule: a category, optionally narrowed to a channel or district.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub category: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub district: Option<String>,
    pub department: String,
}

/// Queues and timing between the stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Processing workers; records of one partition always go to the same worker (order kept).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Capacity of each bounded queue between stages, in records, give or take one batch (stage 1
    /// hands records over in batches of at most 64); when full, the upstream stage waits.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Records consumed but not yet committed; at the limit the consumer stops polling.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long SIGTERM may take to drain and commit before the process exits anyway.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// Run early-warning detection (the `citypulse.events` → `citypulse.alerts` task).
    #[serde(default = "default_true")]
    pub detection: bool,
    /// Route events after detection (stage 2, the default), so routed events carry their
    /// `incident_id`; off: stage 1 routes directly — one Kafka hop less between input and
    /// department — and also writes the internal topic, and routed events have no incident.
    #[serde(default = "default_true")]
    pub route_after_detection: bool,
    /// Run detection inside stage 1's workers, for a deployment of one instance: no internal
    /// topic and no stage 2, so each record crosses Kafka once in and once out. Routed events
    /// still carry their `incident_id`. Stage 1 must then own every input partition: it stops
    /// with an error when its group gives it only some (another instance joined). On start,
    /// detection state is rebuilt from the last `detect_rebuild_secs` of the routed, triage
    /// and ignored topics.
    #[serde(default)]
    pub inline_detection: bool,
    /// On a new assignment, detection re-reads this much of the internal topic's past to rebuild
    /// its windows and open incidents.
    #[serde(default = "default_detect_rebuild_secs")]
    pub detect_rebuild_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; `--listen` overrides it.
    #[serde(default = "default_listen")]
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Environment variable holding the HMAC key for author hashes. `run` refuses to start
    /// without it, so hashes stay stable (and unlinkable to outsiders) across restarts.
    #[serde(default = "default_author_key_env")]
    pub author_key_env: String,
}

fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_group_id() -> String {
    "citypulse".into()
}
fn default_input_topics() -> BTreeMap<String, String> {
    Channel::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), format!("raw.{}", c.as_str())))
        .collect()
}
fn default_routed_topic() -> String {
    "citypulse.routed".into()
}
fn default_triage_topic() -> String {
    "citypulse.triage".into()
}
fn default_dlq_topic() -> String {
    "citypulse.dlq".into()
}
fn default_ignored_topic() -> String {
    "citypulse.ignored".into()
}
fn default_relevance_threshold() -> f32 {
    crate::model::relevance::RelevanceModel::DEFAULT_THRESHOLD
}
fn default_ignored_department() -> String {
    "舆情监测".into()
}
fn default_events_topic() -> String {
    "citypulse.events".into()
}
fn default_alerts_topic() -> String {
    "citypulse.alerts".into()
}
fn default_detect_rebuild_secs() -> u64 {
    7200
}
fn default_true() -> bool {
    true
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_triage_department() -> String {
    "人工分拨".into()
}
fn default_police_department() -> String {
    "公安局指挥中心".into()
}
fn default_max_keywords() -> usize {
    5
}
fn default_rules() -> Vec<RuleConfig> {
    [
        ("城乡建设", "住房和城乡建设局"),
        ("环境保护", "生态环境局"),
        ("交通运输", "交通运输局"),
        ("教育文体", "教育局"),
        ("劳动和社会保障", "人力资源和社会保障局"),
        ("商贸旅游", "市场监督管理局"),
        ("卫生计生", "卫生健康委员会"),
    ]
    .into_iter()
    .map(|(category, department)| RuleConfig {
        category: category.into(),
        channel: None,
        district: None,
        department: department.into(),
    })
    .collect()
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn default_queue_capacity() -> usize {
    1024
}
fn default_max_in_flight() -> usize {
    20_000
}
fn default_commit_interval_ms() -> u64 {
    1000
}
fn default_shutdown_timeout_secs() -> u64 {
    20
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_author_key_env() -> String {
    "CITYPULSE_AUTHOR_KEY".into()
}

macro_rules! impl_default_from_serde {
    ($($ty:ty),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                // An empty table takes every `#[serde(default)]`, so the defaults live in one place.
                toml::from_str("").expect(concat!(stringify!($ty), " has a default for every field"))
            }
        }
    )*};
}
impl_default_from_serde!(
    KafkaConfig,
    RoutingConfig,
    StageConfig,
    HttpConfig,
    PrivacyConfig,
    PipelineConfig
);

/// One problem in a pipeline file, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `routing.rules[2].department`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} has {} problem(s):", self.file, self.issues.len())?;
        for issue in &self.issues {
            writeln!(f, "  - {issue}")?;
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// Read, parse and validate a pipeline file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            issues: vec![ConfigIssue {
                key: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let mut config = Self::parse(&text).map_err(|issues| ConfigErrors {
            file: file.clone(),
            issues,
        })?;
        // Model paths are relative to the pipeline file, so a config works from any directory.
        let base = path.parent().unwrap_or(Path::new("."));
        for model_path in [
            &mut config.models.category,
            &mut config.models.sentiment,
            &mut config.models.relevance,
            &mut config.models.user_dict,
            &mut config.models.stopwords,
        ]
        .into_iter()
        .flatten()
        {
            if model_path.is_relative() {
                *model_path = base.join(&*model_path);
            }
        }
        let issues = config.validate_files();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { file, issues })
        }
    }

    /// Parse and validate pipeline TOML (no file access).
    pub fn parse(text: &str) -> Result<Self, Vec<ConfigIssue>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![ConfigIssue {
                key: String::new(),
                message: format!("not valid TOML: {}", e.message().trim()),
            }]
        })?;
        let mut issues = Vec::new();
        let known = [
            "kafka", "models", "routing", "pipeline", "http", "privacy", "detect",
        ];
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                issues.push(ConfigIssue {
                    key: key.clone(),
                    message: format!("unknown section (expected one of: {})", known.join(", ")),
                });
            }
        }
        let kafka = section::<KafkaConfig>(&table, "kafka", &mut issues);
        let models = section::<ModelsConfig>(&table, "models", &mut issues);
        let routing = section::<RoutingConfig>(&table, "routing", &mut issues);
        let pipeline = section::<StageConfig>(&table, "pipeline", &mut issues);
        let http = section::<HttpConfig>(&table, "http", &mut issues);
        let privacy = section::<PrivacyConfig>(&table, "privacy", &mut issues);
        let detect = section::<DetectConfig>(&table, "detect", &mut issues);
        let (
            Some(kafka),
            Some(models),
            Some(routing),
            Some(pipeline),
            Some(http),
            Some(privacy),
            Some(detect),
        ) = (kafka, models, routing, pipeline, http, privacy, detect)
        else {
            return Err(issues);
        };
        let config = PipelineConfig {
            kafka,
            models,
            routing,
            pipeline,
            http,
            privacy,
            detect,
        };
        issues.extend(config.validate());
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(issues)
        }
    }

    /// Semantic checks that need no file access.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut problem = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.to_string(),
                message,
            })
        };
        let kafka = &self.kafka;
        if kafka.brokers.trim().is_empty() {
            problem("kafka.brokers", "must name at least one broker".into());
        }
        if kafka.group_id.trim().is_empty() {
            problem("kafka.group_id", "must not be empty".into());
        }
        if let Some(instance) = &kafka.instance_id {
            // Kafka's own limit for group.instance.id is 249 of [a-zA-Z0-9._-]; detection's
            // consumer appends "-detect" to it.
            let valid = !instance.is_empty()
                && instance.len() <= 242
                && instance
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                problem(
                    "kafka.instance_id",
                    format!(
                        "{instance:?} is not a valid instance id (1–242 characters of \
                         a-z, A-Z, 0-9, '.', '_', '-'; detection appends \"-detect\")"
                    ),
                );
            }
        }
        let mut topics_seen = HashSet::new();
        for (name, topic) in &kafka.input_topics {
            let key = format!("kafka.input_topics.{name}");
            if name.parse::<Channel>().is_err() {
                problem(
                    &key,
                    "unknown channel (expected weibo, wechat, 12345 or 110)".into(),
                );
            }
            check_topic_name(&key, topic, &mut topics_seen, &mut problem);
        }
        if kafka.input_topics.is_empty() {
            problem(
                "kafka.input_topics",
                "must name at least one channel".into(),
            );
        }
        for (key, topic) in [
            ("kafka.routed_topic", &kafka.routed_topic),
            ("kafka.triage_topic", &kafka.triage_topic),
            ("kafka.dlq_topic", &kafka.dlq_topic),
            ("kafka.ignored_topic", &kafka.ignored_topic),
            ("kafka.events_topic", &kafka.events_topic),
            ("kafka.alerts_topic", &kafka.alerts_topic),
        ] {
            check_topic_name(key, topic, &mut topics_seen, &mut problem);
        }

        let routing = &self.routing;
        if let Some(threshold) = routing.triage_threshold {
            if !(0.0..=1.0).contains(&threshold) {
                problem(
                    "routing.triage_threshold",
                    format!("must be within [0, 1], got {threshold}"),
                );
            }
        }
        if !(0.0..=1.0).contains(&routing.relevance_threshold) {
            problem(
                "routing.relevance_threshold",
                format!("must be within [0, 1], got {}", routing.relevance_threshold),
            );
        }
        for (key, value) in [
            ("routing.ignored_department", &routing.ignored_department),
            ("routing.triage_department", &routing.triage_department),
            ("routing.police_department", &routing.police_department),
        ] {
            if value.trim().is_empty() {
                problem(key, "must not be empty".into());
            }
        }
        if routing.max_keywords > 50 {
            problem(
                "routing.max_keywords",
                format!("at most 50, got {}", routing.max_keywords),
            );
        }
        for (i, rule) in routing.rules.iter().enumerate() {
            let key = format!("routing.rules[{i}]");
            if rule.category.trim().is_empty() {
                problem(&format!("{key}.category"), "must not be empty".into());
            }
            if rule.department.trim().is_empty() {
                problem(&format!("{key}.department"), "must not be empty".into());
            }
            if let Some(channel) = &rule.channel {
                if channel.parse::<Channel>().is_err() {
                    problem(
                        &format!("{key}.channel"),
                        format!("unknown channel '{channel}'"),
                    );
                }
            }
        }

        let stages = &self.pipeline;
        for (key, value) in [
            ("pipeline.workers", stages.workers),
            ("pipeline.queue_capacity", stages.queue_capacity),
            ("pipeline.max_in_flight", stages.max_in_flight),
        ] {
            if value == 0 {
                problem(key, "must be at least 1".into());
            }
        }
        if stages.workers > 64 {
            problem(
                "pipeline.workers",
                format!("at most 64, got {}", stages.workers),
            );
        }
        if stages.commit_interval_ms == 0 {
            problem("pipeline.commit_interval_ms", "must be at least 1".into());
        }
        if stages.inline_detection && !stages.detection {
            problem(
                "pipeline.inline_detection",
                "runs detection inside stage 1, so it needs pipeline.detection = true".into(),
            );
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            problem(
                "http.listen",
                format!(
                    "'{}' is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            );
        }
        if self.privacy.author_key_env.trim().is_empty() {
            problem("privacy.author_key_env", "must not be empty".into());
        }
        issues
    }

    /// Checks that need the file system: configured model files must exist.
    fn validate_files(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for (key, path) in [
            ("models.category", &self.models.category),
            ("models.sentiment", &self.models.sentiment),
            ("models.relevance", &self.models.relevance),
            ("models.user_dict", &self.models.user_dict),
            ("models.stopwords", &self.models.stopwords),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    issues.push(ConfigIssue {
                        key: key.into(),
                        message: format!("no such file: {}", path.display()),
                    });
                }
            }
        }
        issues
    }

    pub fn detect_rebuild_secs(&self) -> u64 {
        self.pipeline.detect_rebuild_secs
    }

    /// The input topic of each configured channel.
    pub fn input_topics(&self) -> Vec<(Channel, String)> {
        self.kafka
            .input_topics
            .iter()
            .filter_map(|(name, topic)| Some((name.parse().ok()?, topic.clone())))
            .collect()
    }
}

fn check_topic_name(
    key: &str,
    topic: &str,
    seen: &mut HashSet<String>,
    problem: &mut impl FnMut(&str, String),
) {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
        problem(
            key,
            format!("'{topic}' is not a legal Kafka topic name (1–249 of [a-zA-Z0-9._-])"),
        );
    } else if !seen.insert(topic.to_string()) {
        problem(key, format!("topic '{topic}' is used twice"));
    }
}

/// Deserialise one top-level section, turning its error into an issue that names the key.
fn section<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    let Some(value) = table.get(name) else {
        return Some(T::default());
    };
    match value.clone().try_into::<T>() {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            issues.push(ConfigIssue {
                key: name.to_string(),
                message: e.message().trim().to_string(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_configuration() {
        let config = PipelineConfig::parse("").unwrap();
        assert_eq!(config.kafka.input_topics.len(), 4);
        assert_eq!(config.kafka.input_topics["110"], "raw.110");
        assert_eq!(config.routing.rules.len(), 7);
        assert_eq!(config.routing.police_department, "公安局指挥中心");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = r#"
            [kafka]
            brokers = ""
            input_topics = { weibo = "raw.weibo", sms = "raw sms" }
            routed_topic = "raw.weibo"
            [routing]
            triage_threshold = 1.5
            rules = [ { category = "环境保护", department = "", channel = "fax" } ]
            [pipeline]
            workers = 0
            [http]
            listen = "nowhere"
        "#;
        let issues = PipelineConfig::parse(text).unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        for expected in [
            "kafka.brokers",
            "kafka.input_topics.sms",
            "kafka.routed_topic",
            "routing.triage_threshold",
            "routing.rules[0].department",
            "routing.rules[0].channel",
            "pipeline.workers",
            "http.listen",
        ] {
            assert!(keys.contains(&expected), "{expected} missing in {keys:?}");
        }
    }

    #[test]
    fn inline_detection_is_off_by_default_and_needs_detection() {
        let config = PipelineConfig::parse("").unwrap();
        assert!(!config.pipeline.inline_detection, "two stages by default");
        let config = PipelineConfig::parse("[pipeline]\ninline_detection = true\n").unwrap();
        assert!(config.pipeline.inline_detection);
        let issues =
            PipelineConfig::parse("[pipeline]\ninline_detection = true\ndetection = false\n")
                .unwrap_err();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "pipeline.inline_detection");
        assert!(issues[0].message.contains("pipeline.detection = true"));
    }

    #[test]
    fn client_settings_override_tuning_but_not_delivery_guarantees() {
        let config = PipelineConfig::parse(
            "[kafka.client]\n\"linger.ms\" = \"1\"\n\"enable.idempotence\" = \"false\"\n",
        )
        .unwrap();
        let producer = crate::kafka::producer_config(&config.kafka);
        assert_eq!(producer.get("linger.ms"), Some("1"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        let default = crate::kafka::producer_config(&PipelineConfig::parse("").unwrap().kafka);
        assert_eq!(default.get("linger.ms"), Some("5"));
    }

    #[test]
    fn consumer_prefetch_is_bounded_unless_the_client_settings_say_otherwise() {
        let default = crate::kafka::consumer_config(&PipelineConfig::parse("").unwrap().kafka);
        assert_eq!(default.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(default.get("queued.min.messages"), Some("10000"));
        let config = PipelineConfig::parse(
            "[kafka.client]\n\"queued.max.messages.kbytes\" = \"65536\"\n\"enable.auto.commit\" = \"true\"\n",
        )
        .unwrap();
        let consumer = crate::kafka::consumer_config(&config.kafka);
        assert_eq!(consumer.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(consumer.get("queued.min.messages"), Some("10000"));
        // Commits stay manual whatever the file says.
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn instance_id_sets_static_membership_on_the_consumers_and_is_checked() {
        let config = PipelineConfig::parse("[kafka]\ninstance_id = \"citypulse-0\"\n").unwrap();
        let consumer = crate::kafka::consumer_config(&config.kafka);
        assert_eq!(consumer.get("group.instance.id"), Some("citypulse-0"));
        let dynamic = PipelineConfig::parse("").unwrap();
        assert_eq!(
            crate::kafka::consumer_config(&dynamic.kafka).get("group.instance.id"),
            None
        );
        let issues = PipelineConfig::parse("[kafka]\ninstance_id = \"pod 1/a\"\n").unwrap_err();
        let rendered: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(
            rendered
                .iter()
                .any(|m| m.starts_with("kafka.instance_id") && m.contains("pod 1/a")),
            "{rendered:?}"
        );
    }

    #[test]
    fn type_errors_in_two_sections_are_both_reported() {
        let text = "[kafka]\nbrokers = 5\n[pipeline]\nworkres = 2\n[extra]\n";
        let issues = PipelineConfig::parse(text).unwrap_err();
        let rendered: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(
            rendered.iter().any(|m| m.starts_with("kafka:")),
            "{rendered:?}"
        );
        assert!(
            rendered
                .iter()
                .any(|m| m.starts_with("pipeline:") && m.contains("workres")),
            "{rendered:?}"
        );
        assert!(
            rendered.iter().any(|m| m.starts_with("extra:")),
            "{rendered:?}"
        );
    }

    #[test]
    fn syntax_error_is_one_issue() {
        let issues = PipelineConfig::parse("[kafka\n").unwrap_err();
        assert_eq!(issues.len(), 1);
        assert!(issues[0].message.contains("TOML"));
    }
}
