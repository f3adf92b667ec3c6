//! Conversions of numbers that come from outside (specs, node reports), checked: an `as` cast
//! would silently truncate, wrap or saturate them.

/// `x` as a `u64` when it is finite, not negative and below 2^64 (rounded toward zero).
pub fn f64_to_u64(x: f64) -> Option<u64> {
    // 2^64 is exact in an f64, and every f64 below it converts without wrapping; NaN is in
    // no range.
    if (0.0..18_446_744_073_709_551_616.0).contains(&x) {
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "the range is checked above")]
        Some(x as u64)
    } else {
        None
    }
}

/// `x` as an `i64`, clamped to i64's range; NaN is 0. For scores and prices, where a value
/// past the range means "as far as it goes".
pub fn f64_to_i64_saturating(x: f64) -> i64 {
    #[expect(clippy::cast_possible_truncation, reason = "Rust's float casts saturate, and NaN becomes 0")]
    let v = x as i64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_is_refused_or_clamped() {
        assert_eq!(f64_to_u64(1.9), Some(1));
        assert_eq!(f64_to_u64(-0.5), None);
        assert_eq!(f64_to_u64(f64::NAN), None);
        assert_eq!(f64_to_u64(1e30), None);
        assert_eq!(f64_to_u64(18_446_744_073_709_549_568.0), Some(18_446_744_073_709_549_568));
        assert_eq!(f64_to_i64_saturating(1e300), i64::MAX);
        assert_eq!(f64_to_i64_saturating(-1e300), i64::MIN);
        assert_eq!(f64_to_i64_saturating(f64::NAN), 0);
    }
}
