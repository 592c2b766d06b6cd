//! Simulator configuration (serde, `Default`) and fault settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::PageFeatures;

/// Default Send API limit per Page and second (Meta: 300 calls/s for text).
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 300;
/// Default sleep of an injected timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Everything the simulator needs at start. Every field has a default, so a
/// JSON config file may name only the fields it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The app id accepted in `debug_token`'s app token (`APP_ID|APP_SECRET`).
    pub app_id: String,
    /// The app secret: app token and `appsecret_proof` key.
    pub app_secret: String,
    /// The app's Client Token: the key of Meta's `login_id` rule (`SimHandle::login_connect`).
    pub client_token: String,
    /// Page id -> Page access token, registered (and valid) from the start.
    pub pages: BTreeMap<String, String>,
    /// Page id -> permissions/features/restrictions from the start; Pages
    /// not listed get `PageFeatures::default()`.
    pub page_features: BTreeMap<String, PageFeatures>,
    /// When true, every send needs `appsecret_proof` (a proof that is present
    /// is always checked).
    pub require_appsecret_proof: bool,
    /// Accepted sends per Page within a sliding 1 s window (0 = every send
    /// answers 613).
    pub rate_limit_per_sec: u32,
    /// Message tags accepted for PSID recipients outside the standard window.
    pub allowed_tags: Vec<String>,
    /// When true, a `login_id` or `user_ref` accepts more than one message
    /// (within its 24 h window, from its bound Page). Off by default, as at
    /// Meta. Exactly-once tests turn it on so that a second send is accepted
    /// and shows up, proving the client's own claim instead of relying on
    /// the simulator's refusal.
    pub allow_repeat_login_id_sends: bool,
    /// Injected faults.
    pub faults: Faults,
    /// Injected accepted-then-lost answers (drawn from the same PRNG value
    /// as `faults`; their ratios and `faults`' share the 0..=1 budget).
    pub lost_answers: LostAnswerFaults,
    /// Sim clock = real clock + this offset (ms).
    pub clock_offset_ms: i64,
    /// Keep every accepted message and every attempt (default). Off for runs of millions of
    /// sends: only the counters are kept, so `messages()` and `attempts()` stay empty and the
    /// duplicate counters (derived from the attempt log) stay 0.
    pub keep_logs: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            app_id: "100000000000001".to_owned(),
            app_secret: "sim-app-secret".to_owned(),
            client_token: "sim-client-token".to_owned(),
            pages: BTreeMap::new(),
            page_features: BTreeMap::new(),
            require_appsecret_proof: false,
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            allowed_tags: vec!["HUMAN_AGENT".to_owned()],
            allow_repeat_login_id_sends: false,
            faults: Faults::default(),
            lost_answers: LostAnswerFaults::default(),
            clock_offset_ms: 0,
            keep_logs: true,
        }
    }
}

impl SimConfig {
    /// Builder helper: registers a Page and its (valid) token.
    #[must_use]
    pub fn with_page(mut self, page_id: impl Into<String>, token: impl Into<String>) -> Self {
        self.pages.insert(page_id.into(), token.into());
        self
    }

    /// Builder helper: sets a Page's permissions/features from the start.
    #[must_use]
    pub fn with_page_features(
        mut self,
        page_id: impl Into<String>,
        features: PageFeatures,
    ) -> Self {
        self.page_features.insert(page_id.into(), features);
        self
    }

    /// Applies fault overrides from the process environment:
    /// `GRAPH_SIM_5XX_RATIO`, `GRAPH_SIM_TIMEOUT_RATIO`, `GRAPH_SIM_TIMEOUT_MS`,
    /// `GRAPH_SIM_LATENCY_MS`, `GRAPH_SIM_SEED`, `GRAPH_SIM_LOST_5XX_RATIO`,
    /// `GRAPH_SIM_LOST_TIMEOUT_RATIO`. `start` does not read the
    /// environment by itself; the binary calls this.
    pub fn with_env(self) -> Result<Self, String> {
        self.with_env_from(|key| std::env::var(key).ok())
    }

    /// Same as [`SimConfig::with_env`] with an explicit variable lookup.
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value
                .trim()
                .parse()
                .map_err(|_| format!("{key}: cannot parse {value:?}"))
        }
        if let Some(v) = lookup("GRAPH_SIM_5XX_RATIO") {
            self.faults.error_5xx_ratio = parse("GRAPH_SIM_5XX_RATIO", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_TIMEOUT_RATIO") {
            self.faults.timeout_ratio = parse("GRAPH_SIM_TIMEOUT_RATIO", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_TIMEOUT_MS") {
            self.faults.timeout_ms = parse("GRAPH_SIM_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_LATENCY_MS") {
            self.faults.latency_ms = parse("GRAPH_SIM_LATENCY_MS", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_SEED") {
            self.faults.seed = parse("GRAPH_SIM_SEED", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_LOST_5XX_RATIO") {
            self.lost_answers.lost_answer_5xx_ratio = parse("GRAPH_SIM_LOST_5XX_RATIO", &v)?;
        }
        if let Some(v) = lookup("GRAPH_SIM_LOST_TIMEOUT_RATIO") {
            self.lost_answers.lost_answer_timeout_ratio =
                parse("GRAPH_SIM_LOST_TIMEOUT_RATIO", &v)?;
        }
        self.lost_answers.validate_with(&self.faults)?;
        Ok(self)
    }
}

/// Fault injection for Graph requests (send and `debug_token` get the
/// latency; only sends get 5xx and timeouts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that a send answers HTTP 500 / code 2 (message not recorded).
    pub error_5xx_ratio: f64,
    /// Probability that a send sleeps `timeout_ms` and then answers HTTP 504
    /// (message not recorded).
    pub timeout_ratio: f64,
    /// Sleep of an injected timeout, ms.
    pub timeout_ms: u64,
    /// Latency added to every Graph request, ms.
    pub latency_ms: u64,
    /// PRNG seed; setting faults restarts the sequence from this seed.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_5xx_ratio: 0.0,
            timeout_ratio: 0.0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            latency_ms: 0,
            seed: 0,
        }
    }
}

