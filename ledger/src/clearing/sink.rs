//! Files written once, hashed as they are written, and synced before anyone relies on them.

use super::manifest::FileEntry;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Write buffer of `transfers.csv`. A window of 10M transfers is about 2.5 GB of CSV;
/// 4 MiB writes keep the syscall count near 600 and let SHA-256 work on big blocks.
pub(crate) const TRANSFERS_WRITE_BUFFER_BYTES: usize = 4 << 20;

/// Write buffer of the small files (positions, statements, instructions, manifest).
pub(crate) const SMALL_FILE_BUFFER_BYTES: usize = 64 << 10;

/// Read buffer used when hashing or parsing files during verification.
pub(crate) const READ_BUFFER_BYTES: usize = 1 << 20;

/// A file that feeds every byte written through SHA-256 and counts it, so the manifest's
/// digest describes exactly what reached the file without reading it back.
struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A new file in the clearing folder being built.
pub(crate) struct Sink {
    name: String,
    path: PathBuf,
    writer: BufWriter<HashingFile>,
}

impl Sink {
    /// Creates `dir/name`, which must not exist yet.
    pub(crate) fn create(dir: &Path, name: &str, buffer_bytes: usize) -> io::Result<Sink> {
        let path = dir.join(name);
        let file = File::options().write(true).create_new(true).open(&path)?;
        let writer = BufWriter::with_capacity(buffer_bytes, HashingFile { file, hasher: Sha256::new(), bytes: 0 });
        Ok(Sink { name: name.to_string(), path, writer })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Flushes, fsyncs the file's data, and returns its manifest entry.
    pub(crate) fn finish(self) -> io::Result<FileEntry> {
        let hashing = self.writer.into_inner().map_err(|error| error.into_error())?;
        hashing.file.sync_all()?;
        Ok(FileEntry { name: self.name, bytes: hashing.bytes, sha256: hex::encode(hashing.hasher.finalize()) })
    }
}

/// Writes a whole small file at once.
pub(crate) fn write_small_file(dir: &Path, name: &str, contents: &[u8]) -> io::Result<FileEntry> {
    let mut sink = Sink::create(dir, name, SMALL_FILE_BUFFER_BYTES)?;
    sink.write_all(contents)?;
    sink.finish()
}

/// Fsyncs a directory so that the names created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// SHA-256 and size of a file, read in large blocks.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut bytes = 0u64;
    loop {
        let read = match io::Read::read(&mut file, &mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}
