//! Cut-offs and clearing files on the daemon's side: closes windows on schedule, writes
//! each closed window's folder (ledger::clearing does the files), and tracks the states an
//! operator sees: open -> closed -> files_written -> settled.
//!
//! A window closed before a crash but without its folder (killed during the close or
//! while writing) gets its files on the next start: `catch_up`. Writing is atomic (temp
//! folder, fsync, rename), so a folder that exists is whole.
//!
//! Every folder written is verified at once, as `junction clearing verify` would, and the
//! results are counted for the metrics: files that do not verify are never handed to a
//! settlement bank unnoticed.

use crate::metrics::ClearingFigures;
use junction_clearing::{self as clearing, ClearingConfig, ParticipantInfo};
use junction_engine::Engine;
use junction_ledger::{ParticipantId, WindowId, WindowState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Metadata tag of "window N was settled" records.
const META_SETTLED: u8 = b'w';

/// Verdicts on folders kept in memory for the console, the newest windows' (a switch
/// closes a few windows a day; about 100 bytes each).
pub const VERDICTS_KEPT_MAX: usize = 1024;

/// What the last check of a window's clearing folder found, in this process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub checked_unix_ms: u64,
    pub verified: bool,
    /// Files whose digest was checked (the manifest not counted), and their bytes.
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// Why the folder was not written or does not verify.
    pub error: Option<String>,
}

pub struct Windows {
    pub root: PathBuf,
    pub config: ClearingConfig,
    pub engine: Arc<Engine>,
    /// The participants' names and BICs in the files: those in force when they are
    /// written (one onboarded at runtime is in the files from its first window).
    directory: Arc<crate::directory::Directory>,
    /// Serialises file writing (two writers of one window are not supported).
    writing: parking_lot::Mutex<()>,
    /// Folders that verified, and folders that failed to be written or to verify.
    verified: AtomicU64,
    failed: AtomicU64,
    /// The newest window whose folder verified in this process.
    newest_verified: AtomicU64,
    /// When this daemon started, seconds since the epoch: the ledger's first window has no
    /// earlier close to say when it began.
    started_unix_s: f64,
    /// By window: the last check of its folder since start (at most `VERDICTS_KEPT_MAX`).
    verdicts: parking_lot::Mutex<std::collections::BTreeMap<u64, Verdict>>,
}

