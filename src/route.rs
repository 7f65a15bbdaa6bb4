//! Routing: which department owns an event, or whether a person must decide.
//!
//! Pure decision logic, built once from the pipeline file's `[routing]` section and applied by
//! the stages after classification. Rules are matched in file order, first match wins.

use crate::config::RoutingConfig;
use crate::event::{Channel, Route};

/// One rule, with the channel already parsed.
#[derive(Debug, Clone)]
struct Rule {
    category: String,
    channel: Option<Channel>,
    district: Option<String>,
    department: String,
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub department: String,
    pub route: Route,
}

/// Routing rules from the pipeline file.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Rule>,
    triage_threshold: f32,
    triage_department: String,
    police_department: String,
}

/// Triage threshold when neither the pipeline file nor the category model names one (a model
/// trained without cross-validation has nothing to choose it from): the value the shipped
/// model's 5-fold cross-validation chose before its threshold grid was refined.
pub const FALLBACK_TRIAGE_THRESHOLD: f32 = 0.9;

/// Where the router's triage threshold came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    PipelineFile,
    ModelFile,
    Fallback,
}

impl Router {
    /// Build from a validated config (channels that fail to parse were refused by validation).
    /// `model_threshold` is the triage threshold the category model file recommends; the
    /// pipeline file's `routing.triage_threshold` overrides it.
    pub fn new(config: &RoutingConfig, model_threshold: Option<f32>) -> Self {
        let (triage_threshold, _) = Self::threshold(config, model_threshold);
        Router {
            rules: config
                .rules
                .iter()
                .map(|rule| Rule {
                    category: rule.category.clone(),
                    channel: rule.channel.as_deref().and_then(|c| c.parse().ok()),
                    district: rule.district.clone(),
                    department: rule.department.clone(),
                })
                .collect(),
            triage_threshold,
            triage_department: config.triage_department.clone(),
            police_department: config.police_department.clone(),
        }
    }

    /// The triage threshold a router built from these would use, and where it comes from.
    pub fn threshold(
        config: &RoutingConfig,
        model_threshold: Option<f32>,
    ) -> (f32, ThresholdSource) {
        match (config.triage_threshold, model_threshold) {
            (Some(set), _) => (set, ThresholdSource::PipelineFile),
            (None, Some(recommended)) => (recommended, ThresholdSource::ModelFile),
            (None, None) => (FALLBACK_TRIAGE_THRESHOLD, ThresholdSource::Fallback),
        }
    }

    /// Below this category confidence events go to triage.
    pub fn triage_threshold(&self) -> f32 {
        self.triage_threshold
    }

    /// Decide where an event goes.
    ///
    /// 110 calls always go to the police command centre: an emergency call is never parked in
    /// a triage queue, whatever the text model thinks. Otherwise a confident category with a
    /// matching rule is routed; a low confidence, or a category no rule covers, goes to triage.
    pub fn decide(
        &self,
        channel: Channel,
        district: Option<&str>,
        category: &str,
        confidence: f32,
    ) -> RouteDecision {
        if channel == Channel::Police110 {
            return RouteDecision {
                department: self.police_department.clone(),
                route: Route::Routed,
            };
        }
        let rule = self.rules.iter().find(|rule| {
            rule.category == category
                && rule.channel.is_none_or(|c| c == channel)
                && rule.district.as_deref().is_none_or(|d| Some(d) == district)
        });
        match rule {
            Some(rule) if confidence >= self.triage_threshold => RouteDecision {
                department: rule.department.clone(),
                route: Route::Routed,
            },
            _ => RouteDecision {
                department: self.triage_department.clone(),
                route: Route::Triage,
            },
        }
    }

    /// Categories that no rule covers: every event of these would go to triage.
    pub fn uncovered_categories<'a>(&self, categories: &'a [String]) -> Vec<&'a str> {
        categories
            .iter()
            .filter(|c| !self.rules.iter().any(|r| &r.category == *c))
            .map(String::as_str)
            .collect()
    }

    /// Every department this router can name, for fixed metric label sets.
    pub fn departments(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.rules.iter().map(|r| r.department.as_str()).collect();
        names.push(&self.triage_department);
        names.push(&self.police_department);
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RoutingConfig, RuleConfig};

    fn router() -> Router {
        let mut config = RoutingConfig::default();
        config.rules.insert(
            0,
            RuleConfig {
                category: "城乡建设".into(),
                channel: None,
                district: Some("浏阳市".into()),
                department: "浏阳市住建局".into(),
            },
        );
        Router::new(&config, Some(0.86))
    }

    #[test]
    fn confident_event_goes_to_the_rule_department() {
        let decision = router().decide(Channel::Hotline12345, Some("雨花区"), "环境保护", 0.9);
        assert_eq!(decision.department, "生态环境局");
        assert_eq!(decision.route, Route::Routed);
    }

    #[test]
    fn district_rule_listed_first_wins_for_its_district_only() {
        let r = router();
        let liuyang = r.decide(Channel::Weibo, Some("浏阳市"), "城乡建设", 0.9);
        assert_eq!(liuyang.department, "浏阳市住建局");
        let elsewhere = r.decide(Channel::Weibo, Some("雨花区"), "城乡建设", 0.9);
        assert_eq!(elsewhere.department, "住房和城乡建设局");
    }

    #[test]
    fn low_confidence_and_unknown_category_go_to_triage() {
        let r = router();
        let unsure = r.decide(Channel::Wechat, None, "环境保护", 0.3);
        assert_eq!(unsure.route, Route::Triage);
        assert_eq!(unsure.department, "人工分拨");
        let unknown = r.decide(Channel::Wechat, None, "外星人", 0.99);
        assert_eq!(unknown.route, Route::Triage);
    }

    #[test]
    fn every_110_call_goes_to_the_police_even_when_unsure() {
        let decision = router().decide(Channel::Police110, Some("雨花区"), "卫生计生", 0.1);
        assert_eq!(decision.department, "公安局指挥中心");
        assert_eq!(decision.route, Route::Routed);
    }

    #[test]
    fn uncovered_categories_are_listed() {
        let cats = vec!["环境保护".to_string(), "外星人".to_string()];
        assert_eq!(router().uncovered_categories(&cats), vec!["外星人"]);
    }

    #[test]
    fn pipeline_file_threshold_overrides_the_model_recommendation() {
        let mut config = RoutingConfig::default();
        assert_eq!(
            Router::threshold(&config, Some(0.86)),
            (0.86, ThresholdSource::ModelFile)
        );
        assert_eq!(
            Router::threshold(&config, None),
            (FALLBACK_TRIAGE_THRESHOLD, ThresholdSource::Fallback)
        );
        config.triage_threshold = Some(0.95);
        assert_eq!(
            Router::threshold(&config, Some(0.86)),
            (0.95, ThresholdSource::PipelineFile)
        );
        let strict = Router::new(&config, Some(0.86));
        assert_eq!(strict.triage_threshold(), 0.95);
        assert_eq!(
            strict
                .decide(Channel::Hotline12345, None, "环境保护", 0.9)
                .route,
            Route::Triage
        );
        let recommended = Router::new(&RoutingConfig::default(), Some(0.86));
        assert_eq!(
            recommended
                .decide(Channel::Hotline12345, None, "环境保护", 0.87)
                .route,
            Route::Routed
        );
        assert_eq!(
            recommended
                .decide(Channel::Hotline12345, None, "环境保护", 0.85)
                .route,
            Route::Triage
        );
    }
}