impl Faults {
    /// Ratios must be finite, within 0..=1, and sum to at most 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, ratio) in [
            ("error_5xx_ratio", self.error_5xx_ratio),
            ("timeout_ratio", self.timeout_ratio),
        ] {
            if !ratio.is_finite() || !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} must be within 0..=1, got {ratio}"));
            }
        }
        if self.error_5xx_ratio + self.timeout_ratio > 1.0 + 1e-9 {
            return Err("error_5xx_ratio + timeout_ratio must be at most 1".to_owned());
        }
        Ok(())
    }
}

/// Accepted-then-lost answers: the rules run and an accepted message is
/// recorded, then the answer is lost, as when Meta delivers and the
/// connection fails on the way back. A retrying client sends a duplicate;
/// these faults are how tests catch that. A separate struct (not new
/// `Faults` fields) so code that builds `Faults` literally keeps compiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LostAnswerFaults {
    /// Probability that the answer becomes HTTP 500 / code 2 after the rules ran.
    pub lost_answer_5xx_ratio: f64,
    /// Probability that the connection is held `Faults::timeout_ms` after
    /// the rules ran, then answers HTTP 504 / code 2.
    pub lost_answer_timeout_ratio: f64,
}

impl LostAnswerFaults {
    /// Each ratio within 0..=1, and all four ratios (with `faults`') sum to
    /// at most 1, because one PRNG draw picks at most one fault.
    pub fn validate_with(&self, faults: &Faults) -> Result<(), String> {
        faults.validate()?;
        for (name, ratio) in [
            ("lost_answer_5xx_ratio", self.lost_answer_5xx_ratio),
            ("lost_answer_timeout_ratio", self.lost_answer_timeout_ratio),
        ] {
            if !ratio.is_finite() || !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} must be within 0..=1, got {ratio}"));
            }
        }
        let total = faults.error_5xx_ratio
            + faults.timeout_ratio
            + self.lost_answer_5xx_ratio
            + self.lost_answer_timeout_ratio;
        if total > 1.0 + 1e-9 {
            return Err(
                "error_5xx_ratio + timeout_ratio + lost_answer_5xx_ratio + lost_answer_timeout_ratio must be at most 1"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_faults() {
        let env = |k: &str| match k {
            "GRAPH_SIM_5XX_RATIO" => Some("0.25".to_owned()),
            "GRAPH_SIM_TIMEOUT_RATIO" => Some("0.5".to_owned()),
            "GRAPH_SIM_LATENCY_MS" => Some("7".to_owned()),
            "GRAPH_SIM_SEED" => Some("42".to_owned()),
            _ => None,
        };
        let c = SimConfig::default().with_env_from(env).unwrap();
        assert_eq!(c.faults.error_5xx_ratio, 0.25);
        assert_eq!(c.faults.timeout_ratio, 0.5);
        assert_eq!(c.faults.latency_ms, 7);
        assert_eq!(c.faults.seed, 42);
        assert_eq!(c.faults.timeout_ms, DEFAULT_TIMEOUT_MS);
    }

    #[test]
    fn env_rejects_garbage_and_bad_ratios() {
        let bad = |k: &str| (k == "GRAPH_SIM_SEED").then(|| "x".to_owned());
        assert!(SimConfig::default().with_env_from(bad).is_err());
        let too_big = |k: &str| (k == "GRAPH_SIM_5XX_RATIO").then(|| "1.5".to_owned());
        assert!(SimConfig::default().with_env_from(too_big).is_err());
        let over_budget = |k: &str| match k {
            "GRAPH_SIM_5XX_RATIO" => Some("0.6".to_owned()),
            "GRAPH_SIM_LOST_TIMEOUT_RATIO" => Some("0.6".to_owned()),
            _ => None,
        };
        assert!(SimConfig::default().with_env_from(over_budget).is_err());
        let lost = |k: &str| (k == "GRAPH_SIM_LOST_5XX_RATIO").then(|| "0.25".to_owned());
        let c = SimConfig::default().with_env_from(lost).unwrap();
        assert_eq!(c.lost_answers.lost_answer_5xx_ratio, 0.25);
    }

    #[test]
    fn partial_json_config_uses_defaults() {
        let c: SimConfig =
            serde_json::from_str(r#"{"pages":{"1":"T"},"faults":{"seed":3}}"#).unwrap();
        assert_eq!(c.rate_limit_per_sec, DEFAULT_RATE_LIMIT_PER_SEC);
        assert_eq!(c.allowed_tags, vec!["HUMAN_AGENT".to_owned()]);
        assert_eq!(c.faults.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(c.faults.seed, 3);
    }
}