/// Why a closed window has no good folder.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("writing the clearing files: {0}")]
    Write(#[from] clearing::ClearingError),
    #[error("the clearing files just written do not verify: {0}")]
    Verify(Box<clearing::VerifyError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Open,
    Closed,
    FilesWritten,
    Settled,
}

/// What the clearing files name, from a configuration alone (participants onboarded at
/// runtime get placeholders): for `junction clearing merge`, away from the daemon.
pub fn clearing_config(config: &super::config::Config) -> ClearingConfig {
    ClearingConfig {
        switch_name: config.switch.name.clone(),
        switch_bic: config.switch.bic.clone(),
        settlement_bank_bic: config.switch.settlement_bank_bic.clone(),
        participants: config
            .participants
            .iter()
            .map(|p| {
                let info = ParticipantInfo {
                    name: p.name.clone(),
                    bic: Some(p.bic.clone()),
                    settlement_account_iban_or_id: format!("JUNCTION-{}", p.institution_id),
                };
                (ParticipantId(p.id), info)
            })
            .collect(),
        fee_participant: None,
    }
}

impl Windows {
    pub fn new(
        root: PathBuf,
        config: &super::config::Config,
        engine: Arc<Engine>,
        directory: Arc<crate::directory::Directory>,
    ) -> Windows {
        let participants = BTreeMap::new();
        let config = ClearingConfig {
            switch_name: config.switch.name.clone(),
            switch_bic: config.switch.bic.clone(),
            settlement_bank_bic: config.switch.settlement_bank_bic.clone(),
            participants,
            fee_participant: None,
        };
        let started_unix_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Windows {
            root,
            config,
            engine,
            directory,
            writing: parking_lot::Mutex::new(()),
            verified: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            newest_verified: AtomicU64::new(0),
            started_unix_s,
            verdicts: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub fn folder(&self, window: WindowId) -> PathBuf {
        self.root.join(clearing::window_folder_name(window.0))
    }

    /// Writes a closed window's files and verifies them (or finds them already written,
    /// which verifies them too), and counts the result.
    pub fn write(&self, window: WindowId) -> Result<clearing::Manifest, FilesError> {
        let _writing = self.writing.lock();
        let started = std::time::Instant::now();
        let result = self.write_and_verify(window);
        match &result {
            Ok(_) => {
                self.verified.fetch_add(1, Ordering::Relaxed);
                self.newest_verified.fetch_max(window.0, Ordering::Relaxed);
                tracing::info!(
                    window = window.0,
                    folder = %self.folder(window).display(),
                    ms = started.elapsed().as_millis() as u64,
                    "clearing files written and verified"
                );
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let verdict = match &result {
            Ok(manifest) => Verdict {
                checked_unix_ms: crate::activity::now_unix_ms(),
                verified: true,
                files_checked: manifest.files.len() as u64,
                bytes_checked: manifest.files.iter().map(|file| file.bytes).sum(),
                error: None,
            },
            Err(error) => failed_verdict(error.to_string()),
        };
        self.record(window, verdict);
        result
    }

    fn record(&self, window: WindowId, verdict: Verdict) {
        let mut verdicts = self.verdicts.lock();
        verdicts.insert(window.0, verdict);
        while verdicts.len() > VERDICTS_KEPT_MAX {
            verdicts.pop_first();
        }
    }

    /// The last check of a window's folder since start, if any.
    pub fn verdict(&self, window: WindowId) -> Option<Verdict> {
        self.verdicts.lock().get(&window.0).cloned()
    }

    /// Checks a written folder again, as `junction clearing verify` does (the files may
    /// have been touched since they were written), and remembers the verdict.
    pub fn verify(&self, window: WindowId) -> Verdict {
        let folder = self.folder(window);
        let verdict = if !folder.join(clearing::MANIFEST_FILE).exists() {
            failed_verdict(format!("window {} has no clearing folder with a manifest", window.0))
        } else {
            match crate::background::run("clearing-verify", || clearing::verify_folder(&folder)) {
                Ok(report) => Verdict {
                    checked_unix_ms: crate::activity::now_unix_ms(),
                    verified: true,
                    files_checked: report.files_checked,
                    bytes_checked: report.bytes_checked,
                    error: None,
                },
                Err(error) => failed_verdict(error.to_string()),
            }
        };
        if !verdict.verified {
            tracing::error!(
                window = window.0,
                error = verdict.error.as_deref().unwrap_or(""),
                "clearing folder does not verify"
            );
        }
        self.record(window, verdict.clone());
        verdict
    }

    /// Every participant the directory knows, as the files name it.
    fn participants(&self) -> BTreeMap<ParticipantId, ParticipantInfo> {
        self.directory
            .members()
            .iter()
            .map(|member| {
                (
                    member.id,
                    ParticipantInfo {
                        name: member.name.clone(),
                        bic: Some(member.bic.clone()),
                        settlement_account_iban_or_id: format!("JUNCTION-{}", member.institution_id),
                    },
                )
            })
            .collect()
    }

    /// What the files name: the configuration's, with the participants and the switch's
    /// fee participant as they are now.
    pub fn clearing_config(&self) -> ClearingConfig {
        ClearingConfig {
            fee_participant: self.engine.fee_schedule().switch_participant,
            participants: self.participants(),
            ..self.config.clone()
        }
    }

    fn write_and_verify(&self, window: WindowId) -> Result<clearing::Manifest, FilesError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| clearing::ClearingError::Io { path: self.root.clone(), source: e })?;
        let folder = self.folder(window);
        // A folder already there is verified by the writer itself before it is accepted.
        let fresh = !folder.exists();
        // At background priority: seconds of CPU for a large window, which requests need more.
        crate::background::run("clearing-files", || -> Result<clearing::Manifest, FilesError> {
            let config = self.clearing_config();
            let manifest = clearing::write_window_files(self.engine.ledger(), window, &self.root, &config)?;
            if fresh {
                clearing::verify_folder(&folder).map_err(|error| FilesError::Verify(Box::new(error)))?;
            }
            Ok(manifest)
        })
    }

    /// Closes the open window and writes its files. Traffic keeps flowing.
    pub fn close_and_write(&self) -> Result<junction_ledger::WindowPositions, String> {
        let closed = self.engine.close_window().map_err(|e| e.to_string())?;
        tracing::info!(window = closed.window.0, transfers = closed.transfer_count, "settlement window closed");
        self.write(closed.window).map_err(|e| e.to_string())?;
        Ok(closed)
    }

    /// Writes the files of every closed window that has none (after a crash), and checks
    /// the newest closed window's folder again, so that the metrics know it is good.
    pub fn catch_up(&self) {
        let closed: Vec<WindowId> = self
            .engine
            .ledger()
            .windows()
            .iter()
            .filter(|window| matches!(window.state, WindowState::Closed { .. }))
            .map(|window| window.window)
            .collect();
        for (index, &window) in closed.iter().enumerate() {
            let missing = !self.folder(window).exists();
            if missing {
                tracing::info!(window = window.0, "closed window has no clearing files yet; writing them");
            }
            if missing || index + 1 == closed.len() {
                if let Err(error) = self.write(window) {
                    tracing::error!(window = window.0, %error, "writing clearing files failed");
                }
            }
        }
    }

    /// When the open window began, seconds since the epoch: the previous window's close,
    /// or for the ledger's first window, this daemon's start.
    pub fn open_window_began_unix_s(&self) -> f64 {
        let ledger = self.engine.ledger();
        let previous = ledger.current_window().0.saturating_sub(1);
        match ledger.window_positions(WindowId(previous)).map(|window| window.state) {
            Some(WindowState::Closed { closed_at }) => closed_at as f64 / 1e9,
            _ => self.started_unix_s,
        }
    }

    /// What happened to closed windows' files since start, for the metrics.
    pub fn figures(&self) -> ClearingFigures {
        let newest_closed = self.engine.ledger().current_window().0.saturating_sub(1);
        ClearingFigures {
            verified: self.verified.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            windows_unverified: newest_closed.saturating_sub(self.newest_verified.load(Ordering::Relaxed)),
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

fn failed_verdict(error: String) -> Verdict {
    Verdict {
        checked_unix_ms: crate::activity::now_unix_ms(),
        verified: false,
        files_checked: 0,
        bytes_checked: 0,
        error: Some(error),
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
