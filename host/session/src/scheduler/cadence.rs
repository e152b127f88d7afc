//! When a job runs: a 5-field cron expression in an IANA time zone (croner over the IANA
//! database bundled with jiff, so results do not depend on the machine's zoneinfo), a
//! fixed interval, or once at an RFC 3339 instant.
//!
//! Daylight-saving time, for cron (documented in docs/guide/scheduler.md, tested below):
//! - a wall time that does not exist (the hour skipped in spring) runs once, at the
//!   first valid instant after it (02:30 in a 02:00→03:00 gap runs at 03:00);
//! - a wall time that exists twice (the hour repeated in autumn) runs once, at its first
//!   occurrence (summer time); the repetition is not run again.
//!
//! Intervals and one-off times are instants: DST does not move them.

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, TimeZone};
use std::time::Duration;

/// A time zone of the IANA database as a chrono time zone, for croner.
#[derive(Clone, Debug)]
pub struct Zone(jiff::tz::TimeZone);

/// [`Zone`]'s offset at one instant (carries the zone, as chrono wants).
#[derive(Clone, Debug)]
pub struct ZoneOffset {
    zone: Zone,
    offset: FixedOffset,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.offset
    }
}

fn fixed(o: jiff::tz::Offset) -> FixedOffset {
    use chrono::Offset as _;
    // Every offset jiff has is within chrono's range (under 24 h).
    FixedOffset::east_opt(o.seconds()).unwrap_or_else(|| chrono::Utc.fix())
}

impl Zone {
    /// The zone named `name` (`Europe/Berlin`, `UTC`); `None` if the database has none.
    pub fn get(name: &str) -> Option<Zone> {
        jiff::tz::TimeZone::get(name).ok().map(Zone)
    }

    fn at(&self, o: jiff::tz::Offset) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            offset: fixed(o),
        }
    }

    fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
        use chrono::{Datelike, Timelike};
        jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            i8::try_from(local.month()).ok()?,
            i8::try_from(local.day()).ok()?,
            i8::try_from(local.hour()).ok()?,
            i8::try_from(local.minute()).ok()?,
            i8::try_from(local.second()).ok()?,
            0,
        )
        .ok()
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        match local.and_hms_opt(0, 0, 0) {
            Some(dt) => self.offset_from_local_datetime(&dt),
            None => MappedLocalTime::None,
        }
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        use jiff::tz::AmbiguousOffset;
        let Some(civil) = Zone::civil(local) else {
            return MappedLocalTime::None;
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => MappedLocalTime::Single(self.at(offset)),
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            // The earlier instant first: croner takes it.
            AmbiguousOffset::Fold { before, after } => {
                MappedLocalTime::Ambiguous(self.at(before), self.at(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        match utc.and_hms_opt(0, 0, 0) {
            Some(dt) => self.offset_from_utc_datetime(&dt),
            None => self.at(jiff::tz::Offset::UTC),
        }
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let ts = jiff::Timestamp::from_second(utc.and_utc().timestamp())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.at(self.0.to_offset(ts))
    }
}

/// How a job's times are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cron,
    Interval,
    Once,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cron => "cron",
            Kind::Interval => "interval",
            Kind::Once => "once",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "cron" => Some(Kind::Cron),
            "interval" => Some(Kind::Interval),
            "once" => Some(Kind::Once),
            _ => None,
        }
    }
}

/// A parsed cadence.
#[derive(Debug, Clone)]
pub enum Cadence {
    Cron {
        cron: Box<croner::Cron>,
        zone: Zone,
    },
    /// Every `every`, counted from `anchor_ms` (the job's creation).
    Interval {
        every: Duration,
        anchor_ms: i64,
    },
    Once {
        at_ms: i64,
    },
}

/// A cadence refused: the field at fault and what is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn refuse(field: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        field,
        message: message.into(),
    }
}

/// A time zone name refused with what is valid.
pub fn zone(name: &str) -> Result<Zone, Refused> {
    Zone::get(name).ok_or_else(|| {
        refuse(
            "timezone",
            format!(
                "`{name}` is not a time zone of the IANA database; give a name such as `Europe/Berlin`, `America/New_York`, `Asia/Kolkata` or `UTC`"
            ),
        )
    })
}

/// Parse an RFC 3339 instant (`2026-03-29T08:00:00+02:00`, `…Z`) to Unix milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Unix milliseconds as RFC 3339 in UTC, to the second.
pub fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.round(jiff::Unit::Second)
                .unwrap_or(t)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_default()
}

impl Cadence {
    /// Check and parse a cadence as given at creation (`now_ms` refuses a one-off time in
    /// the past; `min_interval` an interval below it). `anchor_ms` is when interval
    /// counting starts.
    pub fn parse(
        kind: Kind,
        value: &str,
        timezone: &str,
        min_interval: Duration,
        now_ms: i64,
        anchor_ms: i64,
    ) -> Result<Cadence, Refused> {
        Cadence::checked(kind, value, timezone, min_interval, Some(now_ms), anchor_ms)
    }

