//! Files written once, hashed as they are written, and synced before anyone relies on them.

// One system call (`sync_file_range`) on a file this module owns; see `write_behind`.
#![allow(unsafe_code)]

use super::manifest::FileEntry;
use super::ClearingError;
use crossbeam::channel::{bounded, Receiver, Sender};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::thread::JoinHandle;

/// Size of one `transfers.csv` buffer. A window of 10M transfers is about 2 GB of CSV;
/// 4 MiB writes keep the syscall count near 500 and let SHA-256 work on big blocks.
pub(crate) const TRANSFERS_WRITE_BUFFER_BYTES: usize = 4 << 20;

/// Buffers of `transfers.csv` in flight between the thread formatting rows and the thread
/// hashing and writing them (so the two overlap on two cores). Costs this many times
/// `TRANSFERS_WRITE_BUFFER_BYTES` of memory, whatever the window's size.
pub(crate) const TRANSFERS_WRITE_BUFFERS: usize = 3;

/// Read buffer used when hashing or parsing files during verification.
pub(crate) const READ_BUFFER_BYTES: usize = 1 << 20;

/// A big file written through a second thread: the caller fills a buffer, the thread
/// hashes and writes full buffers while the caller fills the next. Buffers are recycled,
/// so a file of any size costs `TRANSFERS_WRITE_BUFFERS` buffers of memory.
pub(crate) struct PipelinedSink {
    name: String,
    buffer: Vec<u8>,
    full: Option<Sender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<(u64, String)>>>,
}

impl PipelinedSink {
    /// Creates `dir/name`, which must not exist yet, starts its writer thread, and
    /// begins the file with `header`.
    pub(crate) fn create(dir: &Path, name: &str, header: &str) -> io::Result<PipelinedSink> {
        let mut file = OutFile::create(dir, name)?;
        let (full_sender, full_receiver) = bounded::<Vec<u8>>(TRANSFERS_WRITE_BUFFERS);
        let (empty_sender, empty_receiver) = bounded::<Vec<u8>>(TRANSFERS_WRITE_BUFFERS);
        for _ in 1..TRANSFERS_WRITE_BUFFERS {
            // Cannot fail: the channel has room for all of them and its receiver is here.
            let _ = empty_sender.send(Vec::with_capacity(TRANSFERS_WRITE_BUFFER_BYTES));
        }
        let writer = std::thread::Builder::new().name("clearing-writer".into()).spawn(move || {
            let mut staging = Staging::new(TRANSFERS_WRITE_BUFFER_BYTES);
            for mut buffer in full_receiver {
                file.write(&buffer, &mut staging)?;
                buffer.clear();
                // The formatting side may have stopped; then nobody needs the buffer back.
                let _ = empty_sender.send(buffer);
            }
            file.finish(&mut staging)
        })?;
        let mut buffer = Vec::with_capacity(TRANSFERS_WRITE_BUFFER_BYTES);
        buffer.extend_from_slice(header.as_bytes());
        Ok(PipelinedSink {
            name: name.to_string(),
            buffer,
            full: Some(full_sender),
            empty: empty_receiver,
            writer: Some(writer),
        })
    }

    /// The current buffer, with at least `room` bytes free (so appending up to `room`
    /// bytes never reallocates it).
    pub(crate) fn buffer_with_room(&mut self, room: usize) -> io::Result<&mut Vec<u8>> {
        debug_assert!(room <= TRANSFERS_WRITE_BUFFER_BYTES);
        if self.buffer.capacity() - self.buffer.len() < room {
            let next = match self.empty.recv() {
                Ok(next) => next,
                Err(_) => return Err(self.writer_error()),
            };
            let full = std::mem::replace(&mut self.buffer, next);
            self.send(full)?;
        }
        Ok(&mut self.buffer)
    }

