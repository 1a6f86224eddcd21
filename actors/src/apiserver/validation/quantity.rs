//! Resource quantities.

#[allow(unused_imports)]
use super::*;

/// A Kubernetes resource quantity, held exactly in nano-units (`1` is 10^9, `500m` is
/// 5×10^8). Values finer than a nano-unit round up to one, like Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    pub(super) nanos: i128,
}

pub(super) const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    pub fn from_nanos(nanos: i128) -> Quantity {
        Quantity { nanos }
    }

    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Milli-units rounded up (Kubernetes' `MilliValue`): `1` → 1000, `100m` → 100.
    pub fn milli_value(self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Units rounded up (Kubernetes' `Value`): `1Gi` → 1073741824, `100m` → 1.
    pub fn value(self) -> i128 {
        ceil_div(self.nanos, NANOS_PER_UNIT)
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

pub(super) fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

pub(super) const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
pub(super) const QUANTITY_SUFFIX_ERROR: &str = "unable to parse quantity's suffix";
pub(super) const QUANTITY_NUMERIC_ERROR: &str = "unable to parse numeric part of quantity";

/// Parses a quantity in any of Kubernetes' forms: decimal SI (`n u m "" k M G T P E`),
/// binary (`Ki Mi Gi Ti Pi Ei`) or decimal exponent (`1e3`, `5E-2`), with an optional
/// sign and fraction. Errors carry Kubernetes' messages.
pub fn parse_quantity(text: &str) -> Result<Quantity, String> {
    let bytes = text.as_bytes();
    let mut position = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            position += 1;
            true
        }
        Some(b'+') => {
            position += 1;
            false
        }
        Some(_) => false,
        None => return Err(QUANTITY_FORMAT_ERROR.into()),
    };
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut digits = 0;
    let mut seen_point = false;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_digit() {
            digits += 1;
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|value| value.checked_add(i128::from(byte - b'0')))
                .ok_or(QUANTITY_NUMERIC_ERROR)?;
            if seen_point {
                fraction_digits += 1;
            }
        } else if byte == b'.' && !seen_point {
            seen_point = true;
        } else if byte == b'.' {
            return Err(QUANTITY_FORMAT_ERROR.into());
        } else {
            break;
        }
        position += 1;
    }
    if digits == 0 {
        return Err(QUANTITY_FORMAT_ERROR.into());
    }
    // The suffix: letters from the set, then an optional sign and digits.
    let suffix = &text[position..];
    let letters_end = suffix
        .bytes()
        .position(|byte| !b"eEinumkKMGTP".contains(&byte))
        .unwrap_or(suffix.len());
    let rest = &suffix[letters_end..];
    let rest_digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if !rest_digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(QUANTITY_FORMAT_ERROR.into());
    }
    let (exponent10, power_of_1024): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        _ if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) => {
            let exponent: i32 = suffix[1..]
                .parse()
                .map_err(|_| QUANTITY_SUFFIX_ERROR.to_string())?;
            (exponent, 0)
        }
        _ => return Err(QUANTITY_SUFFIX_ERROR.into()),
    };
    // nanos = mantissa × 10^(exponent10 − fraction_digits + 9) × 1024^power.
    let scale = i64::from(exponent10) - i64::from(fraction_digits) + 9;
    let mut nanos = if scale >= 0 {
        let factor = u32::try_from(scale)
            .ok()
            .and_then(|scale| 10_i128.checked_pow(scale))
            .ok_or(QUANTITY_NUMERIC_ERROR)?;
        mantissa.checked_mul(factor).ok_or(QUANTITY_NUMERIC_ERROR)?
    } else {
        match u32::try_from(-scale)
            .ok()
            .and_then(|scale| 10_i128.checked_pow(scale))
        {
            Some(divisor) => ceil_div(mantissa, divisor),
            // Smaller than any representable fraction: rounds up to one nano-unit.
            None => i128::from(mantissa > 0),
        }
    };
    if power_of_1024 > 0 {
        let factor = 1024_i128.pow(power_of_1024);
        nanos = nanos.checked_mul(factor).ok_or(QUANTITY_NUMERIC_ERROR)?;
    }
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}
