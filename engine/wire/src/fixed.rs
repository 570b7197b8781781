//! Exact fixed-point and time arithmetic for Kalshi's wire values.
//!
//! Kalshi quotes prices as decimal dollar strings (`"0.5600"`, up to 6 decimals) and contract
//! counts as decimal strings with 2 decimals (`"82.12"`). The platform stores them as integers:
//! prices in micro-dollars (`_e6`) and counts in hundredths (`_e2`). This module converts between
//! the two without ever passing through a float, and it refuses any value that the unit cannot
//! hold exactly: a price with a non-zero 7th decimal is an error, never a silent rounding.
//!
//! It also parses and formats RFC 3339 timestamps as microseconds since the Unix epoch, which is
//! the unit of every `_ts` column. Parsing is strict (a calendar date, a 24-hour time, a `Z` or
//! numeric offset) and allocation-free.

use core::fmt::Write as _;

/// Decimal digits of a price in micro-dollars (`_e6`).
pub const PRICE_SCALE: u32 = 6;
/// Decimal digits of a contract count in hundredths (`_e2`).
pub const COUNT_SCALE: u32 = 2;
/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one millisecond.
pub const MICROS_PER_MILLI: i64 = 1_000;

/// Why a decimal or timestamp text could not be converted exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedError {
    /// The text was empty.
    Empty,
    /// The text is not a plain decimal (`-?digits(.digits)?`).
    Syntax,
    /// The text has a non-zero digit beyond the unit's precision.
    Precision,
    /// The value does not fit in a signed 64-bit integer of the unit.
    Overflow,
    /// The text is not an RFC 3339 timestamp, or names an impossible date or time.
    Timestamp,
}

impl FixedError {
    /// A short human description, used inside decode error messages.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            FixedError::Empty => "empty value",
            FixedError::Syntax => "not a plain decimal number",
            FixedError::Precision => "more decimal places than the unit holds",
            FixedError::Overflow => "value out of the 64-bit range of its unit",
            FixedError::Timestamp => "not a valid RFC 3339 timestamp",
        }
    }
}

const POW10: [i64; 19] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// `10^scale` for the scales this crate uses.
#[must_use]
pub const fn pow10(scale: u32) -> i64 {
    POW10[scale as usize]
}

/// Parses a plain decimal text (`-?[0-9]+(\.[0-9]*)?`) into an integer count of `10^-scale`
/// units.
///
/// Digits past `scale` decimals are accepted only when they are zeros, since they then carry no
/// precision (`"0.5000000"` is exactly 500000 micro-dollars); a non-zero digit there is
/// [`FixedError::Precision`]. Exponents, a leading `+`, and a bare `.` are syntax errors.
///
/// # Errors
/// [`FixedError::Empty`], [`FixedError::Syntax`], [`FixedError::Precision`] or
/// [`FixedError::Overflow`], as their names say.
pub fn parse_decimal(text: &[u8], scale: u32) -> Result<i64, FixedError> {
    debug_assert!(scale <= 9);
    let (negative, digits) = match text.split_first() {
        None => return Err(FixedError::Empty),
        Some((b'-', rest)) => (true, rest),
        Some(_) => (false, text),
    };
    if digits.is_empty() {
        return Err(FixedError::Syntax);
    }
    // Accumulate negatively so that i64::MIN is representable.
    let mut value: i64 = 0;
    let mut index = 0;
    let mut integer_digits = 0;
    while index < digits.len() && digits[index].is_ascii_digit() {
        let digit = i64::from(digits[index] - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(digit))
            .ok_or(FixedError::Overflow)?;
        index += 1;
        integer_digits += 1;
    }
    if integer_digits == 0 {
        return Err(FixedError::Syntax);
    }
    let mut fraction_digits = 0u32;
    if index < digits.len() {
        if digits[index] != b'.' {
            return Err(FixedError::Syntax);
        }
        index += 1;
        if index == digits.len() {
            return Err(FixedError::Syntax);
        }
        while index < digits.len() {
            let byte = digits[index];
            if !byte.is_ascii_digit() {
                return Err(FixedError::Syntax);
            }
            if fraction_digits < scale {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_sub(i64::from(byte - b'0')))
                    .ok_or(FixedError::Overflow)?;
                fraction_digits += 1;
            } else if byte != b'0' {
                return Err(FixedError::Precision);
            }
            index += 1;
        }
    }
    value = value
        .checked_mul(pow10(scale - fraction_digits))
        .ok_or(FixedError::Overflow)?;
    if negative {
        Ok(value)
    } else {
        value.checked_neg().ok_or(FixedError::Overflow)
    }
}

