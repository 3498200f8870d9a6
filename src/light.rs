//! The traffic light: the machine's available memory and load, against the
//! thresholds of the config. Red sheds load (/ready is 503 and new
//! connections are treated as over the bound) until the light is green again.
//!
//! Owns: reading `/proc/meminfo` and `/proc/loadavg`, and the thresholds.
//! Must never: be read on a hot path (the watchdog samples it once a second
//! and stores the color in `State`), or fail loudly (an unreadable file
//! counts as green).

labelled! {
    /// The light's color, as `State` keeps it.
    pub enum Color {
        Green => "green",
        Yellow => "yellow",
        Red => "red",
    }
}

/// Where the light turns yellow and red; all None: no light (always green).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Available memory (bytes) below which the light is yellow / red.
    pub memory_yellow: Option<u64>,
    pub memory_red: Option<u64>,
    /// One-minute load average above which the light is yellow / red, in
    /// hundredths (`3.5` is 350).
    pub load_yellow: Option<u64>,
    pub load_red: Option<u64>,
}

/// What the machine has now; None where it could not be read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub available: Option<u64>,
    /// In hundredths.
    pub load: Option<u64>,
}

impl Thresholds {
    pub fn enabled(&self) -> bool {
        *self != Thresholds::default()
    }

    pub fn color(&self, s: Sample) -> Color {
        let below = |limit: Option<u64>| s.available.zip(limit).is_some_and(|(a, l)| a < l);
        let above = |limit: Option<u64>| s.load.zip(limit).is_some_and(|(a, l)| a > l);
        if below(self.memory_red) || above(self.load_red) {
            Color::Red
        } else if below(self.memory_yellow) || above(self.load_yellow) {
            Color::Yellow
        } else {
            Color::Green
        }
    }
}

/// Reads the machine's available memory and one-minute load average.
pub fn sample() -> Sample {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    Sample {
        available: available_memory(&read("/proc/meminfo")),
        load: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(hundredths),
    }
}

/// `3`, `3.5` or `0.52` in hundredths (300, 350, 52); a third decimal and
/// beyond are dropped. Integers only: float parsing would add tens of KB.
pub fn hundredths(s: &str) -> Option<u64> {
    let (whole, fraction) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || s.trim().ends_with('.') {
        return None;
    }
    let cents = fraction.bytes().chain([b'0', b'0']).take(2);
    let cents = cents.fold(0, |n, b| n * 10 + u64::from(b - b'0'));
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

/// `MemAvailable:  123456 kB` in bytes.
fn available_memory(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

/// A `NAME  123456 kB` line of a /proc file (meminfo, PID/status), in bytes.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_make_the_color() {
        let t = Thresholds {
            memory_yellow: Some(1000),
            memory_red: Some(100),
            load_yellow: Some(200),
            load_red: Some(400),
        };
        let at = |available, load| {
            t.color(Sample {
                available: Some(available),
                load: Some(load),
            })
        };
        assert_eq!(at(5000, 50), Color::Green);
        assert_eq!(at(500, 50), Color::Yellow);
        assert_eq!(at(5000, 300), Color::Yellow);
        assert_eq!(at(50, 50), Color::Red);
        assert_eq!(at(5000, 450), Color::Red);
        assert_eq!(hundredths("3"), Some(300));
        assert_eq!(hundredths("0.52"), Some(52));
        assert_eq!(hundredths("3.5"), Some(350));
        assert_eq!(hundredths("1.239"), Some(123));
        for bad in ["", ".5", "3.", "-1", "x", "1.2.3"] {
            assert_eq!(hundredths(bad), None, "{bad}");
        }
        assert_eq!(t.color(Sample::default()), Color::Green);
        assert!(!Thresholds::default().enabled() && t.enabled());
        assert_eq!(
            available_memory("MemTotal: 9 kB\nMemAvailable:   2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert!(sample().available.is_some());
    }
}
