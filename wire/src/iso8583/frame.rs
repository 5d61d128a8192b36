//! Framing: every message on a connection is preceded by its length, 2 bytes big-endian.

use thiserror::Error;

use super::{FRAME_PREFIX_SIZE_BYTES, MESSAGE_SIZE_MAX};

/// A frame header that cannot be honoured. Framing is lost after one: close the connection.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame at byte {offset} declares length zero")]
    ZeroLength { offset: usize },
    #[error("frame at byte {offset} declares {size_bytes} bytes, above the maximum of {max_bytes}")]
    TooLarge { offset: usize, size_bytes: u16, max_bytes: u16 },
}

/// The first complete frame in `buffer`: its message (prefix stripped) and the bytes it takes
/// with its prefix. `Ok(None)` when more bytes are needed. Allocates nothing.
pub fn next_frame(buffer: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    frame_at(buffer, 0)
}

fn frame_at(buffer: &[u8], offset: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(&[high, low]) = buffer.get(offset..offset + FRAME_PREFIX_SIZE_BYTES) else {
        return Ok(None);
    };
    let size_bytes = u16::from_be_bytes([high, low]);
    if size_bytes == 0 {
        return Err(FrameError::ZeroLength { offset });
    }
    if size_bytes > MESSAGE_SIZE_MAX {
        return Err(FrameError::TooLarge { offset, size_bytes, max_bytes: MESSAGE_SIZE_MAX });
    }
    let start = offset + FRAME_PREFIX_SIZE_BYTES;
    let end = start + usize::from(size_bytes);
    Ok(buffer.get(start..end).map(|message| (message, FRAME_PREFIX_SIZE_BYTES + usize::from(size_bytes))))
}

/// The complete frames at the front of a read buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitFrames<'a> {
    /// Messages in arrival order, prefixes stripped.
    pub frames: Vec<&'a [u8]>,
    /// Bytes taken by those frames; what is left after them is an incomplete frame.
    pub consumed_bytes: usize,
}

/// Splits every complete frame out of `buffer`. A bad header anywhere fails the whole call,
/// since nothing after it can be trusted; a caller that wants the frames before it can loop
/// on [`next_frame`].
pub fn split_frames(buffer: &[u8]) -> Result<SplitFrames<'_>, FrameError> {
    let mut split = SplitFrames::default();
    while let Some((message, frame_size)) = frame_at(buffer, split.consumed_bytes)? {
        split.frames.push(message);
        split.consumed_bytes += frame_size;
    }
    Ok(split)
}

/// Appends `message` with its length prefix to `out`.
pub fn write_frame(message: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let size_bytes = match u16::try_from(message.len()) {
        Ok(0) => return Err(FrameError::ZeroLength { offset: out.len() }),
        Ok(size) if size <= MESSAGE_SIZE_MAX => size,
        _ => {
            return Err(FrameError::TooLarge {
                offset: out.len(),
                size_bytes: u16::try_from(message.len()).unwrap_or(u16::MAX),
                max_bytes: MESSAGE_SIZE_MAX,
            })
        }
    };
    out.reserve(FRAME_PREFIX_SIZE_BYTES + message.len());
    out.extend_from_slice(&size_bytes.to_be_bytes());
    out.extend_from_slice(message);
    Ok(())
}