    fn send(&mut self, buffer: Vec<u8>) -> io::Result<()> {
        let sent = self.full.as_ref().map(|full| full.send(buffer));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.writer_error()),
        }
    }

    /// The writer thread stopped early: its own error says why.
    fn writer_error(&mut self) -> io::Error {
        self.full = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(error))) => error,
            _ => io::Error::other("the clearing writer thread stopped"),
        }
    }

    /// Writes what is buffered, waits for the writer to fsync, returns the manifest entry.
    pub(crate) fn finish(mut self) -> io::Result<FileEntry> {
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.send(last)?;
        }
        self.full = None; // ends the writer's loop
        let outcome = self.writer.take().map(JoinHandle::join);
        match outcome {
            Some(Ok(Ok((bytes, sha256)))) => Ok(FileEntry { name: self.name.clone(), bytes, sha256 }),
            Some(Ok(Err(error))) => Err(error),
            _ => Err(io::Error::other("the clearing writer thread panicked")),
        }
    }
}

/// Many files written by a few threads: each participant's transactions file. The caller
/// appends to a file's buffer; full buffers go to the file's writer thread, which hashes
/// and writes them (`OutFile`), so neither the hashing nor the writing falls on the thread
/// formatting rows. Each file is written by one thread, in order; several threads keep
/// several direct writes in flight (one thread's synchronous writes of 256 KiB left the
/// disk idle between them, and the rows waited). Memory: one buffer per file and
/// `SHARED_SPARE_BUFFERS` in flight, whatever the files' sizes.
pub(crate) struct SharedSink {
    names: Vec<String>,
    buffers: Vec<Vec<u8>>,
    /// One job channel per writer thread; file `i` is written by thread `i % writers`.
    jobs: Vec<Sender<Job>>,
    empty: Receiver<Vec<u8>>,
    writers: Vec<JoinHandle<io::Result<Vec<Written>>>>,
    failed: bool,
}

/// A file's size and SHA-256 (hex), once written.
type Written = (u64, String);

enum Job {
    Open(OutFile),
    /// A full buffer of the thread's `n`-th file (in the order the thread opened them).
    Write(usize, Vec<u8>),
}

/// Size of each buffer of a `SharedSink`.
pub(crate) const SHARED_BUFFER_BYTES: usize = 256 << 10;

/// Full buffers of a `SharedSink` that may wait for its writers at once.
const SHARED_SPARE_BUFFERS: usize = 16;

/// Writer threads of a `SharedSink`.
const SHARED_WRITERS: usize = 3;

impl SharedSink {
    pub(crate) fn new() -> io::Result<SharedSink> {
        let (empty_sender, empty_receiver) = bounded::<Vec<u8>>(SHARED_SPARE_BUFFERS);
        for _ in 0..SHARED_SPARE_BUFFERS {
            // Cannot fail: the channel has room for all of them and its receiver is here.
            let _ = empty_sender.send(Vec::with_capacity(SHARED_BUFFER_BYTES));
        }
        let mut jobs = Vec::with_capacity(SHARED_WRITERS);
        let mut writers = Vec::with_capacity(SHARED_WRITERS);
        for _ in 0..SHARED_WRITERS {
            let (job_sender, job_receiver) = bounded::<Job>(SHARED_SPARE_BUFFERS);
            let empty_sender = empty_sender.clone();
            let writer = std::thread::Builder::new().name("clearing-files".into()).spawn(move || {
                let mut files: Vec<OutFile> = Vec::new();
                let mut staging = Staging::new(SHARED_BUFFER_BYTES);
                for job in job_receiver {
                    match job {
                        Job::Open(file) => files.push(file),
                        Job::Write(local, mut buffer) => {
                            files[local].write(&buffer, &mut staging)?;
                            buffer.clear();
                            // Never waits: the last buffers of `finish` find the pool full
                            // (nobody takes from it any more) and are dropped.
                            let _ = empty_sender.try_send(buffer);
                        }
                    }
                }
                files.into_iter().map(|file| file.finish(&mut staging)).collect::<io::Result<Vec<_>>>()
            })?;
            jobs.push(job_sender);
            writers.push(writer);
        }
        Ok(SharedSink { names: Vec::new(), buffers: Vec::new(), jobs, empty: empty_receiver, writers, failed: false })
    }

    /// Creates `dir/name`, which must not exist yet; its index for `buffer_with_room`.
    pub(crate) fn create(&mut self, dir: &Path, name: &str) -> io::Result<usize> {
        let file = OutFile::create(dir, name)?;
        let index = self.names.len();
        self.send(index, Job::Open(file))?;
        self.names.push(name.to_string());
        self.buffers.push(Vec::with_capacity(SHARED_BUFFER_BYTES));
        Ok(index)
    }

