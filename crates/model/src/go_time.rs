//! Go's time layouts (`2006-01-02T15:04:05Z07:00`): parsing a value by a layout and formatting
//! it back, as Go's `time.Parse` and `Time.Format` do. Bacalhau's S3 `date` partitioning
//! hashes `time.Parse(layout, key prefix).Format(layout)`, so the same key lands in the same
//! partition here only if both steps agree with Go's byte for byte, normalisation included
//! (`2023-1-2` by layout `2006-1-2` formats back as itself, `Jan` matches `jan`).
//!
//! Supported: every numeric element, month and weekday names, AM/PM, fractional seconds
//! (`.000`, `.999`, `,000`), numeric zones (`-0700`, `-07:00`, `-07`, with seconds, and their
//! `Z` forms) and zone abbreviations (`MST`). Not supported: location databases (an
//! abbreviation parses with offset 0, as Go does for one it does not know).

/// One element of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Literal(String),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    PmLower,
    /// A zone by name (`MST`).
    Tz,
    /// A numeric zone: `z` whether `Z` stands for UTC, with minutes and seconds as given.
    Offset {
        z: bool,
        colon: bool,
        minutes: bool,
        seconds: bool,
    },
    /// Fractional seconds: the separator, the digits, and whether trailing zeros go (`9`s).
    Fraction {
        sep: char,
        digits: usize,
        trim: bool,
    },
}

/// A parsed layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLayout {
    chunks: Vec<Chunk>,
}

/// A time as a layout parsed it (fields not in the layout keep Go's zero values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    offset_secs: i32,
    zone_name: Option<String>,
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

impl GoLayout {
    /// Splits `layout` into Go's elements (anything else is literal text, so every string is a
    /// layout; [`GoLayout::check`] is what tells a useful one).
    pub fn new(layout: &str) -> Self {
        let b = layout.as_bytes();
        let mut chunks = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < b.len() {
            let (chunk, len) = match std_chunk(&b[i..]) {
                Some(c) => c,
                None => {
                    let ch = layout[i..].chars().next().unwrap_or('\u{fffd}');
                    literal.push(ch);
                    i += ch.len_utf8();
                    continue;
                }
            };
            if !literal.is_empty() {
                chunks.push(Chunk::Literal(std::mem::take(&mut literal)));
            }
            chunks.push(chunk);
            i += len;
        }
        if !literal.is_empty() {
            chunks.push(Chunk::Literal(literal));
        }
        Self { chunks }
    }

    /// Bacalhau's test of a date format: Go's reference time formatted by it must parse back.
    pub fn check(&self) -> Result<(), String> {
        let reference = GoTime {
            year: 2006,
            month: 1,
            day: 2,
            hour: 15,
            minute: 4,
            second: 5,
            nanos: 0,
            offset_secs: 0,
            zone_name: Some("UTC".into()),
        };
        self.parse(&self.format(&reference)).map(|_| ())
    }

