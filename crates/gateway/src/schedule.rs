//! Schedules: SAM `Schedule` / `ScheduleV2` events as the catalog lists
//! them, their EventBridge expressions (`rate(...)`, `cron(...)`), when they
//! fire next, and the event a scheduled function receives.
//!
//! Expressions follow EventBridge's documented grammar exactly: `rate(1
//! minute)` / `rate(N minutes|hours|days)` (the singular unit only for 1),
//! and six-field `cron(minutes hours day-of-month month day-of-week year)`
//! with `,` `-` `*` `/` in every field, `?` `L` `W` in day-of-month, `?` `L`
//! `#` in day-of-week, names `JAN`-`DEC` and `SUN`-`SAT` (day-of-week 1 is
//! Sunday), years 1970-2199, and exactly one of day-of-month and
//! day-of-week set to `?`. Where the documentation is silent, Quartz's
//! rules (which EventBridge's syntax comes from) are followed: `LW` is the
//! last weekday of the month, `nW` never leaves the month, `nL` in
//! day-of-week is the last such weekday of the month, `L` alone in
//! day-of-week is Saturday. Not accepted: `L-n` offsets and ranges that
//! wrap around (`FRI-MON`).
//!
//! Time zones (`ScheduleExpressionTimezone`, IANA names; UTC by default)
//! follow EventBridge Scheduler: a cron time that does not exist (spring
//! forward) is skipped, a time that exists twice (fall back) runs once, at
//! its first occurrence; rates are fixed durations (a day is 24 hours).

use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{
    DateTime, Datelike as _, NaiveDate, NaiveDateTime, TimeZone as _, Timelike as _, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A schedule as the catalog lists it (`esb build` writes one per SAM
/// `Schedule`/`ScheduleV2` event, named `<Function>-<EventName>`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    pub function: String,
    /// `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    pub expression: String,
    /// The event's JSON text (`Input`); the EventBridge scheduled-event
    /// envelope when absent.
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// IANA time zone the expression is evaluated in; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub function: String,
    pub expression: ScheduleExpression,
    pub input: Option<String>,
    pub enabled: bool,
    pub timezone: Tz,
}

impl Schedule {
    /// Validates everything but the function's existence (the catalog
    /// checks that).
    pub fn parse(config: &ScheduleConfig) -> Result<Schedule, ScheduleError> {
        let name_ok = !config.name.is_empty()
            && config.name.len() <= 256
            && config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(ScheduleError::Name);
        }
        let expression = ScheduleExpression::parse(&config.expression)?;
        if let Some(input) = &config.input {
            serde_json::from_str::<serde::de::IgnoredAny>(input)
                .map_err(|e| ScheduleError::Input(e.to_string()))?;
        }
        let timezone = match config.timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => {
                Tz::from_str(name).map_err(|_| ScheduleError::Timezone(name.to_owned()))?
            }
        };
        Ok(Schedule {
            name: config.name.clone(),
            function: config.function.clone(),
            expression,
            input: config.input.clone(),
            enabled: config.enabled,
            timezone,
        })
    }

    /// What decides when the schedule fires: when it changes, runs are
    /// counted afresh (see the scheduler).
    pub fn definition(&self) -> String {
        format!(
            "{} {} {}",
            self.expression,
            self.timezone.name(),
            if self.enabled { "enabled" } else { "disabled" }
        )
    }

    /// The payload of one run scheduled at `time`: `input` when given,
    /// otherwise EventBridge's scheduled-event envelope.
    pub fn event(&self, time: DateTime<Utc>, region: &str, account: &str) -> String {
        if let Some(input) = &self.input {
            return input.clone();
        }
        // Field order as EventBridge sends it.
        #[derive(Serialize)]
        struct Envelope<'a> {
            version: &'a str,
            id: String,
            #[serde(rename = "detail-type")]
            detail_type: &'a str,
            source: &'a str,
            account: &'a str,
            time: String,
            region: &'a str,
            resources: [String; 1],
            detail: serde_json::Map<String, serde_json::Value>,
        }
        let envelope = Envelope {
            version: "0",
            id: uuid::Uuid::new_v4().to_string(),
            detail_type: "Scheduled Event",
            source: "aws.events",
            account,
            time: time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            region,
            resources: [format!(
                "arn:aws:events:{region}:{account}:rule/{}",
                self.name
            )],
            detail: serde_json::Map::new(),
        };
        // A struct of strings and an empty map always serializes.
        serde_json::to_string(&envelope).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the name must be 1-256 letters, digits, '-', '_' or '.'")]
    Name,
    #[error("{expression:?} is not a valid schedule expression: {reason}")]
    Expression { expression: String, reason: String },
    #[error("input is not JSON text: {0}")]
    Input(String),
    #[error("{0:?} is not a known IANA time zone")]
    Timezone(String),
}

