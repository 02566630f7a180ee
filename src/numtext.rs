//! Numbers as text, fast, and byte-identical to `format!("{x}")`: the
//! outputs are a contract (their digests), so the fast path must print
//! exactly what `Display` prints. Integers go through `itoa`; floats get
//! their shortest round-trip digits from `ryu` and are laid out the way
//! `Display` lays them out (plain decimal, never an exponent).
//!
//! The two agree on the digits except when the exact binary value lies
//! exactly halfway between two shortest candidates: `ryu` then picks the
//! even one, `Display` the upper. Such a tie needs an exact value with at
//! most 18 significant digits: an integer of 2^53 or more, or a fraction
//! m / 2^k with k <= 25 (m odd; its exact expansion has at least
//! 0.699 k digits). Those few values take `Display` itself.

/// Appends `x` as `Display` prints it. Inlined with a one-digit shortcut:
/// most counts in a row (retries, hedges, attempts, ...) are 0 or 1, and
/// `itoa`'s call and the copy of its buffer were most of what they cost.
#[inline]
pub fn push_u64(buf: &mut Vec<u8>, x: u64) {
    if x < 10 {
        buf.push(b'0' + x as u8);
    } else {
        push_u64_digits(buf, x);
    }
}

fn push_u64_digits(buf: &mut Vec<u8>, x: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(x).as_bytes());
}

/// Appends `x` as `Display` prints it (`1` for 1.0, `0.0001`, `-0`, `inf`).
pub fn push_f64(buf: &mut Vec<u8>, x: f64) {
    if !x.is_finite() {
        buf.extend_from_slice(format!("{x}").as_bytes());
        return;
    }
    if tie_possible(x) {
        use std::io::Write;
        let _ = write!(buf, "{x}");
        return;
    }
    let mut ryu_buf = ryu::Buffer::new();
    let text = ryu_buf.format_finite(x).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // Split ryu's form (`1.5`, `1e-7`, `1.234e20`) into its digits and the
    // position of the decimal point among them.
    let (mantissa, exp) = match text.iter().position(|&b| b == b'e') {
        Some(i) => {
            let e = std::str::from_utf8(&text[i + 1..])
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .unwrap_or(0);
            (&text[..i], e)
        }
        None => (text, 0),
    };
    let mut digits = [0u8; 40];
    let mut n = 0usize;
    let mut point: i32 = -1;
    for &b in mantissa {
        if b == b'.' {
            point = n as i32;
        } else if n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    if point < 0 {
        point = n as i32;
    }
    point += exp;
    // Drop leading zeros (moving the point) and trailing zeros.
    let mut start = 0;
    while start < n && digits[start] == b'0' {
        start += 1;
        point -= 1;
    }
    while n > start && digits[n - 1] == b'0' {
        n -= 1;
    }
    if negative {
        buf.push(b'-');
    }
    let digits = &digits[start..n];
    if digits.is_empty() {
        buf.push(b'0');
        return;
    }
    let len = digits.len() as i32;
    if point <= 0 {
        buf.extend_from_slice(b"0.");
        buf.extend(std::iter::repeat_n(b'0', (-point) as usize));
        buf.extend_from_slice(digits);
    } else if point >= len {
        buf.extend_from_slice(digits);
        buf.extend(std::iter::repeat_n(b'0', (point - len) as usize));
    } else {
        buf.extend_from_slice(&digits[..point as usize]);
        buf.push(b'.');
        buf.extend_from_slice(&digits[point as usize..]);
    }
}

/// Appends `units / 10^scale` exactly as `Display` prints the float
/// `units as f64 / 10^scale` (how µs become ms and nano-dollars dollars),
/// from the integer alone: below 2^52 units the float's shortest round-trip
/// digits are exactly the decimal `units / 10^scale` (any other string of
/// as few digits is at least 10^-scale away, more than the float's ulp), so
/// printing the integer with a decimal point is exact. Larger values take
/// the float path.
pub fn push_fixed(buf: &mut Vec<u8>, units: u64, scale: u32) {
    const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    debug_assert!(scale <= 9);
    // A zero (no wait, no waste, no cost) is common and prints as `0`.
    if units == 0 {
        buf.push(b'0');
        return;
    }
    if units >= 1 << 52 {
        push_f64(buf, units as f64 / POW10[scale as usize]);
        return;
    }
    let mut ibuf = itoa::Buffer::new();
    let digits = ibuf.format(units).as_bytes();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        (&b"0"[..], digits)
    };
    buf.extend_from_slice(int);
    // The fractional digits, left-padded with zeros, trailing zeros dropped.
    let pad = scale - frac.len();
    let kept = frac.len() - frac.iter().rev().take_while(|&&b| b == b'0').count();
    if kept > 0 {
        buf.push(b'.');
        buf.extend(std::iter::repeat_n(b'0', pad));
        buf.extend_from_slice(&frac[..kept]);
    }
}