    /// Parses all of `value` by this layout.
    pub fn parse(&self, value: &str) -> Result<GoTime, String> {
        let mut t = GoTime {
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
            offset_secs: 0,
            zone_name: None,
        };
        let (mut pm, mut pm_set, mut yday) = (false, false, None);
        let mut rest = value;
        for (n, chunk) in self.chunks.iter().enumerate() {
            match chunk {
                Chunk::Literal(l) => rest = rest.strip_prefix(l.as_str()).ok_or_else(|| cannot(rest, chunk))?,
                Chunk::LongYear => {
                    let (v, r) = fixed_digits(rest, 4).ok_or_else(|| cannot(rest, chunk))?;
                    t.year = i64::from(v);
                    rest = r;
                }
                Chunk::Year => {
                    let (v, r) = fixed_digits(rest, 2).ok_or_else(|| cannot(rest, chunk))?;
                    t.year = i64::from(if v >= 69 { v + 1900 } else { v + 2000 });
                    rest = r;
                }
                Chunk::Month | Chunk::LongMonth => {
                    let long = *chunk == Chunk::LongMonth;
                    let (m, r) = lookup_name(rest, &LONG_MONTHS, long).ok_or_else(|| cannot(rest, chunk))?;
                    t.month = m + 1;
                    rest = r;
                }
                Chunk::WeekDay | Chunk::LongWeekDay => {
                    let long = *chunk == Chunk::LongWeekDay;
                    rest = lookup_name(rest, &LONG_DAYS, long).ok_or_else(|| cannot(rest, chunk))?.1;
                }
                Chunk::NumMonth | Chunk::ZeroMonth => {
                    let (v, r) = num(rest, *chunk == Chunk::ZeroMonth).ok_or_else(|| cannot(rest, chunk))?;
                    if !(1..=12).contains(&v) {
                        return Err("month out of range".into());
                    }
                    t.month = v;
                    rest = r;
                }
                Chunk::Day | Chunk::UnderDay | Chunk::ZeroDay => {
                    if *chunk == Chunk::UnderDay {
                        rest = rest.strip_prefix(' ').unwrap_or(rest);
                    }
                    let (v, r) = num(rest, *chunk == Chunk::ZeroDay).ok_or_else(|| cannot(rest, chunk))?;
                    t.day = v;
                    rest = r;
                }
                Chunk::UnderYearDay | Chunk::ZeroYearDay => {
                    let (v, r) = if *chunk == Chunk::ZeroYearDay {
                        fixed_digits(rest, 3).ok_or_else(|| cannot(rest, chunk))?
                    } else {
                        let trimmed = rest.trim_start_matches(' ');
                        let skipped = (rest.len() - trimmed.len()).min(2);
                        leading_digits(&rest[skipped..], 3).ok_or_else(|| cannot(rest, chunk))?
                    };
                    if !(1..=366).contains(&v) {
                        return Err("day-of-year out of range".into());
                    }
                    yday = Some(v);
                    rest = r;
                }
                Chunk::Hour => {
                    let (v, r) = num(rest, false).ok_or_else(|| cannot(rest, chunk))?;
                    if v >= 24 {
                        return Err("hour out of range".into());
                    }
                    t.hour = v;
                    rest = r;
                }
                Chunk::Hour12 | Chunk::ZeroHour12 => {
                    let (v, r) = num(rest, *chunk == Chunk::ZeroHour12).ok_or_else(|| cannot(rest, chunk))?;
                    if v > 12 {
                        return Err("hour out of range".into());
                    }
                    t.hour = v;
                    rest = r;
                }
                Chunk::Minute | Chunk::ZeroMinute | Chunk::Second | Chunk::ZeroSecond => {
                    let fixed = matches!(chunk, Chunk::ZeroMinute | Chunk::ZeroSecond);
                    let (v, r) = num(rest, fixed).ok_or_else(|| cannot(rest, chunk))?;
                    if v >= 60 {
                        return Err("minute or second out of range".into());
                    }
                    rest = r;
                    if matches!(chunk, Chunk::Minute | Chunk::ZeroMinute) {
                        t.minute = v;
                    } else {
                        t.second = v;
                        // Go reads a fraction after the seconds even when the layout has none.
                        let next_is_fraction = matches!(self.chunks.get(n + 1), Some(Chunk::Fraction { .. }));
                        let b = rest.as_bytes();
                        if !next_is_fraction && b.len() >= 2 && matches!(b[0], b'.' | b',') && b[1].is_ascii_digit() {
                            let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            t.nanos = nanos_of(&rest[1..=digits]);
                            rest = &rest[1 + digits..];
                        }
                    }
                }
                Chunk::Pm | Chunk::PmLower => {
                    let (am_text, pm_text) = if *chunk == Chunk::Pm { ("AM", "PM") } else { ("am", "pm") };
                    if let Some(r) = rest.strip_prefix(pm_text) {
                        (pm, rest) = (true, r);
                    } else {
                        rest = rest.strip_prefix(am_text).ok_or_else(|| cannot(rest, chunk))?;
                    }
                    pm_set = true;
                }
                Chunk::Fraction { sep, digits, trim } => {
                    let b = rest.as_bytes();
                    let starts = b.first() == Some(&(*sep as u8)) || (*trim && matches!(b.first(), Some(b'.' | b',')));
                    if *trim {
                        if starts && b.get(1).is_some_and(u8::is_ascii_digit) {
                            let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            t.nanos = nanos_of(&rest[1..=n]);
                            rest = &rest[1 + n..];
                        }
                    } else {
                        let ok = starts && b.len() > *digits && b[1..=*digits].iter().all(u8::is_ascii_digit);
                        if !ok {
                            return Err(cannot(rest, chunk));
                        }
                        t.nanos = nanos_of(&rest[1..=*digits]);
                        rest = &rest[1 + digits..];
                    }
                }
                Chunk::Offset { z, colon, minutes, seconds } => {
                    if *z && let Some(r) = rest.strip_prefix('Z') {
                        (t.offset_secs, t.zone_name, rest) = (0, Some("UTC".into()), r);
                        continue;
                    }
                    let (secs, r) =
                        parse_offset(rest, *colon, *minutes, *seconds).ok_or_else(|| cannot(rest, chunk))?;
                    (t.offset_secs, t.zone_name, rest) = (secs, None, r);
                }
                Chunk::Tz => {
                    let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                    if !(3..=5).contains(&n) {
                        return Err(cannot(rest, chunk));
                    }
                    t.zone_name = Some(rest[..n].to_owned());
                    t.offset_secs = 0;
                    rest = &rest[n..];
                }
            }
        }
        if !rest.is_empty() {
            return Err(format!("extra text {rest:?}"));
        }
        if pm_set && t.hour > 12 {
            return Err("hour out of range".into());
        }
        if pm_set && pm && t.hour < 12 {
            t.hour += 12;
        } else if pm_set && !pm && t.hour == 12 {
            t.hour = 0;
        }
        if let Some(yd) = yday {
            let leap = is_leap(t.year);
            if yd > if leap { 366 } else { 365 } {
                return Err("day-of-year out of range".into());
            }
            let (m, d) = month_day_of(yd, leap);
            (t.month, t.day) = (m, d);
        }
        if t.day < 1 || t.day > days_in(t.month, t.year) {
            return Err("day out of range".into());
        }
        Ok(t)
    }