/// `rate(...)` or `cron(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    Rate { every: Duration, text: String },
    Cron(Box<Cron>),
}

impl fmt::Display for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleExpression::Rate { text, .. } => f.write_str(text),
            ScheduleExpression::Cron(cron) => f.write_str(&cron.text),
        }
    }
}

/// The latest year a cron expression may name.
const MAX_YEAR: i32 = 2199;
const MIN_YEAR: i32 = 1970;

impl ScheduleExpression {
    pub fn parse(text: &str) -> Result<ScheduleExpression, ScheduleError> {
        let fail = |reason: String| ScheduleError::Expression {
            expression: text.to_owned(),
            reason,
        };
        if let Some(body) = text.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = body.split_whitespace();
            let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(fail(
                    "a rate is rate(value unit), e.g. rate(5 minutes)".into(),
                ));
            };
            let value: u32 = value.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                fail(format!(
                    "the value {value:?} is not a positive whole number"
                ))
            })?;
            let (singular, plural, seconds) = match unit {
                "minute" | "minutes" => ("minute", "minutes", 60),
                "hour" | "hours" => ("hour", "hours", 3600),
                "day" | "days" => ("day", "days", 86_400),
                other => {
                    return Err(fail(format!(
                        "the unit {other:?} is not minute(s), hour(s) or day(s)"
                    )))
                }
            };
            let expected = if value == 1 { singular } else { plural };
            if unit != expected {
                return Err(fail(format!(
                    "with the value {value} the unit is {expected:?}"
                )));
            }
            return Ok(ScheduleExpression::Rate {
                every: Duration::from_secs(u64::from(value) * seconds),
                text: text.to_owned(),
            });
        }
        if let Some(body) = text.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Cron::parse(body, text)
                .map(|c| ScheduleExpression::Cron(Box::new(c)))
                .map_err(fail);
        }
        Err(fail("it must be rate(...) or cron(...)".into()))
    }
}

/// A parsed `cron(...)`: sets of allowed values per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    /// Bit n: minute n.
    minutes: u64,
    /// Bit n: hour n.
    hours: u32,
    days: Days,
    /// Bit n: month n (1-12).
    months: u16,
    /// Bit n: year 1970 + n.
    years: Vec<bool>,
}

/// Which days of a month: from day-of-month or from day-of-week (the other
/// is `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// Bit n: day n of the month.
    OfMonth(u32),
    /// `L`: the last day of the month.
    LastOfMonth,
    /// `LW`: the last weekday (Monday-Friday) of the month.
    LastWeekdayOfMonth,
    /// `nW`: the weekday nearest to day n, within the month.
    NearestWeekday(u32),
    /// Bit n: day of week n (1 = Sunday ... 7 = Saturday).
    OfWeek(u8),
    /// `nL`: the last day-of-week n of the month.
    LastOfWeek(u32),
    /// `n#k`: the k-th day-of-week n of the month.
    NthOfWeek { weekday: u32, nth: u32 },
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One cron field's bounds and value names.
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