    /// File `index`'s buffer with at least `room` bytes free.
    pub(crate) fn buffer_with_room(&mut self, index: usize, room: usize) -> io::Result<&mut Vec<u8>> {
        debug_assert!(room <= SHARED_BUFFER_BYTES);
        let buffer = &mut self.buffers[index];
        if buffer.capacity() - buffer.len() < room {
            let next = match self.empty.recv() {
                Ok(next) => next,
                Err(_) => return Err(self.writer_error()),
            };
            let full = std::mem::replace(&mut self.buffers[index], next);
            self.send(index, Job::Write(index / SHARED_WRITERS, full))?;
        }
        Ok(&mut self.buffers[index])
    }

    /// Sends a job about file `index` to its writer.
    fn send(&mut self, index: usize, job: Job) -> io::Result<()> {
        if self.failed || self.jobs[index % SHARED_WRITERS].send(job).is_err() {
            return Err(self.writer_error());
        }
        Ok(())
    }

    /// A writer stopped early: the first writer's error says why.
    fn writer_error(&mut self) -> io::Error {
        self.failed = true;
        self.jobs.clear(); // ends every writer's loop
        let mut first = None;
        for writer in self.writers.drain(..) {
            if let Ok(Err(error)) = writer.join() {
                first.get_or_insert(error);
            }
        }
        first.unwrap_or_else(|| io::Error::other("the clearing files' writer thread stopped"))
    }

    /// Writes what is buffered, waits for every file to be fsynced; their manifest
    /// entries, in the order they were created.
    pub(crate) fn finish(mut self) -> io::Result<Vec<FileEntry>> {
        for index in 0..self.buffers.len() {
            if !self.buffers[index].is_empty() {
                let last = std::mem::take(&mut self.buffers[index]);
                self.send(index, Job::Write(index / SHARED_WRITERS, last))?;
            }
        }
        if self.failed {
            return Err(self.writer_error());
        }
        self.jobs.clear(); // ends the writers' loops
        let mut written = Vec::with_capacity(SHARED_WRITERS);
        for writer in self.writers.drain(..) {
            match writer.join() {
                Ok(Ok(files)) => written.push(files.into_iter()),
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(io::Error::other("a clearing files' writer thread panicked")),
            }
        }
        // File `i` is the `i / writers`-th of writer `i % writers`.
        let mut entries = Vec::with_capacity(self.names.len());
        for (index, name) in self.names.iter().enumerate() {
            let (bytes, sha256) = written[index % SHARED_WRITERS]
                .next()
                .ok_or_else(|| io::Error::other("a clearing files' writer lost a file"))?;
            entries.push(FileEntry { name: name.clone(), bytes, sha256 });
        }
        Ok(entries)
    }
}

/// Alignment of direct I/O: file offsets, lengths and memory addresses of every write are
/// multiples of it (the logical block size of any disk, and the page size).
const DIRECT_ALIGN: usize = 4096;

/// A big file written once, front to back, hashed as it goes.
///
/// Where the file system allows it, the file is opened with `O_DIRECT`: its bytes go from
/// our buffer to the disk, not through the page cache. On the team's VM that writes
/// 0.9-1.4 GB/s against 250 MB/s through the page cache (`dd` of 2 GB, random bytes),
/// saves the kernel's copy of every byte (a third of the CPU of writing a window's
/// files), and leaves no dirty pages behind for the ledger's WAL fsync to wait for (see
/// `write_behind`). Each write goes through an aligned `Staging` buffer; the last partial
/// block is written padded and the file truncated to its length. Where `O_DIRECT` is
/// refused (tmpfs, some file systems), the file is written through the page cache with
/// `write_behind`.
struct OutFile {
    file: File,
    direct: bool,
    /// Direct I/O only: the bytes after the last whole block, not written yet.
    carry: Vec<u8>,
    /// Bytes handed to `write` so far.
    bytes: u64,
    hasher: Sha256,
}