    /// Formats `t` by this layout.
    pub fn format(&self, t: &GoTime) -> String {
        let mut out = String::new();
        let hour12 = if t.hour.is_multiple_of(12) { 12 } else { t.hour % 12 };
        for chunk in &self.chunks {
            match chunk {
                Chunk::Literal(l) => out.push_str(l),
                Chunk::LongYear => out.push_str(&format!("{:04}", t.year)),
                Chunk::Year => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
                Chunk::Month => out.push_str(&LONG_MONTHS[month_index(t.month)][..3]),
                Chunk::LongMonth => out.push_str(LONG_MONTHS[month_index(t.month)]),
                Chunk::NumMonth => out.push_str(&t.month.to_string()),
                Chunk::ZeroMonth => out.push_str(&format!("{:02}", t.month)),
                Chunk::WeekDay => out.push_str(&LONG_DAYS[weekday(t)][..3]),
                Chunk::LongWeekDay => out.push_str(LONG_DAYS[weekday(t)]),
                Chunk::Day => out.push_str(&t.day.to_string()),
                Chunk::UnderDay => out.push_str(&format!("{:>2}", t.day)),
                Chunk::ZeroDay => out.push_str(&format!("{:02}", t.day)),
                Chunk::UnderYearDay => out.push_str(&format!("{:>3}", year_day(t))),
                Chunk::ZeroYearDay => out.push_str(&format!("{:03}", year_day(t))),
                Chunk::Hour => out.push_str(&format!("{:02}", t.hour)),
                Chunk::Hour12 => out.push_str(&hour12.to_string()),
                Chunk::ZeroHour12 => out.push_str(&format!("{hour12:02}")),
                Chunk::Minute => out.push_str(&t.minute.to_string()),
                Chunk::ZeroMinute => out.push_str(&format!("{:02}", t.minute)),
                Chunk::Second => out.push_str(&t.second.to_string()),
                Chunk::ZeroSecond => out.push_str(&format!("{:02}", t.second)),
                Chunk::Pm => out.push_str(if t.hour >= 12 { "PM" } else { "AM" }),
                Chunk::PmLower => out.push_str(if t.hour >= 12 { "pm" } else { "am" }),
                Chunk::Fraction { sep, digits, trim } => {
                    let all = format!("{:09}", t.nanos);
                    let shown = &all[..(*digits).min(9)];
                    let shown = if *trim { shown.trim_end_matches('0') } else { shown };
                    if !shown.is_empty() {
                        out.push(*sep);
                        out.push_str(shown);
                    }
                }
                Chunk::Offset { z, colon, minutes, seconds } => {
                    if *z && t.offset_secs == 0 {
                        out.push('Z');
                        continue;
                    }
                    out.push_str(&format_offset(t.offset_secs, *colon, *minutes, *seconds));
                }
                Chunk::Tz => match &t.zone_name {
                    Some(name) => out.push_str(name),
                    None if t.offset_secs == 0 => out.push_str("UTC"),
                    None => out.push_str(&format_offset(t.offset_secs, false, true, false)),
                },
            }
        }
        out
    }
}