/// Converts a JSON float to the unit exactly, through its shortest round-trip decimal text.
///
/// A float is what a JSON parser yields for `0.56` where Kalshi documents the string `"0.56"`.
/// The shortest text that reads back as the same float is the text the sender wrote (for up to
/// 15 significant digits), so converting that text is exact.
///
/// # Errors
/// As [`parse_decimal`]; a non-finite float is [`FixedError::Syntax`].
pub fn float_to_fixed(value: f64, scale: u32) -> Result<i64, FixedError> {
    if !value.is_finite() {
        return Err(FixedError::Syntax);
    }
    let mut text = StackText::<400>::new();
    // Display for f64 never uses an exponent and prints the shortest round-trip digits.
    write!(text, "{value}").map_err(|_| FixedError::Overflow)?;
    parse_decimal(text.as_bytes(), scale)
}

/// Multiplies a whole number of units (`1` dollar, `75` contracts) into the scaled unit.
///
/// # Errors
/// [`FixedError::Overflow`] when the product does not fit.
pub fn whole_to_fixed(value: i64, scale: u32) -> Result<i64, FixedError> {
    value.checked_mul(pow10(scale)).ok_or(FixedError::Overflow)
}

/// Appends `value / 10^scale` as decimal text with at least `decimals_min` decimals, and more
/// when the value needs them to stay exact (`write_decimal(_, 123_456, 6, 4)` gives `0.123456`).
pub fn write_decimal(out: &mut Vec<u8>, value: i64, scale: u32, decimals_min: u32) {
    debug_assert!(decimals_min <= scale);
    let unsigned = value.unsigned_abs();
    let unit = pow10(scale).unsigned_abs();
    let integer = unsigned / unit;
    let mut fraction = unsigned % unit;
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, integer);
    // Drop trailing zeros beyond the minimum number of decimals.
    let mut decimals = scale;
    while decimals > decimals_min && fraction.is_multiple_of(10) {
        fraction /= 10;
        decimals -= 1;
    }
    if decimals > 0 {
        out.push(b'.');
        let mut digits = [b'0'; 18];
        let mut rest = fraction;
        for slot in digits[..decimals as usize].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits[..decimals as usize]);
    }
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut index = digits.len();
    let mut rest = value;
    loop {
        index -= 1;
        digits[index] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[index..]);
}

