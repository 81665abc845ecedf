//! Schedule patterns (`Nats-Schedule`) as nats-server 2.15.1 reads them,
//! and the few calendar sums they need (UTC only).
//!
//! - `@at <RFC 3339>`: once, at that time (an offset is allowed; a past
//!   time fires at once). Go's zero time (`0001-01-01T00:00:00Z`) is no
//!   schedule at all, as in nats-server.
//! - `@every <Go duration>`: repeating, at least one second apart; the
//!   first firing is the stored time rounded to the second plus the
//!   interval.
//! - a cron expression of exactly six fields (second minute hour
//!   day-of-month month day-of-week): `*` or `?`, numbers, `a-b` ranges,
//!   `/step` (`n/step` means `n-max/step`), `,` lists, month names
//!   `jan`..`dec` and day names `sun`..`sat` (any case); day of week is
//!   0-6. When both day fields are restricted a day matching either
//!   fires; when one is `*` (or `*/1`) both must match. No `L`, `W`, `#`
//!   or year field. A pattern with no firing within five years is
//!   invalid.
//! - `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//!   `@hourly`: the cron expressions they stand for.
//!
//! - With `Nats-Schedule-Time-Zone` (an IANA name from the system's zone
//!   database, as Go's `time.LoadLocation` reads it, or `UTC`/`Local`) a
//!   cron expression matches wall-clock times in that zone (through
//!   daylight saving changes as nats-server's walk does: hour, minute and
//!   second steps are real time, day and month steps land on local
//!   midnight); `@at` and `@every` take no time zone.
//!
//! A repeating schedule that missed firings (a slow timer, or a restart)
//! fires once and then skips ahead: its next time is computed from now.

use crate::jetstream::stream::ttl::parse_go_duration;

const NANOS: i64 = 1_000_000_000;

/// A parsed `Nats-Schedule` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Empty (or Go's zero time): not a schedule.
    None,
    /// Once, at this time (Unix nanoseconds, saturated).
    At(i64),
    /// Repeating, this many nanoseconds apart (at least a second).
    Every(i64),
    /// Repeating, at the times a cron expression matches (UTC).
    Cron(Box<Cron>),
}

/// A cron expression's time zone.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    /// UTC (no `Nats-Schedule-Time-Zone`).
    Utc,
    /// A zone of the system's database.
    Named(jiff::tz::TimeZone),
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        match (self, other) {
            (Zone::Utc, Zone::Utc) => true,
            (Zone::Named(a), Zone::Named(b)) => a.iana_name() == b.iana_name(),
            _ => false,
        }
    }
}

impl Eq for Zone {}

impl Zone {
    /// Loads a `Nats-Schedule-Time-Zone` (non-empty); `None`: unknown.
    pub(crate) fn load(name: &str) -> Option<Zone> {
        if name == "Local" {
            return Some(Zone::Named(jiff::tz::TimeZone::system()));
        }
        // Go reads the zone's file by its name, so the name's case must
        // be the database's (`utc` is no zone); jiff looks names up
        // ignoring case.
        jiff::tz::TimeZone::get(name)
            .ok()
            .filter(|tz| tz.iana_name() == Some(name))
            .map(Zone::Named)
    }

    /// The zone's offset from UTC at Unix second `t`, in seconds.
    fn offset(&self, t: i64) -> i64 {
        match self {
            Zone::Utc => 0,
            Zone::Named(tz) => jiff::Timestamp::from_second(t)
                .map(|ts| i64::from(tz.to_offset(ts).seconds()))
                .unwrap_or(0),
        }
    }

    /// The Unix second of local midnight starting `y-m-d` (a midnight a
    /// daylight saving change skips: the first time after the gap).
    fn midnight(&self, y: i64, m: u32, d: u32) -> Option<i64> {
        match self {
            Zone::Utc => Some(days_from_civil(y, m, d) * 86_400),
            Zone::Named(tz) => {
                let date = jiff::civil::Date::new(
                    i16::try_from(y).ok()?,
                    i8::try_from(m).ok()?,
                    i8::try_from(d).ok()?,
                )
                .ok()?;
                let ts = tz.to_timestamp(date.at(0, 0, 0, 0)).ok()?;
                Some(ts.as_second())
            }
        }
    }
}

/// Parses a schedule pattern; `zone`: the `Nats-Schedule-Time-Zone` given
/// (then only cron expressions are valid). `None`: invalid.
pub(crate) fn parse(pattern: &str, zone: Option<&Zone>) -> Option<Pattern> {
    let zoned = zone.is_some();
    if pattern.is_empty() {
        return Some(Pattern::None);
    }
    if let Some(at) = pattern.strip_prefix("@at ") {
        if zoned {
            return None;
        }
        let (secs, nanos) = parse_rfc3339(at)?;
        if secs == GO_ZERO_SECS && nanos == 0 {
            return Some(Pattern::None);
        }
        return Some(Pattern::At(to_nanos(secs, nanos)));
    }
    if let Some(every) = pattern.strip_prefix("@every ") {
        if zoned {
            return None;
        }
        let d = parse_go_duration(every)?;
        return (d >= NANOS).then_some(Pattern::Every(d));
    }
    let expr = match pattern {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        other => other,
    };
    Cron::parse(expr, zone.cloned().unwrap_or(Zone::Utc)).map(|c| Pattern::Cron(Box::new(c)))
}

