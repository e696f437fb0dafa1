//! Kubernetes resource quantities (`128Mi`, `1Gi`, `1024M`, `1.5Gi`, `1e9`).

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("is not a Kubernetes quantity; use a number with an optional suffix such as 128Mi, 1Gi or 1024M")]
    Syntax,
    #[error("has an unknown suffix {0:?}; use Ki, Mi, Gi, Ti, Pi, Ei (binary) or k, M, G, T, P, E (decimal)")]
    Suffix(String),
    #[error("is too large")]
    Overflow,
}

fn multiplier(suffix: &str) -> Option<(u128, u128)> {
    // (numerator, denominator)
    let m = match suffix {
        "" => (1, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        _ => return None,
    };
    Some(m)
}

/// Parses a quantity into a whole number of bytes (fractions round up, as
/// Kubernetes does).
pub fn parse_quantity(text: &str) -> Result<u64, QuantityError> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(QuantityError::Syntax);
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(QuantityError::Overflow);
    }
    let mantissa: u128 = digits.parse().map_err(|_| QuantityError::Syntax)?;
    let mut den: u128 = 10u128.pow(frac_part.len() as u32);

    // Decimal exponent form: 1e9, 5E3 (a bare "E" is the exa suffix).
    let exponent = rest
        .strip_prefix('e')
        .or_else(|| rest.strip_prefix('E'))
        .and_then(|e| e.parse::<i32>().ok());
    let (num, extra_den) = if let Some(e) = exponent {
        if e.unsigned_abs() > 30 {
            return Err(QuantityError::Overflow);
        }
        let p = 10u128.pow(e.unsigned_abs());
        if e >= 0 {
            (p, 1)
        } else {
            (1, p)
        }
    } else {
        multiplier(rest).ok_or_else(|| QuantityError::Suffix(rest.to_string()))?
    };
    den = den.checked_mul(extra_den).ok_or(QuantityError::Overflow)?;
    let total = mantissa.checked_mul(num).ok_or(QuantityError::Overflow)?;
    let bytes = total.div_ceil(den);
    u64::try_from(bytes).map_err(|_| QuantityError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity("128Mi"), Ok(128 << 20));
        assert_eq!(parse_quantity("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity("2Ti"), Ok(2 << 40));
        assert_eq!(parse_quantity("64Ki"), Ok(64 << 10));
        assert_eq!(parse_quantity("1024M"), Ok(1_024_000_000));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("5k"), Ok(5_000));
        assert_eq!(parse_quantity("1T"), Ok(1_000_000_000_000));
    }

    #[test]
    fn plain_fraction_and_exponent() {
        assert_eq!(parse_quantity("134217728"), Ok(134_217_728));
        assert_eq!(parse_quantity("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_quantity("0.5Ki"), Ok(512));
        assert_eq!(parse_quantity("1e9"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_quantity("2E3"), Ok(2_000));
        assert_eq!(parse_quantity("1Ei"), Ok(1 << 60));
        assert_eq!(parse_quantity("1500m"), Ok(2));
        assert_eq!(parse_quantity(" 1Mi "), Ok(1 << 20));
    }

    #[test]
    fn bad_quantities() {
        assert_eq!(parse_quantity(""), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("Mi"), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("1.2.3Mi"), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("-1Gi"), Err(QuantityError::Syntax));
        assert_eq!(
            parse_quantity("12MB"),
            Err(QuantityError::Suffix("MB".to_string()))
        );
        assert_eq!(
            parse_quantity("1gi"),
            Err(QuantityError::Suffix("gi".into()))
        );
        assert_eq!(parse_quantity("100Ei"), Err(QuantityError::Overflow));
    }
}
