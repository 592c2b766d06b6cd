//! Graph API usage headers → pacing.
//!
//! Meta reports how close the app is to its rate limits on every Graph response:
//! - `X-App-Usage: {"call_count":N,"total_cputime":N,"total_time":N}` (platform limits; integer
//!   percentages, throttled at 100);
//! - `X-Business-Use-Case-Usage: {"<object id>":[{"type":"pages","call_count":N,
//!   "total_cputime":N,"total_time":N,"estimated_time_to_regain_access":M}]}` (BUC limits, which
//!   apply to Page-token calls such as the Send API; `M` in minutes);
//! - `Retry-After` (delta-seconds) on some throttled answers.
//!
//! [`Usage::from_headers`] folds them into the single highest percentage, the longest
//! regain-access time and the Retry-After delay; [`Usage::pace`] turns that into a delay before
//! the next send.

use std::time::Duration;

use serde_json::Value;

/// Usage percentage from which [`Usage::pace_default`] starts slowing down (Meta's guidance:
/// back off at about 80–90 %).
pub const DEFAULT_PACE_THRESHOLD_PERCENT: u32 = 80;

/// Delay at exactly the threshold.
const PACE_MIN: Duration = Duration::from_millis(500);
/// Delay just below 100 %.
const PACE_MAX: Duration = Duration::from_secs(60);
/// Delay at or above 100 % (throttled) when Meta gives no explicit wait: limits are rolling
/// windows, so probe again after a few minutes rather than hammering.
const PACE_THROTTLED: Duration = Duration::from_secs(5 * 60);

/// Usage-header keys holding a percentage.
const PERCENT_KEYS: [&str; 3] = ["call_count", "total_cputime", "total_time"];

/// What the usage headers of one Graph response say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Highest percentage found in either header (0 when none could be read). May exceed 100.
    pub max_percent: u32,
    /// Longest positive `estimated_time_to_regain_access` (minutes) in the BUC header; `None` when
    /// absent or 0.
    pub regain_access_minutes: Option<u32>,
    /// `Retry-After` in seconds, when it is a delta-seconds value (an HTTP-date is ignored: this
    /// crate has no clock, and Graph sends seconds).
    pub retry_after_secs: Option<u64>,
}

impl Usage {
    /// Parses the three headers (pass `None` for absent ones). Tolerant: malformed JSON, wrong
    /// types, negative or non-numeric values count as 0 / `None`; numeric strings are accepted;
    /// fractional values are rounded up.
    pub fn from_headers(app: Option<&str>, buc: Option<&str>, retry_after: Option<&str>) -> Usage {
        let mut usage = Usage::default();
        if let Some(Value::Object(obj)) = app.and_then(parse_json) {
            usage.max_percent = max_percent_of(&obj);
        }
        if let Some(Value::Object(ids)) = buc.and_then(parse_json) {
            for entries in ids.values() {
                let entries: &[Value] = match entries {
                    Value::Array(list) => list,
                    single @ Value::Object(_) => std::slice::from_ref(single),
                    _ => &[],
                };
                for entry in entries {
                    let Value::Object(obj) = entry else { continue };
                    usage.max_percent = usage.max_percent.max(max_percent_of(obj));
                    let regain = obj
                        .get("estimated_time_to_regain_access")
                        .map_or(0, non_negative_u32);
                    if regain > 0 {
                        usage.regain_access_minutes =
                            Some(usage.regain_access_minutes.unwrap_or(0).max(regain));
                    }
                }
            }
        }
        usage.retry_after_secs = retry_after.and_then(parse_retry_after);
        usage
    }