impl Pattern {
    /// Whether it repeats.
    pub(crate) fn repeats(&self) -> bool {
        matches!(self, Pattern::Every(_) | Pattern::Cron(_))
    }

    /// When a schedule stored at `ts` first fires (`None`: never, e.g. a
    /// cron expression matching no time within five years).
    pub(crate) fn first(&self, ts: i64) -> Option<i64> {
        match self {
            Pattern::None => None,
            Pattern::At(t) => Some(*t),
            Pattern::Every(d) => Some(round_sec(ts).saturating_add(*d)),
            Pattern::Cron(c) => c.next_after(ts),
        }
    }

    /// After firing at `at` (at time `now`): when it fires next, skipping
    /// ahead from `now` when that time is already past (`None`: it does
    /// not repeat, or has no next time).
    pub(crate) fn after(&self, at: i64, now: i64) -> Option<i64> {
        match self {
            Pattern::None | Pattern::At(_) => None,
            Pattern::Every(d) => {
                let next = round_sec(at).saturating_add(*d);
                Some(if next < now {
                    round_sec(now).saturating_add(*d)
                } else {
                    next
                })
            }
            Pattern::Cron(c) => match c.next_after(at)? {
                next if next < now => c.next_after(round_sec(now)),
                next => Some(next),
            },
        }
    }

    /// A firing time as nats-server writes it in `Nats-Schedule-Next`: in
    /// the cron expression's zone (`Z` when its offset is zero).
    pub(crate) fn format(&self, t: i64) -> String {
        let offset = match self {
            Pattern::Cron(c) => c.zone.offset(t.div_euclid(NANOS)),
            _ => 0,
        };
        format_rfc3339_nano(t, offset)
    }

    /// Whether a schedule published now is valid: it has a firing time
    /// (a cron expression may match nothing within five years).
    pub(crate) fn valid_at(&self, now: i64) -> bool {
        match self {
            Pattern::Cron(c) => c.next_after(now).is_some(),
            _ => true,
        }
    }
}

/// Go's `time.Time{}` as Unix seconds (0001-01-01T00:00:00Z).
const GO_ZERO_SECS: i64 = -62_135_596_800;

fn to_nanos(secs: i64, nanos: u32) -> i64 {
    secs.saturating_mul(NANOS).saturating_add(i64::from(nanos))
}

/// Rounds to the nearest second, halves up (Go's `Round(time.Second)`
/// for times after 1970).
fn round_sec(t: i64) -> i64 {
    t.saturating_add(NANOS / 2)
        .div_euclid(NANOS)
        .saturating_mul(NANOS)
}