    /// Parse a stored cadence (checked at creation; a one-off time now past, or an
    /// interval below a minimum raised since, is not refused).
    pub fn stored(
        kind: Kind,
        value: &str,
        timezone: &str,
        anchor_ms: i64,
    ) -> Result<Cadence, Refused> {
        Cadence::checked(
            kind,
            value,
            timezone,
            Duration::from_secs(1),
            None,
            anchor_ms,
        )
    }

    fn checked(
        kind: Kind,
        value: &str,
        timezone: &str,
        min_interval: Duration,
        now_ms: Option<i64>,
        anchor_ms: i64,
    ) -> Result<Cadence, Refused> {
        let value = value.trim();
        match kind {
            Kind::Cron => {
                let fields = value.split_whitespace().count();
                if fields != 5 {
                    return Err(refuse(
                        "cadence_value",
                        format!(
                            "`{value}` has {fields} field(s); a cron expression has 5: minute hour day-of-month month day-of-week, e.g. `0 8 * * 1-5` for 08:00 on weekdays"
                        ),
                    ));
                }
                let cron = croner::Cron::new(value).parse().map_err(|e| {
                    refuse(
                        "cadence_value",
                        format!(
                            "`{value}` is not a valid cron expression ({e}); 5 fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6, 0 = Sunday), e.g. `*/15 * * * *`"
                        ),
                    )
                })?;
                let zone = zone(timezone)?;
                let c = Cadence::Cron {
                    cron: Box::new(cron),
                    zone,
                };
                if let Some(now_ms) = now_ms
                    && c.next_after(now_ms).is_none()
                {
                    return Err(refuse(
                        "cadence_value",
                        format!("`{value}` never matches a future time"),
                    ));
                }
                Ok(c)
            }
            Kind::Interval => {
                let secs: u64 = value.parse().map_err(|_| {
                    refuse(
                        "cadence_value",
                        format!(
                            "`{value}` is not a whole number of seconds; an interval is given in seconds, at least {}",
                            min_interval.as_secs()
                        ),
                    )
                })?;
                if secs < min_interval.as_secs() || secs == 0 {
                    return Err(refuse(
                        "cadence_value",
                        format!(
                            "an interval of {secs} s is below the minimum of {} s ([scheduler] min_interval_secs)",
                            min_interval.as_secs().max(1)
                        ),
                    ));
                }
                if secs > 366 * 24 * 3600 {
                    return Err(refuse(
                        "cadence_value",
                        format!("an interval of {secs} s is over a year; use a cron expression"),
                    ));
                }
                Ok(Cadence::Interval {
                    every: Duration::from_secs(secs),
                    anchor_ms,
                })
            }
            Kind::Once => {
                let at_ms = rfc3339_ms(value).ok_or_else(|| {
                    refuse(
                        "cadence_value",
                        format!(
                            "`{value}` is not an RFC 3339 time; give one with its offset, e.g. `2026-05-01T09:00:00+02:00` or `2026-05-01T07:00:00Z`"
                        ),
                    )
                })?;
                if let Some(now_ms) = now_ms
                    && at_ms <= now_ms
                {
                    return Err(refuse(
                        "cadence_value",
                        format!(
                            "{value} is in the past (it is now {}); give a future time",
                            format_ms(now_ms)
                        ),
                    ));
                }
                Ok(Cadence::Once { at_ms })
            }
        }
    }

    /// The first time strictly after `after_ms` (Unix milliseconds) the job is due;
    /// `None` when there is none (a one-off that is past).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Cadence::Once { at_ms } => (*at_ms > after_ms).then_some(*at_ms),
            Cadence::Interval { every, anchor_ms } => {
                let every = i64::try_from(every.as_millis()).ok()?.max(1);
                if after_ms < *anchor_ms {
                    return Some(anchor_ms + every);
                }
                let k = (after_ms - anchor_ms) / every + 1;
                anchor_ms.checked_add(k.checked_mul(every)?)
            }
            Cadence::Cron { cron, zone } => {
                let secs = after_ms.div_euclid(1000);
                let mut from = zone.timestamp_opt(secs, 0).single()?;
                // croner searches wall times; in a repeated hour its answer can be the
                // first pass, which is before `after`: search on from there, so a time
                // that exists twice runs once.
                for _ in 0..10_000 {
                    let next = cron.find_next_occurrence(&from, false).ok()?;
                    let ms = next.timestamp().checked_mul(1000)?;
                    if ms > after_ms {
                        return Some(ms);
                    }
                    from = next;
                }
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        rfc3339_ms(s).unwrap()
    }