impl OutFile {
    /// Creates `dir/name`, which must not exist yet.
    fn create(dir: &Path, name: &str) -> io::Result<OutFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let (file, direct) = match File::options().write(true).create_new(true).custom_flags(libc::O_DIRECT).open(&path)
        {
            Ok(file) => (file, true),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                // The file system has no direct I/O; the open may have created the file.
                let _ = std::fs::remove_file(&path);
                (File::options().write(true).create_new(true).open(&path)?, false)
            }
            Err(error) => return Err(error),
        };
        Ok(OutFile { file, direct, carry: Vec::with_capacity(DIRECT_ALIGN), bytes: 0, hasher: Sha256::new() })
    }

    /// Appends `data`: hashes it and writes what makes whole blocks.
    fn write(&mut self, data: &[u8], staging: &mut Staging) -> io::Result<()> {
        self.hasher.update(data);
        if !self.direct {
            self.file.write_all(data)?;
            write_behind(&self.file, self.bytes, data.len() as u64);
            self.bytes += data.len() as u64;
            return Ok(());
        }
        self.bytes += data.len() as u64;
        // Each round fills the staging buffer with the carry and as much of `data` as
        // fits, writes its whole blocks and keeps the rest as the next carry.
        let mut rest = data;
        while !rest.is_empty() {
            let area = staging.area();
            let carried = self.carry.len();
            area[..carried].copy_from_slice(&self.carry);
            let taken = rest.len().min(area.len() - carried);
            area[carried..carried + taken].copy_from_slice(&rest[..taken]);
            rest = &rest[taken..];
            let filled = carried + taken;
            let whole = filled - filled % DIRECT_ALIGN;
            self.file.write_all(&area[..whole])?;
            self.carry.clear();
            self.carry.extend_from_slice(&area[whole..filled]);
        }
        Ok(())
    }

    /// Writes the last partial block, fsyncs; the file's size and SHA-256 (hex).
    fn finish(mut self, staging: &mut Staging) -> io::Result<Written> {
        if self.direct && !self.carry.is_empty() {
            let block = &mut staging.area()[..DIRECT_ALIGN];
            block[..self.carry.len()].copy_from_slice(&self.carry);
            block[self.carry.len()..].fill(0);
            self.file.write_all(block)?;
            self.file.set_len(self.bytes)?;
        }
        self.file.sync_all()?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

/// A buffer whose start is aligned for direct I/O: `area` is `DIRECT_ALIGN` bytes more
/// than asked (room for a carry), rounded up to whole blocks. Allocated once per writer
/// thread.
struct Staging {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Staging {
    fn new(at_least: usize) -> Staging {
        let len = (at_least + DIRECT_ALIGN).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        // Over-allocated by one block, so that an aligned start lies within it; the Vec
        // never grows, so its address (and the alignment) never changes.
        let bytes = vec![0u8; len + DIRECT_ALIGN];
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN);
        Staging { bytes, start, len }
    }

    fn area(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// Starts writing `len` bytes at `offset` to disk now, and waits for the range written
/// `WRITE_BEHIND_BUFFERS` buffers before it to be on disk: the file never has more than a
/// few buffers of dirty data. Without it a window's files (gigabytes) are dirty until the
/// final fsync, and on ext4 (`data=ordered`) a journal commit forced by the ledger's WAL
/// fsync meanwhile also waits for other files' dirty data: stalls of the commit path of
/// hundreds of milliseconds. Advisory: an error here changes nothing (the final fsync
/// still makes the file durable, and reports real errors).
fn write_behind(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let start = |flags| {
        // SAFETY: sync_file_range only reads its integer arguments; `fd` is open for the
        // duration of the call (borrowed from `file`).
        unsafe { libc::sync_file_range(fd, offset as libc::off64_t, len as libc::off64_t, flags) }
    };
    let _ = start(libc::SYNC_FILE_RANGE_WRITE);
    let behind = len * WRITE_BEHIND_BUFFERS;
    if offset >= behind {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: as above.
        let _ = unsafe { libc::sync_file_range(fd, (offset - behind) as libc::off64_t, len as libc::off64_t, flags) };
    }
}

/// Buffers of a big file that may be on their way to disk at once (see `write_behind`).
const WRITE_BEHIND_BUFFERS: u64 = 2;

/// Writes a whole small file at once (hashed from memory), then fsyncs it.
pub(crate) fn write_small_file(dir: &Path, name: &str, contents: &[u8]) -> io::Result<FileEntry> {
    let mut file = File::options().write(true).create_new(true).open(dir.join(name))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(FileEntry {
        name: name.to_string(),
        bytes: contents.len() as u64,
        sha256: hex::encode(Sha256::digest(contents)),
    })
}

/// Builds a folder whole or not at all: `build` fills the hidden temporary folder `temp`
/// (emptied first: a crashed attempt's leftovers), which is then fsynced and renamed to
/// `target` in `out_root`. On an error nothing is left behind.
pub(crate) fn build_atomically<T, E: From<ClearingError>>(
    out_root: &Path,
    temp: &Path,
    target: &Path,
    build: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| E::from(ClearingError::Io { path, source })
    };
    std::fs::create_dir_all(out_root).map_err(io(out_root))?;
    if temp.exists() {
        // Left by a crash part-way through an earlier attempt: start again from nothing.
        std::fs::remove_dir_all(temp).map_err(io(temp))?;
    }
    std::fs::create_dir(temp).map_err(io(temp))?;
    let built = match build(temp) {
        Ok(built) => built,
        Err(error) => {
            // Best effort: a leftover is removed by the next attempt anyway.
            let _ = std::fs::remove_dir_all(temp);
            return Err(error);
        }
    };
    sync_dir(temp).map_err(io(temp))?;
    std::fs::rename(temp, target).map_err(io(target))?;
    sync_dir(out_root).map_err(io(out_root))?;
    Ok(built)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes of every size, across block boundaries, arrive whole and in order, and the
    /// hash is the file's own: through direct I/O on a disk's file system (the temporary
    /// folder), through the page cache where it is refused.
    #[test]
    fn a_file_written_in_pieces_of_any_size_is_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, sizes) in [
            ("empty", vec![]),
            ("short", vec![1]),
            ("block", vec![DIRECT_ALIGN]),
            ("odd", vec![1, DIRECT_ALIGN - 1, DIRECT_ALIGN + 1, 3 * DIRECT_ALIGN, 7, 100_003]),
            ("big", vec![SHARED_BUFFER_BYTES, SHARED_BUFFER_BYTES - 5, 9]),
        ] {
            let mut file = OutFile::create(dir.path(), name).expect("create");
            let mut staging = Staging::new(SHARED_BUFFER_BYTES);
            let mut expected = Vec::new();
            for (piece, size) in sizes.into_iter().enumerate() {
                let data: Vec<u8> = (0..size).map(|i| (i * 31 + piece * 7) as u8).collect();
                file.write(&data, &mut staging).expect("write");
                expected.extend_from_slice(&data);
            }
            let (bytes, sha256) = file.finish(&mut staging).expect("finish");
            let written = std::fs::read(dir.path().join(name)).expect("read");
            assert_eq!(written, expected, "{name}");
            assert_eq!(bytes, expected.len() as u64);
            assert_eq!(sha256, hex::encode(Sha256::digest(&expected)));
        }
    }

    /// More files than spare buffers, each filled past one buffer: every byte arrives, the
    /// hashes are the files' own, and `finish` returns (the writer once blocked handing
    /// the last buffers back to a pool nobody drew from any more).
    #[test]
    fn a_shared_sink_writes_many_files_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sink = SharedSink::new().expect("sink");
        let files = SHARED_SPARE_BUFFERS * 5;
        let names: Vec<String> = (0..files).map(|i| format!("f{i}.csv")).collect();
        let indices: Vec<usize> = names.iter().map(|n| sink.create(dir.path(), n).expect("create")).collect();
        let row = [b'x'; 1000];
        for round in 0..(SHARED_BUFFER_BYTES / row.len() + 3) {
            for (file, index) in indices.iter().enumerate() {
                if round % (file % 3 + 1) == 0 {
                    sink.buffer_with_room(*index, row.len()).expect("room").extend_from_slice(&row);
                }
            }
        }
        let entries = sink.finish().expect("finish");
        assert_eq!(entries.len(), files);
        for entry in &entries {
            let (bytes, sha256) = hash_file(&dir.path().join(&entry.name)).expect("hash");
            assert_eq!((entry.bytes, &entry.sha256), (bytes, &sha256), "{}", entry.name);
            assert!(bytes > SHARED_BUFFER_BYTES as u64 / 3);
        }
    }
}