/// A cron expression: one bit per allowed value in each field, bit 63 set
/// when the field was `*`/`?` (unstepped), which decides how the two day
/// fields combine; and the zone its wall-clock times are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    zone: Zone,
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    fn parse(expr: &str, zone: Zone) -> Option<Cron> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 6 {
            return None;
        }
        let plain = |min, max| Bounds {
            min,
            max,
            names: &[],
        };
        Some(Cron {
            second: field(f[0], &plain(0, 59))?,
            minute: field(f[1], &plain(0, 59))?,
            hour: field(f[2], &plain(0, 23))?,
            dom: field(f[3], &plain(1, 31))?,
            month: field(
                f[4],
                &Bounds {
                    min: 1,
                    max: 12,
                    names: &MONTHS,
                },
            )?,
            dow: field(
                f[5],
                &Bounds {
                    min: 0,
                    max: 6,
                    names: &DAYS,
                },
            )?,
            zone,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.dom & (1 << day) != 0;
        let dow = self.dow & (1 << weekday) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching second strictly after `ts` (Unix nanoseconds),
    /// within five years of it (local years).
    pub(crate) fn next_after(&self, ts: i64) -> Option<i64> {
        let mut t = ts.div_euclid(NANOS).checked_add(1)?;
        let limit = civil(t + self.zone.offset(t)).0 + 5;
        loop {
            // The wall clock in the zone.
            let (y, mo, d, h, mi, s) = civil(t + self.zone.offset(t));
            if y > limit {
                return None;
            }
            let next = if self.month & (1 << mo) == 0 {
                // Local midnight starting the next month.
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                self.zone.midnight(ny, nm, 1)?
            } else if !self.day_matches(d, weekday(days_from_civil(y, mo, d))) {
                let (ny, nm, nd) = if d < days_in_month(y, mo) {
                    (y, mo, d + 1)
                } else if mo < 12 {
                    (y, mo + 1, 1)
                } else {
                    (y + 1, 1, 1)
                };
                self.zone.midnight(ny, nm, nd)?
            } else if self.hour & (1 << h) == 0 {
                // The next hour, in real time.
                t - i64::from(mi * 60 + s) + 3600
            } else if self.minute & (1 << mi) == 0 {
                t - i64::from(s) + 60
            } else if self.second & (1 << s) == 0 {
                t + 1
            } else {
                return t.checked_mul(NANOS);
            };
            // Always forward (a zone's midnight never lies behind).
            t = next.max(t + 1);
        }
    }
}

/// One cron field: comma-separated ranges (empty pieces skipped).
fn field(text: &str, b: &Bounds) -> Option<u64> {
    let mut bits = 0;
    for expr in text.split(',').filter(|e| !e.is_empty()) {
        bits |= range(expr, b)?;
    }
    Some(bits)
}

fn range(expr: &str, b: &Bounds) -> Option<u64> {
    let parts: Vec<&str> = expr.split('/').collect();
    let ends: Vec<&str> = parts[0].split('-').collect();
    let (start, mut end, mut star) = if ends[0] == "*" || ends[0] == "?" {
        (b.min, b.max, STAR)
    } else {
        let start = number(ends[0], b)?;
        let end = match ends.len() {
            1 => start,
            2 => number(ends[1], b)?,
            _ => return None,
        };
        (start, end, 0)
    };
    let step = match parts.len() {
        1 => 1,
        2 => {
            let step = int(parts[1])?;
            if ends.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                star = 0;
            }
            step
        }
        _ => return None,
    };
    if start < b.min || end > b.max || start > end || step == 0 {
        return None;
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v = v.checked_add(step)?;
    }
    Some(bits | star)
}

fn number(text: &str, b: &Bounds) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        // Months are named from 1, days from 0 (the field's minimum).
        return u32::try_from(i).ok().map(|i| i + b.min);
    }
    int(text)
}