    fn cron(expr: &str, tz: &str) -> Cadence {
        Cadence::parse(Kind::Cron, expr, tz, Duration::from_secs(60), 0, 0).unwrap()
    }

    /// The next `n` fire times after `from`, as RFC 3339 UTC.
    fn next_n(c: &Cadence, from: &str, n: usize) -> Vec<String> {
        let mut t = ms(from);
        (0..n)
            .map(|_| {
                t = c.next_after(t).unwrap();
                format_ms(t)
            })
            .collect()
    }

    #[test]
    fn cron_in_a_zone_without_dst_change() {
        let c = cron("0 8 * * 1-5", "Asia/Kolkata");
        // Friday 2026-03-27 10:00 IST → Monday 08:00 IST = 02:30 UTC.
        assert_eq!(
            next_n(&c, "2026-03-27T04:30:00Z", 2),
            ["2026-03-30T02:30:00Z", "2026-03-31T02:30:00Z"]
        );
    }

    #[test]
    fn berlin_spring_gap_runs_once_at_the_first_valid_time() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let c = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_n(&c, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // the gap: 03:00 CEST, once
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn berlin_autumn_overlap_runs_once_at_the_first_occurrence() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let c = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_n(&c, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST) only
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        // Asked from inside the repetition (02:10 CET, after the first 02:30), the
        // repeated 02:30 does not run again: next is the following day.
        assert_eq!(
            next_n(&c, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn new_york_gap_and_overlap_every_half_hour() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT; 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let c = cron("0,30 1-3 * * *", "America/New_York");
        assert_eq!(
            next_n(&c, "2026-03-08T06:10:00Z", 4), // 01:10 EST
            [
                "2026-03-08T06:30:00Z", // 01:30 EST
                "2026-03-08T07:00:00Z", // 02:00 does not exist: 03:00 EDT
                "2026-03-08T07:30:00Z", // 03:30 EDT (02:30 fell in the gap too)
                "2026-03-09T05:00:00Z", // 01:00 EDT next day
            ]
        );
        assert_eq!(
            next_n(&c, "2026-11-01T04:50:00Z", 5), // 00:50 EDT
            [
                "2026-11-01T05:00:00Z", // 01:00 EDT (first pass)
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-01T07:00:00Z", // 02:00 EST: the repeated 01:xx are not run again
                "2026-11-01T07:30:00Z", // 02:30 EST
                "2026-11-01T08:00:00Z", // 03:00 EST
            ]
        );
    }

    #[test]
    fn intervals_count_from_the_anchor_and_once_runs_once() {
        let c = Cadence::parse(
            Kind::Interval,
            "90",
            "UTC",
            Duration::from_secs(60),
            0,
            1_000,
        )
        .unwrap();
        assert_eq!(c.next_after(0), Some(91_000));
        assert_eq!(c.next_after(91_000), Some(181_000));
        assert_eq!(c.next_after(1_000_000), Some(1_081_000));
        let at = ms("2030-01-01T00:00:00Z");
        let o = Cadence::parse(
            Kind::Once,
            "2030-01-01T01:00:00+01:00",
            "UTC",
            Duration::from_secs(60),
            0,
            0,
        )
        .unwrap();
        assert_eq!(o.next_after(0), Some(at));
        assert_eq!(o.next_after(at), None);
    }

    #[test]
    fn bad_input_is_refused_naming_the_field() {
        let min = Duration::from_secs(60);
        let now = ms("2026-06-01T00:00:00Z");
        let err = |k, v: &str, tz: &str| Cadence::parse(k, v, tz, min, now, now).unwrap_err();
        let e = err(Kind::Cron, "61 * * * *", "UTC");
        assert_eq!(e.field, "cadence_value");
        assert!(e.message.contains("not a valid cron expression"), "{e}");
        let e = err(Kind::Cron, "* * * *", "UTC");
        assert!(e.message.contains("has 4 field(s)"), "{e}");
        let e = err(Kind::Cron, "0 * * * * *", "UTC");
        assert!(e.message.contains("has 6 field(s)"), "{e}");
        let e = err(Kind::Cron, "0 8 * * *", "Mars/Olympus");
        assert_eq!(e.field, "timezone");
        assert!(e.message.contains("Europe/Berlin"), "{e}");
        let e = err(Kind::Interval, "30", "UTC");
        assert!(e.message.contains("below the minimum of 60 s"), "{e}");
        let e = err(Kind::Interval, "ten", "UTC");
        assert!(e.message.contains("whole number of seconds"), "{e}");
        let e = err(Kind::Once, "2026-05-01T00:00:00Z", "UTC");
        assert!(e.message.contains("in the past"), "{e}");
        let e = err(Kind::Once, "tomorrow", "UTC");
        assert!(e.message.contains("RFC 3339"), "{e}");
    }
}
