//! Parsed resource amounts, and the parsers for Bacalhau's resource strings.

use serde::{Deserialize, Serialize};

use crate::task::ResourcesConfig;

/// Resource amounts in fixed units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU core.
    pub cpu_millis: u64,
    /// Bytes of memory.
    pub memory_bytes: u64,
    /// Bytes of disk.
    pub disk_bytes: u64,
    /// Number of GPUs.
    pub gpu: u64,
}

/// A resource string that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is not valid: {hint}")]
pub struct ResourceParseError {
    /// Which field (`CPU`, `Memory`, `Disk`, `GPU`).
    pub field: &'static str,
    /// What was given.
    pub value: String,
    /// What would be accepted.
    pub hint: &'static str,
}

impl Resources {
    /// Parses the user's strings; empty strings are zero.
    pub fn parse(config: &ResourcesConfig) -> Result<Self, ResourceParseError> {
        Ok(Self {
            cpu_millis: parse_cpu(&config.cpu)?,
            memory_bytes: parse_bytes("Memory", &config.memory)?,
            disk_bytes: parse_bytes("Disk", &config.disk)?,
            gpu: if config.gpu.trim().is_empty() {
                0
            } else {
                config.gpu.trim().parse().map_err(|_| ResourceParseError {
                    field: "GPU",
                    value: config.gpu.clone(),
                    hint: "use a whole number of GPUs such as 1",
                })?
            },
        })
    }

    /// Whether every amount in `self` is at most the one in `limit`.
    pub fn fits_within(&self, limit: &Resources) -> bool {
        self.cpu_millis <= limit.cpu_millis
            && self.memory_bytes <= limit.memory_bytes
            && self.disk_bytes <= limit.disk_bytes
            && self.gpu <= limit.gpu
    }

    /// Component-wise sum.
    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }

    /// Component-wise difference, floored at zero.
    pub fn sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(other.disk_bytes),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    /// Names the first amount that exceeds `limit`, for a rejection reason.
    pub fn first_excess(&self, limit: &Resources) -> Option<String> {
        if self.cpu_millis > limit.cpu_millis {
            return Some(format!("CPU {} > {}", fmt_cpu(self.cpu_millis), fmt_cpu(limit.cpu_millis)));
        }
        if self.memory_bytes > limit.memory_bytes {
            return Some(format!("memory {} > {}", fmt_bytes(self.memory_bytes), fmt_bytes(limit.memory_bytes)));
        }
        if self.disk_bytes > limit.disk_bytes {
            return Some(format!("disk {} > {}", fmt_bytes(self.disk_bytes), fmt_bytes(limit.disk_bytes)));
        }
        if self.gpu > limit.gpu {
            return Some(format!("GPU {} > {}", self.gpu, limit.gpu));
        }
        None
    }
}

/// Formats thousandths of a core as cores, e.g. `0.5`.
pub fn fmt_cpu(millis: u64) -> String {
    let s = format!("{:.3}", millis as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Formats bytes with a binary unit, e.g. `512 MiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Parses a CPU amount in Kubernetes syntax (`500m`, `0.5`, `2`) into thousandths of a core.
pub fn parse_cpu(s: &str) -> Result<u64, ResourceParseError> {
    let err = || ResourceParseError {
        field: "CPU",
        value: s.to_owned(),
        hint: "use cores such as 0.5 or 2, or millicores such as 500m",
    };
    let t = s.trim();
    if t.is_empty() {
        return Ok(0);
    }
    if let Some(m) = t.strip_suffix('m') {
        return m.trim().parse::<u64>().map_err(|_| err());
    }
    let cores: f64 = t.parse().map_err(|_| err())?;
    if !cores.is_finite() || cores < 0.0 {
        return Err(err());
    }
    crate::num::f64_to_u64((cores * 1000.0).round()).ok_or_else(err)
}

/// Parses a byte amount the way go-humanize does (`512Mb` = 512×10⁶, `1GiB` = 2³⁰, `100` = bytes).
pub fn parse_bytes(field: &'static str, s: &str) -> Result<u64, ResourceParseError> {
    let err = || ResourceParseError {
        field,
        value: s.to_owned(),
        hint: "use a number with a unit such as 512Mb, 2Gb or 1GiB",
    };
    let t = s.trim();
    if t.is_empty() {
        return Ok(0);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| err())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        _ => return Err(err()),
    };
    crate::num::f64_to_u64((num * mult).round()).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_forms() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("-1").is_err());
    }

    #[test]
    fn parses_byte_forms_like_go_humanize() {
        assert_eq!(parse_bytes("Memory", "512Mb"), Ok(512_000_000));
        assert_eq!(parse_bytes("Memory", "1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("Memory", "1.5 gb"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("Memory", "100"), Ok(100));
        let e = parse_bytes("Memory", "12 parsecs").expect_err("bad unit");
        assert!(e.to_string().contains("Memory \"12 parsecs\" is not valid"), "{e}");
    }

    #[test]
    fn reports_the_first_excess() {
        let a = Resources { cpu_millis: 3000, ..Default::default() };
        let b = Resources { cpu_millis: 2000, memory_bytes: 1, ..Default::default() };
        assert_eq!(a.first_excess(&b).as_deref(), Some("CPU 3 > 2"));
        assert!(b.sub(&a).cpu_millis == 0);
    }
}