impl Field {
    fn value(&self, token: &str) -> Result<u32, String> {
        let value = match token.parse::<u32>() {
            Ok(v) => v,
            Err(_) => self
                .names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(token))
                .map(|i| self.min + i as u32)
                .ok_or_else(|| format!("{:?} is not a valid {}", token, self.what))?,
        };
        if !(self.min..=self.max).contains(&value) {
            return Err(format!(
                "{} {value} is out of range {}-{}",
                self.what, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// `*`, `n`, `a-b`, `*/s`, `n/s`, `a-b/s`, and lists of them: the
    /// allowed values.
    fn values(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!(
                            "increment {step:?} in the {} field is not a positive number",
                            self.what
                        )
                    })?;
                    (range, Some(step))
                }
                None => (item, None),
            };
            let (start, end) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!(
                        "range {range:?} in the {} field runs backwards",
                        self.what
                    ));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `n/s` runs from n to the end of the field.
                (a, if step.is_some() { self.max } else { a })
            };
            out.extend((start..=end).step_by(step.unwrap_or(1) as usize));
        }
        Ok(out)
    }
}

const MINUTE: Field = Field {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    what: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    what: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const DAY_OF_WEEK: Field = Field {
    what: "day-of-week",
    min: 1,
    max: 7,
    names: &WEEKDAYS,
};
const YEAR: Field = Field {
    what: "year",
    min: MIN_YEAR as u32,
    max: MAX_YEAR as u32,
    names: &[],
};

fn bits<T: From<u8> + std::ops::BitOr<Output = T> + std::ops::Shl<u32, Output = T>>(
    values: &[u32],
) -> T {
    values
        .iter()
        .fold(T::from(0), |acc, v| acc | (T::from(1) << *v))
}

impl Cron {
    fn parse(body: &str, text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields[..] else {
            return Err(format!(
                "a cron expression has six fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            ));
        };
        let days = match (dom, dow) {
            ("?", "?") => {
                return Err("day-of-month and day-of-week cannot both be ?".into());
            }
            (dom, "?") => Cron::days_of_month(dom)?,
            ("?", dow) => Cron::days_of_week(dow)?,
            _ => {
                return Err(
                    "one of day-of-month and day-of-week must be ? (they cannot both be given)"
                        .into(),
                )
            }
        };
        let mut years = vec![false; (MAX_YEAR - MIN_YEAR + 1) as usize];
        for y in YEAR.values(year)? {
            years[(y - MIN_YEAR as u32) as usize] = true;
        }
        Ok(Cron {
            text: text.to_owned(),
            minutes: bits(&MINUTE.values(minutes)?),
            hours: bits(&HOUR.values(hours)?),
            days,
            months: bits(&MONTH.values(month)?),
            years,
        })
    }

    fn days_of_month(field: &str) -> Result<Days, String> {
        if field == "L" {
            return Ok(Days::LastOfMonth);
        }
        if field == "LW" {
            return Ok(Days::LastWeekdayOfMonth);
        }
        if let Some(day) = field.strip_suffix('W') {
            return Ok(Days::NearestWeekday(DAY_OF_MONTH.value(day)?));
        }
        if field.contains(['L', 'W']) {
            return Err(format!(
                "{field:?}: L and W stand alone in the day-of-month field (L, LW or nW)"
            ));
        }
        Ok(Days::OfMonth(bits(&DAY_OF_MONTH.values(field)?)))
    }

    fn days_of_week(field: &str) -> Result<Days, String> {
        if field == "L" {
            // The last day of the week: Saturday.
            return Ok(Days::OfWeek(1 << 7));
        }
        if let Some((weekday, nth)) = field.split_once('#') {
            if field.contains(',') {
                return Err(format!(
                    "{field:?}: a day-of-week with # must be the field's only expression"
                ));
            }
            let weekday = DAY_OF_WEEK.value(weekday)?;
            let nth = nth
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| format!("{field:?}: the instance after # must be 1-5"))?;
            return Ok(Days::NthOfWeek { weekday, nth });
        }
        if let Some(weekday) = field.strip_suffix('L') {
            return Ok(Days::LastOfWeek(DAY_OF_WEEK.value(weekday)?));
        }
        if field.contains('L') {
            return Err(format!(
                "{field:?}: L stands alone in the day-of-week field (L or nL)"
            ));
        }
        Ok(Days::OfWeek(bits(&DAY_OF_WEEK.values(field)?)))
    }

    fn year_allowed(&self, year: i32) -> bool {
        (MIN_YEAR..=MAX_YEAR).contains(&year) && self.years[(year - MIN_YEAR) as usize]
    }

    fn day_allowed(&self, date: NaiveDate) -> bool {
        let day = date.day();
        let last = last_day_of_month(date.year(), date.month());
        // 1 = Sunday ... 7 = Saturday.
        let weekday = date.weekday().num_days_from_sunday() + 1;
        let is_weekday = |d: u32| {
            let w = NaiveDate::from_ymd_opt(date.year(), date.month(), d)
                .map(|d| d.weekday().num_days_from_sunday() + 1);
            matches!(w, Some(2..=6))
        };
        match &self.days {
            Days::OfMonth(set) => set & (1 << day) != 0,
            Days::LastOfMonth => day == last,
            Days::LastWeekdayOfMonth => (1..=last).rev().find(|d| is_weekday(*d)) == Some(day),
            Days::NearestWeekday(n) => {
                if *n > last {
                    return false;
                }
                let target = match NaiveDate::from_ymd_opt(date.year(), date.month(), *n)
                    .map(|d| d.weekday().num_days_from_sunday() + 1)
                {
                    // Saturday: the Friday before, or Monday when that leaves the month.
                    Some(7) if *n == 1 => 3,
                    Some(7) => n - 1,
                    // Sunday: the Monday after, or Friday when that leaves the month.
                    Some(1) if *n == last => n - 2,
                    Some(1) => n + 1,
                    _ => *n,
                };
                day == target
            }
            Days::OfWeek(set) => set & (1 << weekday) != 0,
            Days::LastOfWeek(w) => weekday == *w && day + 7 > last,
            Days::NthOfWeek { weekday: w, nth } => weekday == *w && (day - 1) / 7 + 1 == *nth,
        }
    }

    /// The first time this expression names strictly after `after`, in
    /// `tz`; `None` when there is none (the years have passed).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        // The next whole minute after `after`, in local time.
        let start = local.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let mut date = start.date();
        let mut first_day = true;
        loop {
            if date.year() > MAX_YEAR {
                return None;
            }
            if !self.year_allowed(date.year()) {
                date = NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)?;
                first_day = false;
                continue;
            }
            if self.months & (1 << date.month()) == 0 {
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                date = NaiveDate::from_ymd_opt(y, m, 1)?;
                first_day = false;
                continue;
            }
            if self.day_allowed(date) {
                let (from_hour, from_minute) = if first_day {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for hour in from_hour..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let from = if first_day && hour == from_hour {
                        from_minute
                    } else {
                        0
                    };
                    for minute in from..60 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let naive = NaiveDateTime::new(
                            date,
                            chrono::NaiveTime::from_hms_opt(hour, minute, 0)?,
                        );
                        // Skipped when the clock jumps over it; the first
                        // of two when it exists twice.
                        let Some(at) = tz.from_local_datetime(&naive).earliest() else {
                            continue;
                        };
                        let at = at.with_timezone(&Utc);
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
            first_day = false;
        }
    }
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

impl ScheduleExpression {
    /// When the schedule runs next, strictly after `after`. A rate counts
    /// from `anchor` (its first run), so it runs at `anchor + k * every`.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        anchor: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        match self {
            ScheduleExpression::Rate { every, .. } => {
                if after < anchor {
                    return Some(anchor);
                }
                let every = chrono::Duration::from_std(*every).ok()?;
                let every_ms = every.num_milliseconds().max(1);
                let elapsed = (after - anchor).num_milliseconds();
                let periods = elapsed / every_ms + 1;
                Some(anchor + chrono::Duration::milliseconds(periods * every_ms))
            }
            ScheduleExpression::Cron(cron) => cron.next_after(after, tz),
        }
    }

    /// The latest run in `(after, until]`, if any: what a scheduler that
    /// was not running catches up with (one run, not every missed one).
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        anchor: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let first = self.next_after(after, anchor, tz).filter(|t| *t <= until)?;
        match self {
            ScheduleExpression::Rate { every, .. } => {
                let every_ms = i64::try_from(every.as_millis()).ok()?.max(1);
                let periods = (until - first).num_milliseconds() / every_ms;
                Some(first + chrono::Duration::milliseconds(periods * every_ms))
            }
            ScheduleExpression::Cron(cron) => {
                let mut latest = first;
                while let Some(next) = cron.next_after(latest, tz).filter(|t| *t <= until) {
                    latest = next;
                }
                Some(latest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .with_timezone(&Utc)
    }

    fn cron(text: &str) -> ScheduleExpression {
        ScheduleExpression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The next `n` runs after `from`, in UTC, as RFC 3339.
    fn runs(text: &str, from: &str, n: usize) -> Vec<String> {
        runs_in(text, from, n, Tz::UTC)
    }

    fn runs_in(text: &str, from: &str, n: usize, tz: Tz) -> Vec<String> {
        let expression = cron(text);
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = expression.next_after(t, t, tz).expect("a next run");
            out.push(t.format("%Y-%m-%dT%H:%M:%SZ %a").to_string());
        }
        out
    }

    #[test]
    fn rates_follow_eventbridge_units() {
        for (text, seconds) in [
            ("rate(1 minute)", 60),
            ("rate(5 minutes)", 300),
            ("rate(1 hour)", 3600),
            ("rate(12 hours)", 43_200),
            ("rate(1 day)", 86_400),
            ("rate(7 days)", 604_800),
        ] {
            match cron(text) {
                ScheduleExpression::Rate { every, .. } => {
                    assert_eq!(every, Duration::from_secs(seconds), "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1.5 hours)",
            "rate(1 second)",
            "rate(2 weeks)",
            "rate(5)",
            "rate(5 minutes",
            "rate(5 minutes extra)",
            "every 5 minutes",
        ] {
            assert!(ScheduleExpression::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_rate_runs_from_its_anchor() {
        let e = cron("rate(5 minutes)");
        let anchor = at("2026-01-01T10:00:30Z");
        assert_eq!(
            e.next_after(at("2026-01-01T09:00:00Z"), anchor, Tz::UTC),
            Some(anchor),
            "the first run is the anchor itself"
        );
        assert_eq!(
            e.next_after(anchor, anchor, Tz::UTC),
            Some(at("2026-01-01T10:05:30Z"))
        );
        assert_eq!(
            e.next_after(at("2026-01-01T10:12:00Z"), anchor, Tz::UTC),
            Some(at("2026-01-01T10:15:30Z"))
        );
        // Down from 10:01 to 10:27: one run to catch up, the latest missed.
        assert_eq!(
            e.latest_between(
                at("2026-01-01T10:00:30Z"),
                at("2026-01-01T10:27:00Z"),
                anchor,
                Tz::UTC
            ),
            Some(at("2026-01-01T10:25:30Z"))
        );
        assert_eq!(
            e.latest_between(
                at("2026-01-01T10:00:30Z"),
                at("2026-01-01T10:05:00Z"),
                anchor,
                Tz::UTC
            ),
            None
        );
    }

    #[test]
    fn aws_documented_examples() {
        // Run at 10:00 am (UTC+0) every day.
        assert_eq!(
            runs("cron(0 10 * * ? *)", "2026-03-04T10:00:00Z", 2),
            ["2026-03-05T10:00:00Z Thu", "2026-03-06T10:00:00Z Fri"]
        );
        // Run at 12:15 pm (UTC+0) every day.
        assert_eq!(
            runs("cron(15 12 * * ? *)", "2026-03-04T12:14:59Z", 2),
            ["2026-03-04T12:15:00Z Wed", "2026-03-05T12:15:00Z Thu"]
        );
        // Run at 6:00 pm (UTC+0) every Monday through Friday.
        assert_eq!(
            runs("cron(0 18 ? * MON-FRI *)", "2026-03-05T18:00:00Z", 3),
            [
                "2026-03-06T18:00:00Z Fri",
                "2026-03-09T18:00:00Z Mon",
                "2026-03-10T18:00:00Z Tue"
            ]
        );
        // Run at 8:00 am (UTC+0) every first day of the month.
        assert_eq!(
            runs("cron(0 8 1 * ? *)", "2026-01-15T00:00:00Z", 3),
            [
                "2026-02-01T08:00:00Z Sun",
                "2026-03-01T08:00:00Z Sun",
                "2026-04-01T08:00:00Z Wed"
            ]
        );
        // Run every 15 minutes.
        assert_eq!(
            runs("cron(0/15 * * * ? *)", "2026-03-04T10:50:00Z", 3),
            [
                "2026-03-04T11:00:00Z Wed",
                "2026-03-04T11:15:00Z Wed",
                "2026-03-04T11:30:00Z Wed"
            ]
        );
        // Run every 10 minutes Monday through Friday.
        assert_eq!(
            runs("cron(0/10 * ? * MON-FRI *)", "2026-03-06T23:45:00Z", 2),
            ["2026-03-06T23:50:00Z Fri", "2026-03-09T00:00:00Z Mon"]
        );
        // Run every 5 minutes Monday through Friday between 8:00 am and
        // 5:55 pm (UTC+0).
        assert_eq!(
            runs("cron(0/5 8-17 ? * MON-FRI *)", "2026-03-06T17:50:00Z", 3),
            [
                "2026-03-06T17:55:00Z Fri",
                "2026-03-09T08:00:00Z Mon",
                "2026-03-09T08:05:00Z Mon"
            ]
        );
        // Run at 9 am (UTC) the first Monday of each month.
        assert_eq!(
            runs("cron(0 9 ? * 2#1 *)", "2026-03-02T09:00:00Z", 3),
            [
                "2026-04-06T09:00:00Z Mon",
                "2026-05-04T09:00:00Z Mon",
                "2026-06-01T09:00:00Z Mon"
            ]
        );
        // The 1/10 example of the wildcard table: minutes 1, 11, 21...
        assert_eq!(
            runs("cron(1/10 * * * ? *)", "2026-03-04T10:00:00Z", 2),
            ["2026-03-04T10:01:00Z Wed", "2026-03-04T10:11:00Z Wed"]
        );
        // 3#2: the second Tuesday.
        assert_eq!(
            runs("cron(0 0 ? * 3#2 *)", "2026-03-01T00:00:00Z", 1),
            ["2026-03-10T00:00:00Z Tue"]
        );
    }

    #[test]
    fn last_and_weekday_wildcards() {
        // L: the last day of the month, leap years included.
        assert_eq!(
            runs("cron(0 0 L * ? *)", "2028-01-31T00:00:00Z", 3),
            [
                "2028-02-29T00:00:00Z Tue",
                "2028-03-31T00:00:00Z Fri",
                "2028-04-30T00:00:00Z Sun"
            ]
        );
        // 15W: 2026-03-15 is a Sunday → Monday the 16th; 2026-08-15 is a
        // Saturday → Friday the 14th; 2026-04-15 is a Wednesday.
        assert_eq!(
            runs("cron(0 12 15W * ? *)", "2026-03-01T00:00:00Z", 2),
            ["2026-03-16T12:00:00Z Mon", "2026-04-15T12:00:00Z Wed"]
        );
        assert_eq!(
            runs("cron(0 12 15W * ? *)", "2026-08-01T00:00:00Z", 1),
            ["2026-08-14T12:00:00Z Fri"]
        );
        // 1W never leaves the month: 2026-08-01 is a Saturday → Monday the 3rd.
        assert_eq!(
            runs("cron(0 12 1W AUG ? *)", "2026-07-01T00:00:00Z", 1),
            ["2026-08-03T12:00:00Z Mon"]
        );
        // 31W: 2026-05-31 is a Sunday → Friday the 29th; months without a
        // 31st are skipped.
        assert_eq!(
            runs("cron(0 12 31W * ? *)", "2026-04-01T00:00:00Z", 1),
            ["2026-05-29T12:00:00Z Fri"]
        );
        // LW: the last weekday; 2026-05-31 is a Sunday.
        assert_eq!(
            runs("cron(0 12 LW * ? *)", "2026-05-01T00:00:00Z", 1),
            ["2026-05-29T12:00:00Z Fri"]
        );
        // 6L: the last Friday of the month.
        assert_eq!(
            runs("cron(0 12 ? * 6L *)", "2026-03-01T00:00:00Z", 2),
            ["2026-03-27T12:00:00Z Fri", "2026-04-24T12:00:00Z Fri"]
        );
        // L alone in day-of-week: Saturday.
        assert_eq!(
            runs("cron(0 12 ? * L *)", "2026-03-01T00:00:00Z", 1),
            ["2026-03-07T12:00:00Z Sat"]
        );
    }

    #[test]
    fn lists_names_steps_and_years() {
        assert_eq!(
            runs(
                "cron(0,30 9 ? JAN,jul SUN,SAT 2027)",
                "2026-01-01T00:00:00Z",
                3
            ),
            [
                "2027-01-02T09:00:00Z Sat",
                "2027-01-02T09:30:00Z Sat",
                "2027-01-03T09:00:00Z Sun"
            ]
        );
        assert_eq!(
            runs("cron(0 0 1 1 ? 2030-2040/5)", "2026-01-01T00:00:00Z", 3),
            [
                "2030-01-01T00:00:00Z Tue",
                "2035-01-01T00:00:00Z Mon",
                "2040-01-01T00:00:00Z Sun"
            ]
        );
        assert_eq!(
            runs("cron(*/20 1-2 * * ? *)", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T01:00:00Z Thu",
                "2026-01-01T01:20:00Z Thu",
                "2026-01-01T01:40:00Z Thu",
                "2026-01-01T02:00:00Z Thu"
            ]
        );
        // February 30th never comes; 2199 is the last year.
        let never = cron("cron(0 0 30 2 ? *)");
        assert_eq!(
            never.next_after(
                at("2026-01-01T00:00:00Z"),
                at("2026-01-01T00:00:00Z"),
                Tz::UTC
            ),
            None
        );
        let past = cron("cron(0 0 1 1 ? 1999)");
        assert_eq!(
            past.next_after(
                at("2026-01-01T00:00:00Z"),
                at("2026-01-01T00:00:00Z"),
                Tz::UTC
            ),
            None
        );
    }

    #[test]
    fn invalid_cron_expressions_are_refused() {
        for bad in [
            "cron(0 12 * * ? )",
            "cron(0 12 * * * *)",
            "cron(0 12 ? * ? *)",
            "cron(0 12 1 * MON *)",
            "cron(60 12 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 12 0 * ? *)",
            "cron(0 12 32 * ? *)",
            "cron(0 12 * 13 ? *)",
            "cron(0 12 ? * 8 *)",
            "cron(0 12 ? * 0 *)",
            "cron(0 12 * * ? 1969)",
            "cron(0 12 * * ? 2200)",
            "cron(0 12 ? * 3#1,6#3 *)",
            "cron(0 12 ? * 3#6 *)",
            "cron(0 12 ? * FRI-MON *)",
            "cron(0 0/0 * * ? *)",
            "cron(0 12 L-2 * ? *)",
            "cron(0 12 ? FOO * ? *)",
            "cron(0 12 1,L * ? *)",
            "cron(a 12 * * ? *)",
            "cron 0 12 * * ? *",
        ] {
            assert!(ScheduleExpression::parse(bad).is_err(), "{bad} accepted");
        }
        let err = ScheduleExpression::parse("cron(0 12 1 * MON *)").expect_err("both");
        assert!(err.to_string().contains("must be ?"), "{err}");
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let ny: Tz = "America/New_York".parse().expect("tz");
        // 9:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
        assert_eq!(
            runs_in("cron(0 9 * * ? *)", "2026-03-07T00:00:00Z", 2, ny),
            ["2026-03-07T14:00:00Z Sat", "2026-03-08T13:00:00Z Sun"]
        );
        // 2:30 does not exist on 2026-03-08 in New York: skipped.
        assert_eq!(
            runs_in("cron(30 2 * * ? *)", "2026-03-07T00:00:00Z", 2, ny),
            ["2026-03-07T07:30:00Z Sat", "2026-03-09T06:30:00Z Mon"]
        );
        // 1:30 exists twice on 2026-11-01: it runs once, at the first.
        assert_eq!(
            runs_in("cron(30 1 * * ? *)", "2026-10-31T12:00:00Z", 2, ny),
            ["2026-11-01T05:30:00Z Sun", "2026-11-02T06:30:00Z Mon"]
        );
    }

    #[test]
    fn catching_up_runs_the_latest_missed_only() {
        let e = cron("cron(0/15 * * * ? *)");
        let anchor = at("2026-01-01T00:00:00Z");
        assert_eq!(
            e.latest_between(
                at("2026-01-01T10:00:00Z"),
                at("2026-01-01T12:20:00Z"),
                anchor,
                Tz::UTC
            ),
            Some(at("2026-01-01T12:15:00Z"))
        );
        assert_eq!(
            e.latest_between(
                at("2026-01-01T10:00:00Z"),
                at("2026-01-01T10:14:59Z"),
                anchor,
                Tz::UTC
            ),
            None
        );
    }

    #[test]
    fn schedules_validate_and_build_events() {
        let config = ScheduleConfig {
            name: "Nightly-Tick".into(),
            function: "worker".into(),
            expression: "cron(0 3 * * ? *)".into(),
            input: None,
            enabled: true,
            timezone: Some("Europe/Paris".into()),
        };
        let schedule = Schedule::parse(&config).expect("valid");
        assert_eq!(schedule.timezone, chrono_tz::Europe::Paris);
        let event = schedule.event(at("2026-05-01T01:00:00Z"), "eu-west-1", "123456789012");
        let keys: Vec<&str> = [
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        ]
        .into_iter()
        .collect();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                event
                    .find(&format!("\"{k}\""))
                    .unwrap_or_else(|| panic!("{k} in {event}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "field order: {event}"
        );
        let v: serde_json::Value = serde_json::from_str(&event).expect("json");
        assert_eq!(v["version"], "0");
        assert_eq!(v["detail-type"], "Scheduled Event");
        assert_eq!(v["source"], "aws.events");
        assert_eq!(v["account"], "123456789012");
        assert_eq!(v["region"], "eu-west-1");
        assert_eq!(v["time"], "2026-05-01T01:00:00Z");
        assert_eq!(
            v["resources"][0],
            "arn:aws:events:eu-west-1:123456789012:rule/Nightly-Tick"
        );
        assert_eq!(v["detail"], serde_json::json!({}));
        assert!(uuid::Uuid::parse_str(v["id"].as_str().expect("id")).is_ok());

        let with_input = Schedule::parse(&ScheduleConfig {
            input: Some(r#"{"job": "report"}"#.into()),
            ..config.clone()
        })
        .expect("valid");
        assert_eq!(
            with_input.event(at("2026-05-01T01:00:00Z"), "r", "a"),
            r#"{"job": "report"}"#
        );

        for (bad, what) in [
            (
                ScheduleConfig {
                    name: "a b".into(),
                    ..config.clone()
                },
                "name",
            ),
            (
                ScheduleConfig {
                    input: Some("{oops".into()),
                    ..config.clone()
                },
                "JSON",
            ),
            (
                ScheduleConfig {
                    timezone: Some("Mars/Base".into()),
                    ..config.clone()
                },
                "Mars/Base",
            ),
            (
                ScheduleConfig {
                    expression: "rate(1 minutes)".into(),
                    ..config.clone()
                },
                "rate(1 minutes)",
            ),
        ] {
            let err = Schedule::parse(&bad).expect_err(what).to_string();
            assert!(err.contains(what), "{err}");
        }
    }
}
