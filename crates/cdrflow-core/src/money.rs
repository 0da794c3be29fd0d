//! Exact decimal arithmetic for money and decimal counters.
//!
//! Amounts never pass through floating point: a decimal literal from JSON or
//! the tariff file is parsed digit by digit into an integer mantissa with a
//! decimal scale, and money is carried as whole micro-units (10^-6).

use std::fmt;

/// Micro-units per currency unit: every amount in cdrflow has 6 decimals.
pub const MICROS_PER_UNIT: i128 = 1_000_000;

/// An exact decimal number: `mantissa × 10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

/// Why a decimal literal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal number")]
    Syntax(String),
    #[error("`{0}` has too many digits to be represented exactly")]
    TooLarge(String),
    #[error("`{0}` has more significant decimal places than can be represented exactly")]
    TooPrecise(String),
}

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// Parses a JSON-style number (`-12`, `150.5`, `1.5e3`) exactly.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let syntax = || DecimalError::Syntax(text.to_string());
        let too_large = || DecimalError::TooLarge(text.to_string());
        let bytes = text.as_bytes();
        let (negative, mut i) = match bytes.first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        let mut mantissa: i128 = 0;
        let mut scale: i64 = 0;
        let mut digits = 0usize;
        let mut seen_point = false;
        // Zeros after the point count only once a non-zero digit follows, so
        // `1.000…0` with any number of zeros is exactly 1.
        let mut fraction_zeros: i64 = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'0' if seen_point => {
                    fraction_zeros += 1;
                    digits += 1;
                }
                b @ b'0'..=b'9' => {
                    let shifted = if seen_point {
                        let exp = u32::try_from(fraction_zeros + 1).unwrap_or(u32::MAX);
                        10i128
                            .checked_pow(exp)
                            .and_then(|f| mantissa.checked_mul(f))
                    } else {
                        mantissa.checked_mul(10)
                    };
                    mantissa = shifted
                        .and_then(|m| m.checked_add(i128::from(b - b'0')))
                        .ok_or_else(|| {
                            if seen_point {
                                DecimalError::TooPrecise(text.to_string())
                            } else {
                                too_large()
                            }
                        })?;
                    digits += 1;
                    if seen_point {
                        scale += fraction_zeros + 1;
                        fraction_zeros = 0;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return Err(syntax()),
            }
            i += 1;
        }
        if digits == 0 {
            return Err(syntax());
        }
        if i < bytes.len() {
            // Exponent part: shifts the scale.
            let exponent: i64 = text[i + 1..].parse().map_err(|_| syntax())?;
            // `scale` is >= 0 here, so only an exponent near -2^63 overflows:
            // that many decimal places cannot be represented.
            scale = scale
                .checked_sub(exponent)
                .ok_or_else(|| DecimalError::TooPrecise(text.to_string()))?;
        }
        if scale < 0 {
            let factor = 10i128.checked_pow(u32::try_from(-scale).map_err(|_| too_large())?);
            mantissa = factor
                .and_then(|f| mantissa.checked_mul(f))
                .ok_or_else(too_large)?;
            scale = 0;
        }
        let scale = u32::try_from(scale).map_err(|_| too_large())?;
        if scale > 30 {
            return Err(DecimalError::TooPrecise(text.to_string()));
        }
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// The value times `10^shift`, when that is a whole number.
    pub fn scaled_to_integer(self, shift: u32) -> Option<i128> {
        let factor = 10i128.checked_pow(shift)?;
        let scaled = self.mantissa.checked_mul(factor)?;
        let divisor = 10i128.checked_pow(self.scale)?;
        (scaled % divisor == 0).then(|| scaled / divisor)
    }

    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let divisor = 10i128.pow(self.scale);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let abs = self.mantissa.unsigned_abs();
        let divisor = divisor as u128;
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / divisor,
            abs % divisor,
            width = self.scale as usize
        )
    }
}

/// How a record's cost is rounded, at its one rounding point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Half away from zero.
    HalfUp,
    /// Half to even (banker's).
    HalfEven,
    /// Up to the next step (CGRateS' `*up`).
    Up,
    /// Down to the step (CGRateS' `*down`).
    Down,
}

impl Rounding {
    pub fn parse(text: &str) -> Option<Rounding> {
        match text {
            "half_up" => Some(Rounding::HalfUp),
            "half_even" => Some(Rounding::HalfEven),
            "up" => Some(Rounding::Up),
            "down" => Some(Rounding::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::HalfUp => "half_up",
            Rounding::HalfEven => "half_even",
            Rounding::Up => "up",
            Rounding::Down => "down",
        }
    }

    /// `numerator / denominator` (both non-negative, denominator positive)
    /// as a whole number, rounded this way.
    pub fn divide(self, numerator: i128, denominator: i128) -> i128 {
        debug_assert!(numerator >= 0 && denominator > 0);
        let (quotient, remainder) = (numerator / denominator, numerator % denominator);
        let up = match self {
            Rounding::Down => false,
            Rounding::Up => remainder > 0,
            Rounding::HalfUp => remainder * 2 >= denominator,
            Rounding::HalfEven => {
                remainder * 2 > denominator || (remainder * 2 == denominator && quotient % 2 == 1)
            }
        };
        quotient + i128::from(up)
    }
}

/// How a price is rounded: once, to `decimals` places (at most 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundingPoint {
    pub rounding: Rounding,
    pub decimals: u32,
}