/// Whether `x`'s shortest digits could be a tie (see the module notes).
fn tie_possible(x: f64) -> bool {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exp) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    if mantissa == 0 {
        return false;
    }
    let exp = exp + mantissa.trailing_zeros() as i32;
    if exp >= 0 {
        x.abs() >= 9_007_199_254_740_992.0
    } else {
        exp >= -25
    }
}

/// Appends `x` as a CSV cell: as [`push_f64`], nothing for NaN (pandas reads
/// an empty cell as NaN).
pub fn push_f64_cell(buf: &mut Vec<u8>, x: f64) {
    if !x.is_nan() {
        push_f64(buf, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(x: f64) -> String {
        let mut b = Vec::new();
        push_f64(&mut b, x);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn hand_picked_values_print_as_display_does() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            1e-7,
            1.5e-7,
            123.456,
            1e15,
            1e16,
            1e21,
            1.234e20,
            12345.678,
            0.0001,
            0.00012,
            1e-300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.3,
            2.0f64.powi(53),
            1e300,
            9.999e-5,
            100.0,
            0.001,
            f64::INFINITY,
            f64::NEG_INFINITY,
            8829180816910.562,
            -660541449562432.3,
            12345.125,
            0.5,
            2.0f64.powi(60) + 2048.0,
        ] {
            assert_eq!(text(x), format!("{x}"), "{x:e}");
        }
        let mut b = Vec::new();
        push_f64_cell(&mut b, f64::NAN);
        assert!(b.is_empty());
        push_u64(&mut b, 18_446_744_073_709_551_615);
        assert_eq!(b, b"18446744073709551615");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, .. ProptestConfig::default() })]
        #[test]
        fn any_float_prints_as_display_does(bits in any::<u64>()) {
            // Every finite pattern: a NaN or infinity loses its top exponent bit.
            let x = f64::from_bits(bits);
            let x = if x.is_finite() { x } else { f64::from_bits(bits & !(1 << 62)) };
            prop_assert_eq!(text(x), format!("{x}"));
        }

        #[test]
        fn fixed_point_prints_as_display_of_the_quotient(units in 0u64..(1 << 54), small in 0u64..100_000, scale in 0u32..10) {
            for u in [units, small, 0] {
                let mut b = Vec::new();
                push_fixed(&mut b, u, scale);
                let x = u as f64 / 10f64.powi(scale as i32);
                prop_assert_eq!(String::from_utf8(b).unwrap(), format!("{x}"), "{} / 10^{}", u, scale);
            }
        }

        #[test]
        fn integers_print_as_display_does(x in any::<u64>(), small in 0u64..1000) {
            for v in [x, small, x % 10] {
                let mut b = b"x".to_vec();
                push_u64(&mut b, v);
                prop_assert_eq!(String::from_utf8(b).unwrap(), format!("x{v}"));
            }
        }

        #[test]
        fn run_values_print_as_display_does(us in 0u64..(1 << 53), nano in 0u64..(1 << 53)) {
            // What the outputs hold: µs as ms, nano-dollars as dollars.
            for x in [us as f64 / 1000.0, nano as f64 / 1e9, us as f64 / 1e6] {
                prop_assert_eq!(text(x), format!("{x}"));
            }
        }
    }
}
