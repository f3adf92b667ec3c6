//! What this machine can give to jobs.

use std::path::Path;

use bacalhau_model::Resources;

/// The share of the machine offered to jobs by default (Bacalhau's 80%).
pub const DEFAULT_ALLOCATION_PERCENT: u64 = 80;

/// `percent` of `whole`, without overflowing for any `whole`.
pub fn share(whole: u64, percent: u64) -> u64 {
    whole / 100 * percent + (whole % 100) * percent / 100
}

/// The machine's CPU, memory and disk (under `data_dir`), scaled to `percent`.
pub fn detect(data_dir: &Path, percent: u64) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let disk = nix::sys::statvfs::statvfs(data_dir).map(|s| s.blocks_available() * s.fragment_size()).unwrap_or(0);
    let scale = |v: u64| share(v, percent);
    // GPUs are whole devices: all of them are offered, as Bacalhau's default GPU share is 100%.
    Resources {
        cpu_millis: scale(cpus * 1000),
        memory_bytes: scale(memory),
        disk_bytes: scale(disk),
        gpu: nvidia_gpus(),
    }
}

/// NVIDIA GPUs as listed by `nvidia-smi -L`; none when the tool is absent or fails.
fn nvidia_gpus() -> u64 {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_something_plausible() {
        let r = detect(Path::new("/"), 80);
        assert!(r.cpu_millis >= 800, "{r:?}");
        assert!(r.memory_bytes > 0, "{r:?}");
    }
}
