//! Why a payload was rejected: [`QrError`], and where: [`FieldPath`].

use std::fmt;

use thiserror::Error;

/// Deepest nesting of data objects: top level, a template (e.g. 62), and a template inside the
/// additional data template (62/50-99). Sizes the inline array in [`FieldPath`].
pub const TEMPLATE_DEPTH_MAX: usize = 3;

/// Where a data object sits: its ID, preceded by the IDs of the templates that enclose it.
/// Displayed as "54" at the top level, "62/05" inside template 62, and "payload" for the top
/// level itself (used when a header cannot be read at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPath {
    ids: [u8; TEMPLATE_DEPTH_MAX],
    depth: u8,
}

impl FieldPath {
    /// The top level of the payload, enclosing everything.
    pub const ROOT: FieldPath = FieldPath { ids: [0; TEMPLATE_DEPTH_MAX], depth: 0 };

    /// A top-level data object.
    pub const fn top(id: u8) -> FieldPath {
        FieldPath { ids: [id, 0, 0], depth: 1 }
    }

    /// The data object `id` inside this one. Deeper than [`TEMPLATE_DEPTH_MAX`] the last ID is
    /// replaced, which the parser never needs: it nests at most that deep.
    pub fn child(self, id: u8) -> FieldPath {
        let mut path = self;
        let depth = usize::from(self.depth);
        if depth < TEMPLATE_DEPTH_MAX {
            path.ids[depth] = id;
            path.depth += 1;
        } else {
            path.ids[TEMPLATE_DEPTH_MAX - 1] = id;
        }
        path
    }

    /// IDs from the outermost template to the data object itself.
    pub fn ids(&self) -> &[u8] {
        &self.ids[..usize::from(self.depth)]
    }

    /// The data object's own ID; `None` for [`FieldPath::ROOT`].
    pub fn id(&self) -> Option<u8> {
        self.ids().last().copied()
    }

    /// The ID of the enclosing template; `None` at the top level.
    pub fn parent(&self) -> Option<u8> {
        let ids = self.ids();
        ids.len().checked_sub(2).and_then(|index| ids.get(index).copied())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth == 0 {
            return formatter.write_str("payload");
        }
        for (index, id) in self.ids().iter().enumerate() {
            if index > 0 {
                formatter.write_str("/")?;
            }
            write!(formatter, "{id:02}")?;
        }
        Ok(())
    }
}

/// A rejected payload (or, from the encoder, a data object that cannot be encoded).
///
/// Callers branch on [`QrError::code`], a stable machine-readable string; the `Display` text is
/// for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QrError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is longer than {max} characters")]
    TooLong { max: usize },
    #[error("{within}: {found:?} is too short for a data object header (2-digit ID, 2-digit length)")]
    TruncatedHeader { within: FieldPath, found: String },
    #[error("{within}: ID {found:?} is not two digits")]
    BadId { within: FieldPath, found: String },
    #[error("ID {at}: length {found:?} {reason}")]
    BadLength { at: FieldPath, found: String, reason: &'static str },
    #[error("ID {at}: value declared as {declared} characters but only {available} remain")]
    Truncated { at: FieldPath, declared: usize, available: usize },
    #[error("ID {at} is out of order: {reason}")]
    OutOfOrder { at: FieldPath, reason: &'static str },
    #[error("ID {at} appears more than once")]
    DuplicateId { at: FieldPath },
    #[error("CRC mismatch: payload carries {found:04X}, computed {expected:04X}")]
    CrcMismatch { expected: u16, found: u16 },
    #[error("ID {at} is missing: {reason}")]
    MissingId { at: FieldPath, reason: &'static str },
    #[error("ID {at} must not be present: {reason}")]
    UnexpectedId { at: FieldPath, reason: &'static str },
    #[error("ID {at}: value {value:?} {reason}")]
    BadValue { at: FieldPath, value: String, reason: &'static str },
}

impl QrError {
    /// Stable machine-readable reason, e.g. for an HTTP error body or a decline metric label.
    pub fn code(&self) -> &'static str {
        match self {
            QrError::Empty => "empty",
            QrError::TooLong { .. } => "too_long",
            QrError::TruncatedHeader { .. } | QrError::Truncated { .. } => "truncated",
            QrError::BadId { .. } => "bad_id",
            QrError::BadLength { .. } => "bad_length",
            QrError::OutOfOrder { .. } => "out_of_order",
            QrError::DuplicateId { .. } => "duplicate_id",
            QrError::CrcMismatch { .. } => "crc_mismatch",
            QrError::MissingId { .. } => "missing_id",
            QrError::UnexpectedId { .. } => "unexpected_id",
            QrError::BadValue { .. } => "bad_value",
        }
    }

    /// The data object (or, for header errors, the enclosing template) the error is about;
    /// `None` for errors about the payload as a whole.
    pub fn path(&self) -> Option<FieldPath> {
        match self {
            QrError::Empty | QrError::TooLong { .. } => None,
            // The CRC is data object 63.
            QrError::CrcMismatch { .. } => Some(FieldPath::top(63)),
            QrError::TruncatedHeader { within, .. } | QrError::BadId { within, .. } => Some(*within),
            QrError::BadLength { at, .. }
            | QrError::Truncated { at, .. }
            | QrError::OutOfOrder { at, .. }
            | QrError::DuplicateId { at }
            | QrError::MissingId { at, .. }
            | QrError::UnexpectedId { at, .. }
            | QrError::BadValue { at, .. } => Some(*at),
        }
    }
}