impl RoundingPoint {
    /// `numerator / denominator` billionths (non-negative), rounded here,
    /// in micro-units; `None` when it does not fit in 64 bits.
    pub fn nanos_to_micros(self, numerator: i128, denominator: i128) -> Option<i64> {
        let step = denominator.checked_mul(10i128.pow(9 - self.decimals))?;
        let steps = self.rounding.divide(numerator, step);
        i64::try_from(steps.checked_mul(10i128.pow(6 - self.decimals))?).ok()
    }
}

/// Divides `numerator / denominator`, rounding half away from zero.
pub fn div_round_half_away(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder.unsigned_abs() * 2 >= denominator.unsigned_abs() {
        quotient + numerator.signum()
    } else {
        quotient
    }
}

/// `value × 10^-scale` as a decimal without trailing zeros, for people:
/// `(3000, 3)` → `3`, `(1500, 3)` → `1.5`.
pub fn format_trimmed(value: i128, scale: u32) -> String {
    let text = Decimal {
        mantissa: value,
        scale,
    }
    .to_string();
    if scale == 0 {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Formats micro-units as a decimal with exactly six places: `16667` → `0.016667`.
pub fn format_micros(micros: i128) -> String {
    Decimal {
        mantissa: micros,
        scale: 6,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fractions_are_exact_or_refused_as_too_precise() {
        let zeros = format!("7.5{}", "0".repeat(40));
        assert_eq!(
            Decimal::parse(&zeros).unwrap().scaled_to_integer(6),
            Some(7_500_000)
        );
        let digits = format!("1.{}", "3".repeat(32));
        let parsed = Decimal::parse(&digits);
        assert!(matches!(parsed, Err(DecimalError::TooPrecise(_))));
        let too_many = format!("1.{}", "3".repeat(60));
        assert!(matches!(
            Decimal::parse(&too_many),
            Err(DecimalError::TooPrecise(_))
        ));
    }

    #[test]
    fn exponents_at_the_ends_of_i64_are_refused_not_overflowed() {
        // Found by fuzzing (money_decimal): `scale -= exponent` overflowed.
        assert!(matches!(
            Decimal::parse("1e-9223372036854775808"),
            Err(DecimalError::TooPrecise(_))
        ));
        assert!(matches!(
            Decimal::parse("1.5e-9223372036854775807"),
            Err(DecimalError::TooPrecise(_))
        ));
        assert!(matches!(
            Decimal::parse("1e9223372036854775807"),
            Err(DecimalError::TooLarge(_))
        ));
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(
            Decimal::parse("150.5").unwrap(),
            Decimal {
                mantissa: 1505,
                scale: 1
            }
        );
        assert_eq!(
            Decimal::parse("-0.25").unwrap(),
            Decimal {
                mantissa: -25,
                scale: 2
            }
        );
        assert_eq!(
            Decimal::parse("1.5e3").unwrap(),
            Decimal {
                mantissa: 1500,
                scale: 0
            }
        );
        assert_eq!(
            Decimal::parse("15e-1").unwrap(),
            Decimal {
                mantissa: 15,
                scale: 1
            }
        );
        assert!(Decimal::parse("1.2.3").is_err());
        assert!(Decimal::parse("").is_err());
        assert!(Decimal::parse("abc").is_err());
    }

    #[test]
    fn scales_to_whole_units_only_when_exact() {
        let mb = Decimal::parse("150.5").unwrap();
        assert_eq!(mb.scaled_to_integer(6), Some(150_500_000));
        assert_eq!(
            Decimal::parse("0.0000001").unwrap().scaled_to_integer(6),
            None
        );
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 10), 1);
        assert_eq!(div_round_half_away(4, 10), 0);
        assert_eq!(div_round_half_away(-5, 10), -1);
        assert_eq!(div_round_half_away(-4, 10), 0);
        assert_eq!(div_round_half_away(1_000_000, 60), 16_667);
    }

    #[test]
    fn formats_six_places() {
        assert_eq!(format_micros(16_667), "0.016667");
        assert_eq!(format_micros(49_000_000_000_000), "49000000.000000");
        assert_eq!(format_micros(-1), "-0.000001");
        assert_eq!(format_trimmed(3000, 3), "3");
        assert_eq!(format_trimmed(1500, 3), "1.5");
        assert_eq!(format_trimmed(100, 0), "100");
        assert_eq!(format_trimmed(6_000_000, 9), "0.006");
    }
}