/// Appends a signed integer in decimal.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
#[must_use]
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 } as i64;
    let day_of_year = (153 * month_index + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (inverse of
/// [`days_from_civil`]).
#[must_use]
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = if days >= 0 { days } else { days - 146_096 } / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// Days in `month` (1 to 12) of `year`, proleptic Gregorian.
pub(crate) const fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn digits_at(text: &[u8], start: usize, count: usize) -> Result<i64, FixedError> {
    let slice = text
        .get(start..start + count)
        .ok_or(FixedError::Timestamp)?;
    let mut value = 0i64;
    for &byte in slice {
        if !byte.is_ascii_digit() {
            return Err(FixedError::Timestamp);
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Ok(value)
}

fn expect_byte(text: &[u8], index: usize, allowed: &[u8]) -> Result<(), FixedError> {
    match text.get(index) {
        Some(byte) if allowed.contains(byte) => Ok(()),
        _ => Err(FixedError::Timestamp),
    }
}

/// Parses an RFC 3339 timestamp (`2026-08-27T13:56:23.996443Z`) into microseconds since the
/// Unix epoch.
///
/// Fractions of any length are accepted; digits finer than a microsecond (Kalshi's 2025 frames
/// carry nanoseconds) are truncated toward the past, because the storage unit is the
/// microsecond. Leap seconds (`:60`) are refused, as Kalshi never sends them.
///
/// # Errors
/// [`FixedError::Timestamp`] for anything that is not a valid RFC 3339 date-time.
pub fn parse_rfc3339_us(text: &[u8]) -> Result<i64, FixedError> {
    let year = digits_at(text, 0, 4)?;
    expect_byte(text, 4, b"-")?;
    let month = digits_at(text, 5, 2)? as u32;
    expect_byte(text, 7, b"-")?;
    let day = digits_at(text, 8, 2)? as u32;
    expect_byte(text, 10, b"Tt ")?;
    let hour = digits_at(text, 11, 2)?;
    expect_byte(text, 13, b":")?;
    let minute = digits_at(text, 14, 2)?;
    expect_byte(text, 16, b":")?;
    let second = digits_at(text, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(FixedError::Timestamp);
    }
    let mut index = 19;
    let mut micros = 0i64;
    if text.get(index) == Some(&b'.') {
        index += 1;
        let start = index;
        while let Some(byte) = text.get(index).filter(|b| b.is_ascii_digit()) {
            if index - start < 6 {
                micros = micros * 10 + i64::from(byte - b'0');
            }
            index += 1;
        }
        let fraction_len = index - start;
        if fraction_len == 0 {
            return Err(FixedError::Timestamp);
        }
        if fraction_len < 6 {
            micros *= pow10(6 - fraction_len as u32);
        }
    }
    let offset_seconds = match text.get(index) {
        Some(b'Z' | b'z') => {
            index += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let offset_hours = digits_at(text, index + 1, 2)?;
            expect_byte(text, index + 3, b":")?;
            let offset_minutes = digits_at(text, index + 4, 2)?;
            if offset_hours > 23 || offset_minutes > 59 {
                return Err(FixedError::Timestamp);
            }
            index += 6;
            let magnitude = offset_hours * 3600 + offset_minutes * 60;
            if sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return Err(FixedError::Timestamp),
    };
    if index != text.len() {
        return Err(FixedError::Timestamp);
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Ok(seconds * MICROS_PER_SECOND + micros)
}

/// Appends a timestamp in microseconds as RFC 3339 UTC with exactly six decimals
/// (`2026-08-27T13:56:23.996443Z`), the form Kalshi uses for `orderbook_delta.ts`.
pub fn write_rfc3339_us(out: &mut Vec<u8>, micros_since_epoch: i64) {
    let seconds = micros_since_epoch.div_euclid(MICROS_PER_SECOND);
    let micros = micros_since_epoch.rem_euclid(MICROS_PER_SECOND);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let two = |out: &mut Vec<u8>, value: i64| {
        out.push(b'0' + (value / 10) as u8);
        out.push(b'0' + (value % 10) as u8);
    };
    let year = year.clamp(0, 9999);
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, i64::from(month));
    out.push(b'-');
    two(out, i64::from(day));
    out.push(b'T');
    two(out, second_of_day / 3600);
    out.push(b':');
    two(out, second_of_day / 60 % 60);
    out.push(b':');
    two(out, second_of_day % 60);
    out.push(b'.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// A fixed-capacity text buffer on the stack, for formatting without allocation.
pub(crate) struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> core::fmt::Write for StackText<N> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Exact conversions of the decimal forms Kalshi sends, including the edge of i64.
    #[test]
    fn parse_decimal_exact() {
        let cases: &[(&str, u32, Result<i64, FixedError>)] = &[
            ("0.5600", 6, Ok(560_000)),
            ("0.999999", 6, Ok(999_999)),
            ("1", 6, Ok(1_000_000)),
            ("0.017500", 6, Ok(17_500)),
            ("82.12", 2, Ok(8_212)),
            ("-15.82", 2, Ok(-1_582)),
            ("-0.00", 2, Ok(0)),
            ("0.5000000", 6, Ok(500_000)),
            ("0.1234567", 6, Err(FixedError::Precision)),
            ("9.731", 2, Err(FixedError::Precision)),
            ("", 6, Err(FixedError::Empty)),
            ("-", 6, Err(FixedError::Syntax)),
            (".5", 6, Err(FixedError::Syntax)),
            ("5.", 6, Err(FixedError::Syntax)),
            ("+5", 6, Err(FixedError::Syntax)),
            ("1e-2", 6, Err(FixedError::Syntax)),
            ("0x10", 2, Err(FixedError::Syntax)),
            ("1 ", 2, Err(FixedError::Syntax)),
            ("9223372036854775807", 0, Ok(i64::MAX)),
            ("-9223372036854775808", 0, Ok(i64::MIN)),
            ("9223372036854775808", 0, Err(FixedError::Overflow)),
            ("92233720368547.75807", 5, Ok(i64::MAX)),
            ("92233720368547.75808", 5, Err(FixedError::Overflow)),
            ("10000000000000", 6, Err(FixedError::Overflow)),
        ];
        for (text, scale, expected) in cases {
            assert_eq!(
                parse_decimal(text.as_bytes(), *scale),
                *expected,
                "{text} at scale {scale}"
            );
        }
    }

    // JSON floats convert exactly through their shortest decimal text.
    #[test]
    fn float_conversion_is_exact() {
        assert_eq!(float_to_fixed(0.56, 6), Ok(560_000));
        assert_eq!(float_to_fixed(0.1 + 0.2, 6), Err(FixedError::Precision));
        assert_eq!(float_to_fixed(-15.82, 2), Ok(-1_582));
        assert_eq!(float_to_fixed(1e300, 6), Err(FixedError::Overflow));
        assert_eq!(float_to_fixed(5e-324, 6), Err(FixedError::Precision));
        assert_eq!(float_to_fixed(f64::NAN, 6), Err(FixedError::Syntax));
    }

    // Formatting keeps a minimum number of decimals and never drops a significant digit.
    #[test]
    fn write_decimal_forms() {
        let cases: &[(i64, u32, u32, &str)] = &[
            (560_000, 6, 4, "0.5600"),
            (123_456, 6, 4, "0.123456"),
            (1_000_000, 6, 4, "1.0000"),
            (-1_582, 2, 2, "-15.82"),
            (0, 2, 2, "0.00"),
            (i64::MIN, 6, 4, "-9223372036854.775808"),
            (17_500, 6, 6, "0.017500"),
        ];
        for (value, scale, decimals, expected) in cases {
            let mut out = Vec::new();
            write_decimal(&mut out, *value, *scale, *decimals);
            assert_eq!(std::str::from_utf8(&out).unwrap(), *expected);
            assert_eq!(parse_decimal(&out, *scale), Ok(*value));
        }
    }

    // Timestamps from real frames, offsets, truncation of nanoseconds, and invalid dates.
    #[test]
    fn rfc3339_parse_and_format() {
        let ok: &[(&str, i64)] = &[
            ("2026-08-27T13:56:23.996443Z", 1_787_838_983_996_443),
            ("2026-06-11T06:29:47.42784Z", 1_781_159_387_427_840),
            ("2025-08-12T21:00:32.539836022Z", 1_755_032_432_539_836),
            ("2022-11-22T20:44:01Z", 1_669_149_841_000_000),
            ("2022-11-22T22:44:01+02:00", 1_669_149_841_000_000),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999999Z", -1),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
        ];
        for (text, micros) in ok {
            assert_eq!(parse_rfc3339_us(text.as_bytes()), Ok(*micros), "{text}");
        }
        for bad in [
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01",
            "",
        ] {
            assert_eq!(
                parse_rfc3339_us(bad.as_bytes()),
                Err(FixedError::Timestamp),
                "{bad}"
            );
        }
        let mut out = Vec::new();
        write_rfc3339_us(&mut out, 1_787_838_983_996_443);
        assert_eq!(out, b"2026-08-27T13:56:23.996443Z");
        out.clear();
        write_rfc3339_us(&mut out, -1);
        assert_eq!(out, b"1969-12-31T23:59:59.999999Z");
    }

    // days_from_civil and civil_from_days are inverses over a wide range.
    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
