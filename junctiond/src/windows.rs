//! Cut-offs and clearing files on the daemon's side: closes windows on schedule, writes
//! each closed window's folder (ledger::clearing does the files), and tracks the states an
//! operator sees: open -> closed -> files_written -> settled.
//!
//! A window closed before a crash but without its folder (killed during the close or
//! while writing) gets its files on the next start: `catch_up`. Writing is atomic (temp
//! folder, fsync, rename), so a folder that exists is whole.

use junction_clearing::{self as clearing, ClearingConfig, ParticipantInfo};
use junction_engine::Engine;
use junction_ledger::{ParticipantId, WindowId, WindowState};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Metadata tag of "window N was settled" records.
const META_SETTLED: u8 = b'w';

pub struct Windows {
    pub root: PathBuf,
    pub config: ClearingConfig,
    pub engine: Arc<Engine>,
    /// Serialises file writing (two writers of one window are not supported).
    writing: parking_lot::Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Open,
    Closed,
    FilesWritten,
    Settled,
}

impl Windows {
    pub fn new(root: PathBuf, config: &super::config::Config, engine: Arc<Engine>) -> Windows {
        let participants = config
            .participants
            .iter()
            .map(|p| {
                (
                    ParticipantId(p.id),
                    ParticipantInfo {
                        name: p.name.clone(),
                        bic: Some(p.bic.clone()),
                        settlement_account_iban_or_id: format!("JUNCTION-{}", p.institution_id),
                    },
                )
            })
            .collect();
        let config = ClearingConfig {
            switch_name: config.switch.name.clone(),
            switch_bic: config.switch.bic.clone(),
            settlement_bank_bic: config.switch.settlement_bank_bic.clone(),
            participants,
        };
        Windows { root, config, engine, writing: parking_lot::Mutex::new(()) }
    }

    pub fn folder(&self, window: WindowId) -> PathBuf {
        self.root.join(clearing::window_folder_name(window.0))
    }

    /// Writes a closed window's files (or finds them already written).
    pub fn write(&self, window: WindowId) -> Result<clearing::Manifest, clearing::ClearingError> {
        let _writing = self.writing.lock();
        std::fs::create_dir_all(&self.root)
            .map_err(|e| clearing::ClearingError::Io { path: self.root.clone(), source: e })?;
        let started = std::time::Instant::now();
        // At background priority: seconds of CPU for a large window, which requests need more.
        let manifest = crate::background::run("clearing-files", || {
            clearing::write_window_files(self.engine.ledger(), window, &self.root, &self.config)
        })?;
        tracing::info!(
            window = window.0,
            folder = %self.folder(window).display(),
            ms = started.elapsed().as_millis() as u64,
            "clearing files written"
        );
        Ok(manifest)
    }

    /// Closes the open window and writes its files. Traffic keeps flowing.
    pub fn close_and_write(&self) -> Result<junction_ledger::WindowPositions, String> {
        let closed = self.engine.close_window().map_err(|e| e.to_string())?;
        tracing::info!(window = closed.window.0, transfers = closed.transfer_count, "settlement window closed");
        self.write(closed.window).map_err(|e| e.to_string())?;
        Ok(closed)
    }

    /// Writes the files of every closed window that has none (after a crash).
    pub fn catch_up(&self) {
        for window in self.engine.ledger().windows() {
            if matches!(window.state, WindowState::Closed { .. }) && !self.folder(window.window).exists() {
                tracing::info!(window = window.window.0, "closed window has no clearing files yet; writing them");
                if let Err(error) = self.write(window.window) {
                    tracing::error!(window = window.window.0, %error, "writing clearing files failed");
                }
            }
        }
    }

    pub fn status(&self, window: WindowId, state: WindowState) -> WindowStatus {
        if state == WindowState::Open {
            return WindowStatus::Open;
        }
        if self.is_settled(window) {
            return WindowStatus::Settled;
        }
        if self.folder(window).join("manifest.json").exists() {
            WindowStatus::FilesWritten
        } else {
            WindowStatus::Closed
        }
    }

    fn is_settled(&self, window: WindowId) -> bool {
        let mut settled = false;
        let _ = self.engine.ledger().scan_metadata(&settled_key(window), |_, _| settled = true);
        settled
    }

    /// Marks a window settled (the settlement bank confirmed). Only once its files exist.
    pub fn settle(&self, window: WindowId) -> Result<(), String> {
        let Some(positions) = self.engine.ledger().window_positions(window) else {
            return Err(format!("window {} does not exist", window.0));
        };
        match self.status(window, positions.state) {
            WindowStatus::FilesWritten => {}
            WindowStatus::Settled => return Ok(()),
            other => return Err(format!("window {} is {other:?}; only a window with files can be settled", window.0)),
        }
        self.engine.ledger().put_metadata(&[(settled_key(window), b"settled".to_vec())]).map_err(|e| e.to_string())?;
        tracing::info!(window = window.0, "window marked settled");
        Ok(())
    }
}

fn settled_key(window: WindowId) -> Vec<u8> {
    let mut key = vec![META_SETTLED];
    key.extend_from_slice(&window.0.to_be_bytes());
    key
}

/// Seconds until the next configured cut-off, from `now_unix_s`.
pub fn seconds_to_next_cutoff(now_unix_s: u64, offset_minutes: i32, times: &[(u32, u32)]) -> Option<u64> {
    if times.is_empty() {
        return None;
    }
    let local = now_unix_s as i64 + i64::from(offset_minutes) * 60;
    let second_of_day = local.rem_euclid(86_400);
    times
        .iter()
        .map(|(h, m)| {
            let at = i64::from(h * 3600 + m * 60);
            let wait = at - second_of_day;
            if wait <= 0 {
                wait + 86_400
            } else {
                wait
            }
        })
        .min()
        .map(|wait| wait as u64)
}

/// Runs the configured daily cut-offs until shutdown.
pub async fn cutoff_loop(
    clearing: Arc<Windows>,
    offset_minutes: i32,
    times: Vec<(u32, u32)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Some(wait) = seconds_to_next_cutoff(junction_engine::clock::now_unix_s(), offset_minutes, &times) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {
                let clearing = Arc::clone(&clearing);
                match tokio::task::spawn_blocking(move || clearing.close_and_write()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!(%error, "scheduled cut-off failed"),
                    Err(error) => tracing::error!(%error, "scheduled cut-off task failed"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The window folders under a clearing root, oldest first.
pub fn list_folders(root: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("window-")))
        .collect();
    folders.sort();
    folders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cutoff() {
        // 2026-11-25 22:00:00 UTC = 1795644000.
        let now = 1_795_644_000;
        assert_eq!(seconds_to_next_cutoff(now, 0, &[(23, 0)]), Some(3600));
        assert_eq!(seconds_to_next_cutoff(now, 0, &[(22, 0)]), Some(86_400));
        // UTC+8: local 06:00, the 18:00 cut-off is 12 hours away.
        assert_eq!(seconds_to_next_cutoff(now, 480, &[(18, 0), (6, 30)]), Some(1800));
        assert_eq!(seconds_to_next_cutoff(now, 0, &[]), None);
    }
}