    /// Delay to wait before the next call, or `None` to go ahead now.
    ///
    /// The curve, with `p` = [`Usage::max_percent`] and `t` = `threshold_percent`:
    /// - `p < t`: no delay from usage;
    /// - `t <= p < 100`: `0.5 s + 59.5 s × ((p − t) / (100 − t))²` — 0.5 s at the threshold,
    ///   rising slowly at first and steeply near the limit (with `t = 80`: 85 % → 4.2 s,
    ///   90 % → 15.4 s, 95 % → 34 s, 99 % → 54 s);
    /// - `p >= 100` (throttled): 5 minutes.
    ///
    /// The result is then raised to at least `regain_access_minutes` and `Retry-After`. Those
    /// explicit waits from Meta are honoured even below the threshold: they mean "you are
    /// throttled now", whatever the percentages say.
    pub fn pace(&self, threshold_percent: u32) -> Option<Duration> {
        let from_usage = usage_delay(self.max_percent, threshold_percent);
        let explicit = [
            self.regain_access_minutes
                .map(|m| Duration::from_secs(u64::from(m) * 60)),
            self.retry_after_secs.map(Duration::from_secs),
        ]
        .into_iter()
        .flatten()
        .filter(|d| !d.is_zero())
        .max();
        match (from_usage, explicit) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Usage::pace`] with [`DEFAULT_PACE_THRESHOLD_PERCENT`].
    pub fn pace_default(&self) -> Option<Duration> {
        self.pace(DEFAULT_PACE_THRESHOLD_PERCENT)
    }
}

fn usage_delay(percent: u32, threshold: u32) -> Option<Duration> {
    if percent < threshold {
        return None;
    }
    if percent >= 100 {
        return Some(PACE_THROTTLED);
    }
    // Here threshold <= percent < 100, so 0 <= over < span <= 100.
    let over = u64::from(percent - threshold);
    let span = u64::from(100 - threshold);
    let extra_ms = (PACE_MAX - PACE_MIN).as_millis() as u64 * over * over / (span * span);
    Some(PACE_MIN + Duration::from_millis(extra_ms))
}

fn parse_json(raw: &str) -> Option<Value> {
    serde_json::from_str(raw.trim()).ok()
}

fn max_percent_of(obj: &serde_json::Map<String, Value>) -> u32 {
    PERCENT_KEYS
        .iter()
        .filter_map(|k| obj.get(*k))
        .map(non_negative_u32)
        .max()
        .unwrap_or(0)
}

/// A JSON number or numeric string as a non-negative integer (fractions rounded up, saturating);
/// anything else is 0.
fn non_negative_u32(v: &Value) -> u32 {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match f {
        Some(f) if f.is_finite() && f > 0.0 => f.ceil().min(f64::from(u32::MAX)) as u32,
        _ => 0,
    }
}

fn parse_retry_after(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(secs);
    }
    match raw.parse::<f64>() {
        // Cap at a day: a larger value is more likely garbage than advice.
        Ok(f) if f.is_finite() && f >= 0.0 => Some(f.ceil().min(86_400.0) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn app_usage_takes_highest_field() {
        let u = Usage::from_headers(
            Some(r#"{"call_count":28,"total_cputime":25,"total_time":43}"#),
            None,
            None,
        );
        assert_eq!(
            u,
            Usage {
                max_percent: 43,
                regain_access_minutes: None,
                retry_after_secs: None
            }
        );
    }

    #[test]
    fn buc_usage_across_ids_and_entries() {
        let buc = r#"{
            "112233": [{"type":"pages","call_count":12,"total_cputime":3,"total_time":5,"estimated_time_to_regain_access":0}],
            "445566": [
                {"type":"pages","call_count":91,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":7},
                {"type":"messenger","call_count":1,"total_cputime":96,"total_time":1,"estimated_time_to_regain_access":3}
            ]
        }"#;
        let u = Usage::from_headers(Some(r#"{"call_count":50}"#), Some(buc), None);
        assert_eq!(u.max_percent, 96);
        assert_eq!(u.regain_access_minutes, Some(7));
    }

    #[test]
    fn zero_regain_is_none() {
        let buc = r#"{"1":[{"type":"pages","call_count":1,"estimated_time_to_regain_access":0}]}"#;
        assert_eq!(
            Usage::from_headers(None, Some(buc), None).regain_access_minutes,
            None
        );
    }

    #[test]
    fn tolerant_parsing() {
        let garbage = [
            "",
            "   ",
            "not json",
            "{",
            "[]",
            "null",
            "42",
            r#"{"call_count":"abc"}"#,
            r#"{"call_count":-5,"total_time":null,"total_cputime":[1]}"#,
            r#"{"1":"x","2":[1,2,"y",null]}"#,
        ];
        for g in garbage {
            let u = Usage::from_headers(Some(g), Some(g), None);
            assert_eq!(u, Usage::default(), "{g:?}");
            assert_eq!(u.pace_default(), None);
        }
        // Numeric strings, floats, huge values, a single object instead of an array.
        let u = Usage::from_headers(
            Some(r#"{"call_count":"81","total_time":79.2}"#),
            Some(r#"{"9":{"call_count":1e12,"estimated_time_to_regain_access":"2"}}"#),
            None,
        );
        assert_eq!(u.max_percent, u32::MAX);
        assert_eq!(u.regain_access_minutes, Some(2));
        let u = Usage::from_headers(Some(r#"{"total_time":79.2}"#), None, None);
        assert_eq!(u.max_percent, 80);
    }

    #[test]
    fn retry_after_forms() {
        let ra = |s| Usage::from_headers(None, None, Some(s)).retry_after_secs;
        assert_eq!(ra("120"), Some(120));
        assert_eq!(ra(" 7 "), Some(7));
        assert_eq!(ra("1.2"), Some(2));
        assert_eq!(ra("1e9"), Some(86_400));
        assert_eq!(ra("-3"), None);
        assert_eq!(ra("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(ra(""), None);
    }

    #[test]
    fn no_delay_below_threshold() {
        let u = Usage {
            max_percent: 79,
            ..Usage::default()
        };
        assert_eq!(u.pace_default(), None);
        assert_eq!(u.pace(90), None);
        assert_eq!(Usage::default().pace_default(), None);
    }

    #[test]
    fn curve_points() {
        let at = |p| {
            Usage {
                max_percent: p,
                ..Usage::default()
            }
            .pace(80)
        };
        assert_eq!(at(80), Some(Duration::from_millis(500)));
        assert_eq!(at(85), Some(Duration::from_millis(500 + 59_500 / 16)));
        assert_eq!(at(90), Some(Duration::from_millis(500 + 59_500 / 4)));
        assert_eq!(
            at(99),
            Some(Duration::from_millis(500 + 59_500 * 361 / 400))
        );
        assert_eq!(at(100), secs(300));
        assert_eq!(at(250), secs(300));
        assert_eq!(at(u32::MAX), secs(300));
    }

    #[test]
    fn curve_is_monotonic_for_every_threshold() {
        for t in 0..=101 {
            let mut prev = Duration::ZERO;
            for p in 0..=120 {
                let d = Usage {
                    max_percent: p,
                    ..Usage::default()
                }
                .pace(t)
                .unwrap_or(Duration::ZERO);
                assert!(d >= prev, "t={t} p={p}");
                assert_eq!(d.is_zero(), p < t, "t={t} p={p}");
                prev = d;
            }
        }
    }

    #[test]
    fn regain_access_is_a_floor() {
        let u = Usage {
            max_percent: 90,
            regain_access_minutes: Some(3),
            retry_after_secs: None,
        };
        assert_eq!(u.pace_default(), secs(180));
        // Curve above the regain time: the curve wins.
        let u = Usage {
            max_percent: 100,
            regain_access_minutes: Some(1),
            retry_after_secs: None,
        };
        assert_eq!(u.pace_default(), secs(300));
    }

    #[test]
    fn explicit_waits_apply_below_threshold() {
        let u = Usage {
            max_percent: 10,
            regain_access_minutes: Some(2),
            retry_after_secs: Some(30),
        };
        assert_eq!(u.pace_default(), secs(120));
        let u = Usage {
            max_percent: 10,
            regain_access_minutes: None,
            retry_after_secs: Some(30),
        };
        assert_eq!(u.pace_default(), secs(30));
        let u = Usage {
            max_percent: 10,
            regain_access_minutes: None,
            retry_after_secs: Some(0),
        };
        assert_eq!(u.pace_default(), None);
    }

    #[test]
    fn end_to_end_from_headers() {
        let u = Usage::from_headers(
            Some(r#"{"call_count":95,"total_cputime":10,"total_time":12}"#),
            Some(
                r#"{"123":[{"type":"pages","call_count":100,"total_cputime":40,"total_time":20,"estimated_time_to_regain_access":12}]}"#,
            ),
            Some("60"),
        );
        assert_eq!(u.max_percent, 100);
        assert_eq!(u.pace_default(), secs(12 * 60));
    }
}