fn cannot(rest: &str, chunk: &Chunk) -> String {
    format!("cannot parse {rest:?} as {chunk:?}")
}

/// The element of Go's layout language at the start of `b`, and its length in bytes.
fn std_chunk(b: &[u8]) -> Option<(Chunk, usize)> {
    let starts = |s: &str| b.starts_with(s.as_bytes());
    let chunk = match b.first()? {
        b'J' if starts("January") => (Chunk::LongMonth, 7),
        b'J' if starts("Jan") => (Chunk::Month, 3),
        b'M' if starts("Monday") => (Chunk::LongWeekDay, 6),
        b'M' if starts("Mon") => (Chunk::WeekDay, 3),
        b'M' if starts("MST") => (Chunk::Tz, 3),
        b'0' if starts("002") => (Chunk::ZeroYearDay, 3),
        b'0' if b.get(1).is_some_and(|c| (b'1'..=b'6').contains(c)) => {
            let c = match b[1] {
                b'1' => Chunk::ZeroMonth,
                b'2' => Chunk::ZeroDay,
                b'3' => Chunk::ZeroHour12,
                b'4' => Chunk::ZeroMinute,
                b'5' => Chunk::ZeroSecond,
                _ => Chunk::Year,
            };
            (c, 2)
        }
        b'1' if starts("15") => (Chunk::Hour, 2),
        b'1' => (Chunk::NumMonth, 1),
        b'2' if starts("2006") => (Chunk::LongYear, 4),
        b'2' => (Chunk::Day, 1),
        b'_' if starts("_2006") => return None,
        b'_' if starts("__2") => (Chunk::UnderYearDay, 3),
        b'_' if starts("_2") => (Chunk::UnderDay, 2),
        b'3' => (Chunk::Hour12, 1),
        b'4' => (Chunk::Minute, 1),
        b'5' => (Chunk::Second, 1),
        b'P' if starts("PM") => (Chunk::Pm, 2),
        b'p' if starts("pm") => (Chunk::PmLower, 2),
        b'-' | b'Z' => {
            let z = b[0] == b'Z';
            let rest = &b[1..];
            let forms: [(&str, bool, bool, bool); 5] = [
                ("070000", false, true, true),
                ("07:00:00", true, true, true),
                ("0700", false, true, false),
                ("07:00", true, true, false),
                ("07", false, false, false),
            ];
            let (text, colon, minutes, seconds) = forms.into_iter().find(|f| rest.starts_with(f.0.as_bytes()))?;
            (Chunk::Offset { z, colon, minutes, seconds }, 1 + text.len())
        }
        b'.' | b',' if b.get(1).is_some_and(|c| *c == b'0' || *c == b'9') => {
            let digit = b[1];
            let n = b[1..].iter().take_while(|c| **c == digit).count();
            // Go: a run of 0s or 9s followed by another digit is not a fraction.
            if b.get(1 + n).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            (Chunk::Fraction { sep: char::from(b[0]), digits: n, trim: digit == b'9' }, 1 + n)
        }
        _ => return None,
    };
    Some(chunk)
}

fn fixed_digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let b = s.as_bytes();
    if b.len() < n || !b[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

fn leading_digits(s: &str, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// Go's `getnum`: two digits when `fixed`, else one or two.
fn num(s: &str, fixed: bool) -> Option<(u32, &str)> {
    if fixed { fixed_digits(s, 2) } else { leading_digits(s, 2) }
}

fn nanos_of(digits: &str) -> u32 {
    let mut padded: String = digits.chars().take(9).collect();
    while padded.len() < 9 {
        padded.push('0');
    }
    padded.parse().unwrap_or(0)
}

/// A name from `names` (its first three letters unless `long`), matched ignoring ASCII case;
/// returns its index.
fn lookup_name<'a>(s: &'a str, names: &[&str], long: bool) -> Option<(u32, &'a str)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let want = if long { *name } else { &name[..3] };
        let got = s.get(..want.len())?;
        got.eq_ignore_ascii_case(want).then(|| (u32::try_from(i).unwrap_or(0), &s[want.len()..]))
    })
}