/// Go's `strconv.Atoi` (an optional sign, decimal digits), never negative.
fn int(text: &str) -> Option<u32> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    if neg && v != 0 {
        return None;
    }
    // Larger than any field's maximum: out of range either way.
    Some(u32::try_from(v.min(1 << 20)).unwrap_or(u32::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A Unix second as (year, month, day, hour, minute, second), UTC.
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// 0 = Sunday, for days since 1970-01-01 (a Thursday).
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `time.Parse(time.RFC3339, ..)`: `YYYY-MM-DDTHH:MM:SS`, an optional
/// fraction, then `Z` or `±HH:MM`; (Unix seconds, nanoseconds).
pub(crate) fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (y, mo, d) = (i64::from(num(0, 4)?), num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if matches!(b.get(i), Some(b'.' | b',')) {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        for (k, c) in b[start..end].iter().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
        }
        i = end;
    }
    let offset: i64 = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = num(i + 1, 2)?;
            let om = num(i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset;
    Some((secs, nanos))
}

/// Go's `Format(time.RFC3339Nano)` of a time at UTC offset `offset`
/// (seconds): the fraction without trailing zeros, none when whole; `Z`
/// for a zero offset.
pub(crate) fn format_rfc3339_nano(t: i64, offset: i64) -> String {
    let secs = t.div_euclid(NANOS);
    let nanos = t.rem_euclid(NANOS);
    let (y, mo, d, h, mi, s) = civil(secs + offset);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, o / 60 % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        let (secs, n) = parse_rfc3339(s).expect(s);
        to_nanos(secs, n)
    }

    #[test]
    fn rfc3339_reads_offsets_and_fractions_and_refuses_what_go_refuses() {
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("1970-01-01T01:00:00+01:00"), 0);
        assert_eq!(at("1970-01-01T00:00:01.5Z"), 1_500_000_000);
        assert_eq!(at("2024-02-29T12:00:00Z"), 1_709_208_000 * NANOS);
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+0100",
            "2024-1-01T00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            format_rfc3339_nano(at("2026-12-06T18:48:08Z"), 0),
            "2026-12-06T18:48:08Z"
        );
        assert_eq!(
            format_rfc3339_nano(at("2026-12-06T18:48:08.120Z"), 0),
            "2026-12-06T18:48:08.12Z"
        );
    }

    #[test]
    fn patterns_nats_server_accepts_and_refuses() {
        for ok in [
            "@at 2030-01-01T00:00:00Z",
            "@every 1s",
            "@every 1h30m",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "0 0 * * * *",
            "*/5 * * * * ?",
            "0 30 9 * jan-mar mon-fri",
            "0 0 0 1,15 * *",
            "5/10 * * * * *",
        ] {
            assert!(
                parse(ok, None).is_some_and(|p| p.valid_at(0)),
                "{ok} refused"
            );
        }
        for bad in [
            "@every 500ms",
            "@every 1",
            "@at tomorrow",
            "0 0 * * *",
            "0 0 * * * * 2020",
            "0 0 L * * *",
            "0 0 * * * 7",
            "60 * * * * *",
            "5-1 * * * * *",
            "*/0 * * * * *",
            "1-2-3 * * * * *",
            "@reboot",
        ] {
            assert!(parse(bad, None).is_none(), "{bad} accepted");
        }
        assert_eq!(parse("", None), Some(Pattern::None));
        assert_eq!(parse("@at 0001-01-01T00:00:00Z", None), Some(Pattern::None));
        // A time zone allows cron expressions only.
        assert!(parse("@every 1s", Some(&Zone::Utc)).is_none());
        assert!(parse("@at 2030-01-01T00:00:00Z", Some(&Zone::Utc)).is_none());
        assert!(parse("@hourly", Some(&Zone::Utc)).is_some());
        // Feb 30 never comes.
        let never = parse("0 0 0 30 2 *", None).expect("parses");
        assert!(!never.valid_at(0));
    }

    #[test]
    fn cron_and_every_fire_at_the_times_nats_server_computes() {
        let t = at("2026-12-06T18:47:54.951Z");
        let hourly = parse("@hourly", None).expect("hourly");
        assert_eq!(hourly.first(t), Some(at("2026-12-06T19:00:00Z")));
        let every = parse("@every 3s", None).expect("every");
        assert_eq!(every.first(t), Some(at("2026-12-06T18:47:58Z")));
        // Fired late (after a restart): skips ahead from now.
        let now = at("2026-12-06T18:48:04.79Z");
        assert_eq!(
            every.after(at("2026-12-06T18:47:58Z"), now),
            Some(at("2026-12-06T18:48:08Z"))
        );
        let weekdays = parse("0 30 9 * * mon-fri", None).expect("cron");
        // 2026-12-05 is a Saturday: next is Monday the 7th.
        assert_eq!(
            weekdays.first(at("2026-12-05T10:00:00Z")),
            Some(at("2026-12-07T09:30:00Z"))
        );
        // Both day fields restricted: either matches.
        let either = parse("0 0 0 1 * sun", None).expect("cron");
        assert_eq!(
            either.first(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-06T00:00:00Z"))
        );
        let leap = parse("0 0 12 29 2 *", None).expect("cron");
        assert_eq!(
            leap.first(at("2026-01-01T00:00:00Z")),
            Some(at("2028-02-29T12:00:00Z"))
        );
        assert_eq!(
            parse("0 0 * * * *", None)
                .expect("cron")
                .after(at("2026-12-06T19:00:00Z"), 0),
            Some(at("2026-12-06T20:00:00Z"))
        );
        assert!(
            !parse("@at 2030-01-01T00:00:00Z", None)
                .expect("at")
                .repeats()
        );
    }

    #[test]
    fn a_zoned_cron_matches_local_wall_clock_through_daylight_saving() {
        let Some(ams) = Zone::load("Europe/Amsterdam") else {
            panic!("the system zone database has Europe/Amsterdam");
        };
        assert!(Zone::load("Nowhere/Else").is_none());
        assert!(Zone::load("europe/amsterdam").is_none(), "names are exact");
        let nine = parse("0 0 9 * * *", Some(&ams)).expect("cron");
        // Winter: 09:00 CET is 08:00 UTC; summer: 09:00 CEST is 07:00 UTC.
        assert_eq!(
            nine.first(at("2026-12-06T12:00:00Z")),
            Some(at("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            nine.first(at("2026-07-01T12:00:00Z")),
            Some(at("2026-07-02T07:00:00Z"))
        );
        // Across the spring change (2026-03-29, 02:00 CET -> 03:00 CEST).
        assert_eq!(
            nine.first(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T07:00:00Z"))
        );
        // A time inside the skipped hour never comes that day.
        let half_two = parse("0 30 2 * * *", Some(&ams)).expect("cron");
        assert_eq!(
            half_two.first(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-30T00:30:00Z"))
        );
        assert_eq!(
            nine.format(at("2026-12-07T08:00:00Z")),
            "2026-12-07T09:00:00+01:00"
        );
        assert_eq!(
            nine.format(at("2026-07-02T07:00:00Z")),
            "2026-07-02T09:00:00+02:00"
        );
        let utc = Zone::load("UTC").expect("UTC");
        let p = parse("0 0 9 * * *", Some(&utc)).expect("cron");
        assert_eq!(p.format(at("2026-12-07T09:00:00Z")), "2026-12-07T09:00:00Z");
    }
}
