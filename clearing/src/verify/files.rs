//! The manifest and the set of files it lists, with their sizes and SHA-256 digests.

use super::{malformed, read_limited, VerifyError, MANIFEST_BYTES_MAX};
use crate::manifest::{
    Manifest, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, MANIFEST_FORMAT_VERSIONS_READ, POSITIONS_FILE,
    TRANSACTIONS_FILE, TRANSFERS_FILE,
};
use crate::sink::hash_file;
use std::collections::BTreeSet;
use std::path::Path;

pub(crate) fn read_manifest(path: &Path) -> Result<Manifest, VerifyError> {
    let text = read_limited(path, MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|error| VerifyError::Manifest(format!("not a valid manifest: {error}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(VerifyError::Manifest(format!("format is {:?}, expected {MANIFEST_FORMAT:?}", manifest.format)));
    }
    if !MANIFEST_FORMAT_VERSIONS_READ.contains(&manifest.format_version) {
        return Err(VerifyError::Manifest(format!(
            "format version is {}, this build reads versions {} to {MANIFEST_FORMAT_VERSION}",
            manifest.format_version,
            MANIFEST_FORMAT_VERSIONS_READ.start()
        )));
    }
    Ok(manifest)
}

/// The folder holds exactly the manifest's files, each with its recorded size and digest.
pub(super) fn check_files(path: &Path, manifest: &Manifest) -> Result<u64, VerifyError> {
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        let plain = !entry.name.is_empty()
            && !entry.name.starts_with('.')
            && !entry.name.contains(['/', '\\'])
            && entry.name != MANIFEST_FILE;
        if !plain {
            return Err(VerifyError::Manifest(format!("lists a file named {:?}, which is not allowed", entry.name)));
        }
        if !listed.insert(entry.name.as_str()) {
            return Err(VerifyError::Manifest(format!("lists {} twice", entry.name)));
        }
    }
    for required in [POSITIONS_FILE, TRANSFERS_FILE, TRANSACTIONS_FILE] {
        if !listed.contains(required) {
            return Err(VerifyError::Manifest(format!("does not list {required}")));
        }
    }
    let io = |source| VerifyError::Io { file: path.display().to_string(), source };
    let mut present = BTreeSet::new();
    for item in std::fs::read_dir(path).map_err(io)? {
        let item = item.map_err(io)?;
        present.insert(item.file_name().to_string_lossy().into_owned());
    }
    for entry in &manifest.files {
        if !present.contains(&entry.name) {
            return Err(VerifyError::MissingFile { file: entry.name.clone() });
        }
    }
    if let Some(extra) = present.iter().find(|name| *name != MANIFEST_FILE && !listed.contains(name.as_str())) {
        return Err(VerifyError::ExtraFile { file: extra.clone() });
    }
    let mut bytes_checked = 0u64;
    for entry in &manifest.files {
        let file_path = path.join(&entry.name);
        if !file_path.is_file() {
            return Err(malformed(&entry.name, "whole file", "not a regular file"));
        }
        let (bytes, sha256) =
            hash_file(&file_path).map_err(|source| VerifyError::Io { file: entry.name.clone(), source })?;
        if bytes != entry.bytes {
            return Err(VerifyError::SizeMismatch { file: entry.name.clone(), expected: entry.bytes, found: bytes });
        }
        if sha256 != entry.sha256 {
            return Err(VerifyError::HashMismatch {
                file: entry.name.clone(),
                expected: entry.sha256.clone(),
                found: sha256,
            });
        }
        bytes_checked += bytes;
    }
    Ok(bytes_checked)
}