fn parse_offset(s: &str, colon: bool, minutes: bool, seconds: bool) -> Option<(i32, &str)> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, mut rest) = fixed_digits(&s[1..], 2)?;
    let mut total = i64::from(h) * 3600;
    for (wanted, unit) in [(minutes, 60), (seconds, 1)] {
        if !wanted {
            continue;
        }
        if colon {
            rest = rest.strip_prefix(':')?;
        }
        let (v, r) = fixed_digits(rest, 2)?;
        total += i64::from(v) * unit;
        rest = r;
    }
    Some((i32::try_from(total).ok()? * sign, rest))
}

fn format_offset(offset: i32, colon: bool, minutes: bool, seconds: bool) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    let mut out = format!("{sign}{:02}", abs / 3600);
    if minutes {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", abs / 60 % 60));
    }
    if seconds {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", abs % 60));
    }
    out
}

fn month_index(month: u32) -> usize {
    usize::try_from(month.clamp(1, 12) - 1).unwrap_or(0)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in(month: u32, year: i64) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn month_day_of(yday: u32, leap: bool) -> (u32, u32) {
    let mut left = yday;
    for m in 1..=12 {
        let n = days_in(m, if leap { 2000 } else { 2001 });
        if left <= n {
            return (m, left);
        }
        left -= n;
    }
    (12, 31)
}

fn year_day(t: &GoTime) -> u32 {
    (1..t.month).map(|m| days_in(m, t.year)).sum::<u32>() + t.day
}

/// Day of the week (0 = Sunday) by days since 1970-01-01 (Howard Hinnant's civil algorithm).
fn weekday(t: &GoTime) -> usize {
    let y = if t.month <= 2 { t.year - 1 } else { t.year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(t.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(t.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(layout: &str, value: &str) -> Result<String, String> {
        let l = GoLayout::new(layout);
        l.parse(value).map(|t| l.format(&t))
    }

    #[test]
    fn parses_and_formats_as_go_does() {
        assert_eq!(round_trip("2006-01-02", "2023-01-05").as_deref(), Ok("2023-01-05"));
        assert_eq!(round_trip("2006-1-2", "2023-1-5").as_deref(), Ok("2023-1-5"));
        assert_eq!(round_trip("Jan 2, 2006", "feb 9, 2024").as_deref(), Ok("Feb 9, 2024"));
        assert_eq!(
            round_trip("Mon Jan _2 15:04:05 2006", "Tue Jan  3 09:04:05 2023").as_deref(),
            Ok("Tue Jan  3 09:04:05 2023")
        );
        assert_eq!(round_trip("3:04PM", "9:30PM").as_deref(), Ok("9:30PM"));
        assert_eq!(
            round_trip("2006-01-02T15:04:05.000Z07:00", "2023-01-02T01:00:00.120+09:00").as_deref(),
            Ok("2023-01-02T01:00:00.120+09:00")
        );
        assert_eq!(round_trip("15:04:05.999", "10:00:00.500").as_deref(), Ok("10:00:00.5"));
        assert_eq!(round_trip("15:04:05Z07:00", "10:00:00Z").as_deref(), Ok("10:00:00Z"));
        assert_eq!(round_trip("06-002", "23-032").as_deref(), Ok("23-032"));
        assert_eq!(round_trip("200601", "202301").as_deref(), Ok("202301"));
        // The `1` in `T1` is Go's month.
        assert_eq!(round_trip("2006-01-02T1", "2023-01-01T1").as_deref(), Ok("2023-01-01T1"));
        assert!(round_trip("2006-01-02T1", "2023-01-02T0").is_err(), "month 0");
        assert!(round_trip("2006-01-02", "2023-02-30").is_err(), "day out of range");
        assert!(round_trip("2006-01-02", "2023-01").is_err());
        assert!(round_trip("2006", "abcd").is_err());
        assert_eq!(
            GoLayout::new("Monday").format(&GoLayout::new("2006-01-02").parse("2026-12-03").expect("t")),
            "Thursday"
        );
    }

    #[test]
    fn a_layout_is_valid_when_the_reference_time_round_trips() {
        for ok in ["2006-01-02", "2006", "200601", "Jan _2 15:04:05.000000", "2006-01-02T15:04:05Z07:00", "plain text"]
        {
            assert_eq!(GoLayout::new(ok).check(), Ok(()), "{ok}");
        }
        // `2` then `1` formats the reference as "21", which the day element reads whole, as
        // Go's does, leaving no month.
        assert!(GoLayout::new("21").check().is_err());
    }
}
