//! The traffic light: the machine's available memory and load, against the
//! thresholds of the config. Red sheds load (/ready is 503 and new
//! connections are treated as over the bound) until the light is green again.
//!
//! Owns: reading `/proc/meminfo` and `/proc/loadavg`, and the thresholds.
//! Must never: be read on a hot path (the watchdog samples it once a second
//! and stores the color in `State`), or fail loudly (an unreadable file
//! counts as green).

/// The light's color, as `State` keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Color {
    Green = 0,
    Yellow = 1,
    Red = 2,
}

impl Color {
    pub const ALL: [Color; 3] = [Color::Green, Color::Yellow, Color::Red];

    pub fn name(self) -> &'static str {
        match self {
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Red => "red",
        }
    }
}

/// Where the light turns yellow and red; all None: no light (always green).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Available memory (bytes) below which the light is yellow / red.
    pub memory_yellow: Option<u64>,
    pub memory_red: Option<u64>,
    /// One-minute load average above which the light is yellow / red.
    pub load_yellow: Option<f64>,
    pub load_red: Option<f64>,
}

/// What the machine has now; None where it could not be read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub available: Option<u64>,
    pub load: Option<f64>,
}

impl Thresholds {
    pub fn enabled(&self) -> bool {
        *self != Thresholds::default()
    }

    pub fn color(&self, s: Sample) -> Color {
        let below = |limit: Option<u64>| s.available.zip(limit).is_some_and(|(a, l)| a < l);
        let above = |limit: Option<f64>| s.load.zip(limit).is_some_and(|(a, l)| a > l);
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
            .and_then(|l| l.parse().ok()),
    }
}

/// `MemAvailable:  123456 kB` in bytes.
fn available_memory(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
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
            load_yellow: Some(2.0),
            load_red: Some(4.0),
        };
        let at = |available, load| {
            t.color(Sample {
                available: Some(available),
                load: Some(load),
            })
        };
        assert_eq!(at(5000, 0.5), Color::Green);
        assert_eq!(at(500, 0.5), Color::Yellow);
        assert_eq!(at(5000, 3.0), Color::Yellow);
        assert_eq!(at(50, 0.5), Color::Red);
        assert_eq!(at(5000, 4.5), Color::Red);
        assert_eq!(t.color(Sample::default()), Color::Green);
        assert!(!Thresholds::default().enabled() && t.enabled());
        assert_eq!(
            available_memory("MemTotal: 9 kB\nMemAvailable:   2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert!(sample().available.is_some());
    }
}
