//! Text for the page: numbers as tick labels and hover values, durations, HTML escaping,
//! the command line and the date.

/// A tick label: 1500 as "1.5k", 2000000 as "2M", 0.25 as "0.25".
pub(super) fn short(v: f64) -> String {
    let (v, suffix) = scaled(v, &[(1e6, "M"), (1e3, "k")], "");
    format!("{}{suffix}", trimmed(format!("{v:.2}")))
}

/// `v` in the largest of `units` (threshold, name; largest first) it reaches, else in `base`.
fn scaled(v: f64, units: &[(f64, &'static str)], base: &'static str) -> (f64, &'static str) {
    units
        .iter()
        .find(|(size, _)| v >= *size)
        .map_or((v, base), |&(size, name)| (v / size, name))
}

/// A decimal number without trailing zeros ("1.50" as "1.5", "2.00" as "2").
fn trimmed(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A unit after a number: "/s" sticks to it, words get a space.
pub(super) fn spaced(unit: &str) -> String {
    if unit.starts_with('/') {
        unit.to_owned()
    } else {
        format!(" {unit}")
    }
}

/// A value in hover text: whole numbers as integers, thousands grouped for large numbers,
/// two decimals for small ones.
pub(super) fn grouped(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Microseconds in the unit that reads best: "850 µs", "1.2 ms", "3 s".
pub(super) fn duration_us(us: f64) -> String {
    let (v, unit) = scaled(us, &[(1e6, "s"), (1e3, "ms")], "µs");
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{} {unit}", trimmed(text))
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The command line as it could be typed again: arguments with spaces or shell
/// metacharacters single-quoted.
pub fn command_line(args: &[String]) -> String {
    let mut line = String::from("mesh-bench");
    for arg in args {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
        if plain {
            line += arg;
        } else {
            line += &format!("'{}'", arg.replace('\'', "'\\''"));
        }
    }
    line
}

/// `seconds` since the Unix epoch as a UTC date and time, "2026-12-01 14:03:09 UTC".
pub(super) fn utc_date(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Days since 1970-01-01 to a civil date, counting from 0000-03-01 so the leap day is
    // the last day of a year (400-year eras of 146,097 days).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
