//! Run outputs: an append-only JSONL metrics log and the progress bar.

use crate::error::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends one JSON object per line to `metrics.jsonl` (flushed per record, so a killed run
/// keeps everything it logged).
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens (creating) `dir/metrics.jsonl`.
    pub fn open(dir: &Path) -> Result<MetricsLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Output(format!("creating {}: {e}", dir.display())))?;
        Ok(MetricsLog { path: dir.join("metrics.jsonl") })
    }

    /// Opens the log of a run resumed at `step`: records of later steps (logged after the
    /// checkpoint the run resumes from, and about to be redone) are dropped, atomically,
    /// so the log holds each step once.
    pub fn open_resumed(dir: &Path, step: u64) -> Result<MetricsLog> {
        let log = MetricsLog::open(dir)?;
        let Ok(text) = std::fs::read_to_string(&log.path) else { return Ok(log) };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_none_or(|s| s <= step)
            })
            .collect();
        if kept.len() != text.lines().count() {
            let tmp = log.path.with_extension("jsonl.tmp");
            let body: String = kept.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&tmp, body)
                .and_then(|_| std::fs::rename(&tmp, &log.path))
                .map_err(|e| Error::Output(format!("rewriting {}: {e}", log.path.display())))?;
        }
        Ok(log)
    }

    /// Writes one record.
    pub fn log(&self, record: &serde_json::Value) -> Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::Output(format!("opening {}: {e}", self.path.display())))?;
        writeln!(f, "{record}").map_err(|e| Error::Output(format!("writing {}: {e}", self.path.display())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A progress bar showing step, it/s, ETA and a message (the loss); hidden when stderr is
/// not a terminal so logs stay clean.
pub fn progress_bar(total: u64, start: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_position(start);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_appended_as_json_lines() {
        let dir = std::env::temp_dir().join(format!("scorch-metrics-{}", std::process::id()));
        let m = MetricsLog::open(&dir).unwrap();
        m.log(&serde_json::json!({"step": 1, "loss": 0.5})).unwrap();
        m.log(&serde_json::json!({"step": 2, "loss": 0.25})).unwrap();
        let text = std::fs::read_to_string(m.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["loss"], 0.25);
        std::fs::remove_dir_all(&dir).ok();
    }
}
