//! Order statistics on sorted slices: quantiles (numpy's default linear interpolation) and
//! percentile ranks (scipy's `percentileofscore(kind="mean")`).

/// The `q`-quantile (0 ≤ q ≤ 1) of an ascending, NaN-free slice, by linear interpolation between
/// the two nearest order statistics: numpy's default (`method="linear"`, Hyndman & Fan type 7),
/// the same as pandas' `quantile()`. `None` for an empty slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = count_f64(n - 1) * q.clamp(0.0, 1.0);
    let lo = floor_index(h);
    let hi = (lo + 1).min(n - 1);
    let frac = h - h.floor();
    Some(sorted[lo] + frac * (sorted[hi] - sorted[lo]))
}

/// A count as f64, for shares and positions.
#[inline]
#[expect(
    clippy::cast_precision_loss,
    reason = "exact for counts below 2^53; the stage holds at most u32::MAX entities"
)]
pub fn count_f64(n: usize) -> f64 {
    n as f64
}

/// The index below a fractional position `h` of a sorted slice.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "h is finite and within [0, n - 1]: floor(h) is an index of the slice"
)]
fn floor_index(h: f64) -> usize {
    h.floor() as usize
}

/// Percentile rank (0–100) of `value` within an ascending slice: the share of values below it
/// plus half the share equal to it (scipy's `percentileofscore(kind="mean")`). Ties share one
/// rank; a lone value ranks 50; the top of 10 distinct values ranks 95 and the bottom 5.
pub fn percentile_rank_sorted(sorted: &[f64], value: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 || value.is_nan() {
        return None;
    }
    let below = sorted.partition_point(|&x| x < value);
    let at_or_below = below + sorted[below..].partition_point(|&x| x <= value);
    let equal = at_or_below - below;
    // Multiply before dividing so that exact boundaries (10, 50, 90) stay exact.
    Some((count_f64(below) + 0.5 * count_f64(equal)) * 100.0 / count_f64(n))
}

/// Sorts finite values ascending; faster than `total_cmp` on f64 because the values are mapped to
/// order-preserving integers once.
pub fn sort_finite(values: &mut [f64]) {
    values.sort_unstable_by_key(|&v| ordered_key(v));
}

/// Maps a finite f64 to an i64 whose integer order equals the float order (−0.0 sorts before 0.0,
/// which is harmless: they compare equal as floats everywhere else).
#[inline]
pub fn ordered_key(v: f64) -> i64 {
    flip_negative(v.to_bits().cast_signed())
}

/// The inverse of [`ordered_key`] (the mapping is its own inverse on the bit pattern).
#[inline]
pub fn from_ordered_key(k: i64) -> f64 {
    f64::from_bits(flip_negative(k).cast_unsigned())
}

/// Flips every bit but the sign of a negative bit pattern: negative floats then order as integers.
#[inline]
fn flip_negative(bits: i64) -> i64 {
    // bits >> 63 is all ones for a negative pattern; shifted right unsigned it spares the sign.
    bits ^ ((bits >> 63).cast_unsigned() >> 1).cast_signed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], [0.1, 0.5, 0.9]) == [1.3, 2.5, 3.7]
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((quantile_sorted(&v, 0.1).unwrap() - 1.3).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.5).unwrap() - 2.5).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.9).unwrap() - 3.7).abs() < 1e-12);
        // numpy.quantile([10, 20, 30, 40, 1000], 0.9) == 616.0
        let v = [10.0, 20.0, 30.0, 40.0, 1000.0];
        assert!((quantile_sorted(&v, 0.9).unwrap() - 616.0).abs() < 1e-9);
        assert_eq!(quantile_sorted(&[7.0], 0.1), Some(7.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&[1.0, 3.0], 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&[1.0, 3.0], 1.0), Some(3.0));
    }

    #[test]
    fn ranks_with_ties_use_the_mean_kind() {
        let v = [1.0, 2.0, 2.0, 2.0, 5.0];
        // scipy.stats.percentileofscore(v, 2, kind="mean") == 50.0
        assert_eq!(percentile_rank_sorted(&v, 2.0), Some(50.0));
        assert_eq!(percentile_rank_sorted(&v, 1.0), Some(10.0));
        assert_eq!(percentile_rank_sorted(&v, 5.0), Some(90.0));
        assert_eq!(percentile_rank_sorted(&[3.0], 3.0), Some(50.0));
        assert_eq!(percentile_rank_sorted(&[], 3.0), None);
        assert_eq!(percentile_rank_sorted(&v, f64::NAN), None);
    }

    #[test]
    fn sort_handles_negatives_and_zero() {
        let mut v = vec![3.5, -1.0, 0.0, -0.0, -7.25, 1e300, -1e300, 2.0];
        sort_finite(&mut v);
        assert_eq!(v, vec![-1e300, -7.25, -1.0, -0.0, 0.0, 2.0, 3.5, 1e300]);
        for x in v {
            assert_eq!(from_ordered_key(ordered_key(x)).to_bits(), x.to_bits());
        }
    }
}
