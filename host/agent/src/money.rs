//! Money and other amounts as people read them: enough digits to be non-zero and to tell
//! a spend from its limit, never `$0.0000 over its budget of $0.0000`.

/// Most decimals ever shown (a billionth of a cent is below any price).
const MAX_DECIMALS: usize = 12;

/// Decimals for two significant digits, at least `min`.
fn decimals(x: f64, min: usize) -> usize {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() {
        return min;
    }
    // Two significant digits: 0.0012 -> 4 decimals, 0.000031 -> 6, 0.5 -> 2.
    let mut d = 0;
    while d < MAX_DECIMALS && (a * 10f64.powi(d as i32)).round() < 10.0 {
        d += 1;
    }
    d.clamp(min, MAX_DECIMALS)
}

fn dollars(usd: f64, d: usize) -> String {
    if usd < 0.0 {
        format!("-${:.*}", d, -usd)
    } else {
        format!("${usd:.d$}")
    }
}

/// US dollars with two significant digits and at least cents: `$1.50`, `$0.0012`,
/// `$0.000031`, `$0.00`.
pub fn format_money(usd: f64) -> String {
    dollars(usd, decimals(usd, 2))
}

/// Two amounts with the same number of decimals, as many as it takes for different
/// amounts to read differently: (`$0.0012`, `$0.0010`), (`$0.00123`, `$0.00120`).
pub fn format_money_pair(used: f64, limit: f64) -> (String, String) {
    let d = distinct_decimals(used, limit, decimals(used, 2).max(decimals(limit, 2)));
    (dollars(used, d), dollars(limit, d))
}

/// The decimals, from `start`, at which `a` and `b` print differently (if they differ).
pub(crate) fn distinct_decimals(a: f64, b: f64, start: usize) -> usize {
    let mut d = start.min(MAX_DECIMALS);
    while d < MAX_DECIMALS && a != b && format!("{a:.d$}") == format!("{b:.d$}") {
        d += 1;
    }
    d
}

/// Seconds, both with as many decimals as it takes to tell them apart (at least one).
pub(crate) fn format_secs_pair(used: f64, limit: f64) -> (String, String) {
    let d = distinct_decimals(used, limit, 1);
    (format!("{used:.d$}"), format!("{limit:.d$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_significant_digits_and_at_least_cents() {
        assert_eq!(format_money(0.0012), "$0.0012");
        assert_eq!(format_money(0.000031), "$0.000031");
        assert_eq!(format_money(1.5), "$1.50");
        assert_eq!(format_money(0.5), "$0.50");
        assert_eq!(format_money(0.015), "$0.015");
        assert_eq!(format_money(123.456), "$123.46");
        assert_eq!(format_money(0.0), "$0.00");
        assert_eq!(format_money(0.00000000001), "$0.000000000010");
        assert_eq!(format_money(-0.25), "-$0.25");
    }

    #[test]
    fn tiny_amounts_are_never_zero() {
        for x in [1e-4, 3.1e-5, 2.7e-6, 9.99e-7] {
            let s = format_money(x);
            assert!(
                s.trim_start_matches(['$', '0', '.']).len() >= 2,
                "{x} -> {s}"
            );
        }
    }

    #[test]
    fn a_pair_reads_differently_when_it_differs() {
        assert_eq!(
            format_money_pair(0.0012, 0.001),
            ("$0.0012".into(), "$0.0010".into())
        );
        assert_eq!(
            format_money_pair(0.001234, 0.0012),
            ("$0.00123".into(), "$0.00120".into())
        );
        assert_eq!(
            format_money_pair(0.000027, 0.00002),
            ("$0.000027".into(), "$0.000020".into())
        );
        assert_eq!(
            format_money_pair(2.0, 1.5),
            ("$2.00".into(), "$1.50".into())
        );
        assert_eq!(
            format_money_pair(1.0, 1.0),
            ("$1.00".into(), "$1.00".into())
        );
        let (a, b) = format_money_pair(0.00500001, 0.005);
        assert_ne!(a, b);
    }

    #[test]
    fn seconds_pair() {
        assert_eq!(format_secs_pair(1.5, 1.0), ("1.5".into(), "1.0".into()));
        assert_eq!(format_secs_pair(1.04, 1.0), ("1.04".into(), "1.00".into()));
    }
}
