//! Human-readable numbers, a leaf layer: durations (`2.3s`), sizes
//! (`1.2 GiB`) and counts (`12,000`), as every renderer and step writes them.
//! Pure functions of their argument; nothing here reads the clock or the
//! terminal.

/// A duration for people: `850ms`, `2.3s`, `1m04s`, `2h05m`.
pub fn human_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1_000;
    if secs < 3_600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = (secs + 30) / 60;
    format!("{}h{:02}m", mins / 60, mins % 60)
}

/// `512 B`, `1.2 GiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `12,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The innermost error of a chain as a phrase: "connection refused" rather
/// than "error connecting to server: Connection refused (os error 111)".
pub fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    as_phrase(&inner.to_string())
}

/// "Connection refused (os error 111)" → "connection refused"; "SSL …" and
/// other words in capitals stay as they are.
pub fn as_phrase(text: &str) -> String {
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (999, "999ms"),
            (1_000, "1.0s"),
            (2_345, "2.3s"),
            (59_949, "59.9s"),
            (59_950, "1m00s"),
            (64_000, "1m04s"),
            (3_599_499, "59m59s"),
            (3_600_000, "1h00m"),
            (7_500_000, "2h05m"),
        ];
        for (ms, want) in cases {
            assert_eq!(human_duration(ms), want, "{ms} ms");
        }
    }
}
