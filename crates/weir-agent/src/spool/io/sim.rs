//! [`SimFs`]: an in-memory [`SpoolFs`] that logs every write, truncation, fsync and
//! directory change, so that a test can build the disk a power loss would leave after
//! any prefix of that log.
//!
//! The model of durability (POSIX at its weakest, as the spool must assume):
//! - a write or `set_len` reaches the file's durable content only through `sync_data`
//!   of that file (or by luck: see below);
//! - creating, renaming and removing a name is durable only through `sync_dir`
//!   (one namespace: `sync_dir` of any directory makes every pending name change
//!   durable, which is exact for the spool's single directory);
//! - at a crash, what was not made durable may still have reached the disk: for each
//!   file independently, a *prefix* of its pending writes (the last one possibly torn
//!   at any byte), and a prefix of the pending name changes. [`Survivors`] picks which.
//!
//! Crash images are built by replaying the log, so [`SimFs::crash`] can be asked for
//! any point of the history after the run is over.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{SpoolFile, SpoolFs};

/// An in-memory file system with a crash model; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

/// Which unsynced operations survive in a crash image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivors {
    /// Only what was synced.
    Nothing,
    /// Everything written, synced or not (a process crash, `kill -9`).
    Everything,
    /// Per file a random prefix of its unsynced writes, the last kept one possibly torn
    /// at a random byte, and a random prefix of the unsynced name changes; the seed
    /// makes it repeatable.
    Random(u64),
}

#[derive(Debug, Clone, Default)]
struct Image {
    names: BTreeMap<PathBuf, usize>,
    inodes: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct SimState {
    /// Durable state the log starts from.
    base: Image,
    /// What a reader sees now.
    current: Image,
    log: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { ino: usize, off: u64, data: Vec<u8> },
    SetLen { ino: usize, len: u64 },
    SyncFile { ino: usize },
    Link { path: PathBuf, ino: usize },
    Rename { from: PathBuf, to: PathBuf },
    Unlink { path: PathBuf },
    SyncDir,
}

impl Image {
    fn inode(&mut self, ino: usize) -> &mut Vec<u8> {
        if self.inodes.len() <= ino {
            self.inodes.resize_with(ino + 1, Vec::new);
        }
        &mut self.inodes[ino]
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { ino, off, data } => {
                let file = self.inode(*ino);
                let off = *off as usize;
                if file.len() < off + data.len() {
                    file.resize(off + data.len(), 0);
                }
                file[off..off + data.len()].copy_from_slice(data);
            }
            Op::SetLen { ino, len } => self.inode(*ino).resize(*len as usize, 0),
            Op::Link { path, ino } => {
                self.inode(*ino);
                self.names.insert(path.clone(), *ino);
            }
            Op::Rename { from, to } => {
                if let Some(ino) = self.names.remove(from) {
                    self.names.insert(to.clone(), ino);
                }
            }
            Op::Unlink { path } => {
                self.names.remove(path);
            }
            Op::SyncFile { .. } | Op::SyncDir => {}
        }
    }
}

/// splitmix64: small, deterministic, good enough to pick prefixes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..=n`.
    fn upto(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of operations logged so far: the crash points are `0..=ops()`.
    pub fn ops(&self) -> usize {
        self.state().log.len()
    }

    /// The disk a crash after the first `after_ops` logged operations could leave, as a
    /// new `SimFs` whose every byte is durable.
    pub fn crash(&self, after_ops: usize, survivors: Survivors) -> SimFs {
        let state = self.state();
        let mut durable = state.base.clone();
        let mut pending: HashMap<usize, Vec<&Op>> = HashMap::new();
        let mut pending_names: Vec<&Op> = Vec::new();
        for op in &state.log[..after_ops.min(state.log.len())] {
            match op {
                Op::Write { ino, .. } | Op::SetLen { ino, .. } => {
                    pending.entry(*ino).or_default().push(op)
                }
                Op::SyncFile { ino } => {
                    for op in pending.remove(ino).unwrap_or_default() {
                        durable.apply(op);
                    }
                }
                Op::Link { .. } | Op::Rename { .. } | Op::Unlink { .. } => pending_names.push(op),
                Op::SyncDir => {
                    for op in pending_names.drain(..) {
                        durable.apply(op);
                    }
                }
            }
        }
        let mut rng = match survivors {
            Survivors::Random(seed) => Some(Rng(seed)),
            _ => None,
        };
        let mut inos: Vec<_> = pending.into_iter().collect();
        inos.sort_by_key(|(ino, _)| *ino);
        for (_, ops) in inos {
            let keep = match (&survivors, rng.as_mut()) {
                (Survivors::Everything, _) => ops.len(),
                (_, Some(rng)) => rng.upto(ops.len()),
                _ => 0,
            };
            for op in &ops[..keep] {
                durable.apply(op);
            }
            // the first write not kept may have reached the disk in part
            if let (Some(rng), Some(Op::Write { ino, off, data })) = (rng.as_mut(), ops.get(keep)) {
                let torn = rng.upto(data.len());
                durable.apply(&Op::Write {
                    ino: *ino,
                    off: *off,
                    data: data[..torn].to_vec(),
                });
            }
        }
        let keep = match (&survivors, rng.as_mut()) {
            (Survivors::Everything, _) => pending_names.len(),
            (_, Some(rng)) => rng.upto(pending_names.len()),
            _ => 0,
        };
        for op in &pending_names[..keep] {
            durable.apply(op);
        }
        let inodes = state.current.inodes.len().max(durable.inodes.len());
        durable.inodes.resize_with(inodes, Vec::new);
        SimFs {
            state: Arc::new(Mutex::new(SimState {
                base: durable.clone(),
                current: durable,
                log: Vec::new(),
            })),
        }
    }

    /// The current content of `path`, if it exists (for tests' own checks).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let ino = *state.current.names.get(path)?;
        state.current.inodes.get(ino).cloned()
    }

    /// Overwrites bytes of `path` durably, outside the log: damage done "by the disk".
    pub fn damage(&self, path: &Path, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        let ino = *state
            .current
            .names
            .get(path)
            .ok_or(io::ErrorKind::NotFound)?;
        let state = &mut *state;
        for image in [&mut state.current, &mut state.base] {
            let file = image.inode(ino);
            if file.len() < offset + bytes.len() {
                file.resize(offset + bytes.len(), 0);
            }
            file[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        Ok(())
    }

    fn log(state: &mut SimState, op: Op) {
        state.current.apply(&op);
        state.log.push(op);
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<SimState>>,
    ino: usize,
}

impl SimFile {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SpoolFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.state().current.inode(self.ino).len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.state();
        let file = state.current.inode(self.ino);
        let start = offset as usize;
        let src = file
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let op = Op::Write {
            ino: self.ino,
            off: offset,
            data: buf.to_vec(),
        };
        SimFs::log(&mut self.state(), op);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        SimFs::log(&mut self.state(), Op::SetLen { ino: self.ino, len });
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        SimFs::log(&mut self.state(), Op::SyncFile { ino: self.ino });
        Ok(())
    }
}

impl SpoolFs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        Ok(state
            .current
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn SpoolFile>> {
        let mut state = self.state();
        let ino = match state.current.names.get(path) {
            Some(&ino) => {
                SimFs::log(&mut state, Op::SetLen { ino, len: 0 });
                ino
            }
            None => {
                let ino = state.current.inodes.len();
                let path = path.to_path_buf();
                SimFs::log(&mut state, Op::Link { path, ino });
                ino
            }
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SpoolFile>> {
        let ino = *self
            .state()
            .current
            .names
            .get(path)
            .ok_or(io::ErrorKind::NotFound)?;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !state.current.names.contains_key(from) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let op = Op::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        };
        SimFs::log(&mut state, op);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !state.current.names.contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let path = path.to_path_buf();
        SimFs::log(&mut state, Op::Unlink { path });
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        SimFs::log(&mut self.state(), Op::SyncDir);
        Ok(())
    }
    fn lock(&self, _path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        Ok(Box::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_and_names_can_vanish() {
        let fs = SimFs::new();
        let dir = Path::new("/s");
        let a = fs.create(&dir.join("a")).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        let nothing = fs.crash(fs.ops(), Survivors::Nothing);
        assert!(nothing.read(&dir.join("a")).is_none(), "name not synced");
        fs.sync_dir(dir).unwrap();
        let named = fs.crash(fs.ops(), Survivors::Nothing);
        assert_eq!(named.read(&dir.join("a")).unwrap(), b"", "data not synced");
        let all = fs.crash(fs.ops(), Survivors::Everything);
        assert_eq!(all.read(&dir.join("a")).unwrap(), b"hello");
        a.sync_data().unwrap();
        a.write_all_at(b"world", 5).unwrap();
        let synced = fs.crash(fs.ops(), Survivors::Nothing);
        assert_eq!(synced.read(&dir.join("a")).unwrap(), b"hello");
        // at the point before the sync, the data was not durable yet
        let before = fs.crash(2, Survivors::Nothing);
        assert!(before.read(&dir.join("a")).is_none());
        for seed in 0..50 {
            let img = fs.crash(fs.ops(), Survivors::Random(seed));
            let got = img.read(&dir.join("a")).unwrap();
            assert!(got.len() >= 5 && b"helloworld".starts_with(&got), "{got:?}");
        }
    }

    #[test]
    fn rename_is_atomic_and_needs_a_directory_sync() {
        let fs = SimFs::new();
        let dir = Path::new("/s");
        let f = fs.create(&dir.join("c.tmp")).unwrap();
        f.write_all_at(b"v1", 0).unwrap();
        f.sync_data().unwrap();
        fs.rename(&dir.join("c.tmp"), &dir.join("c")).unwrap();
        let lost = fs.crash(fs.ops(), Survivors::Nothing);
        assert!(lost.read(&dir.join("c")).is_none());
        fs.sync_dir(dir).unwrap();
        let kept = fs.crash(fs.ops(), Survivors::Nothing);
        assert_eq!(kept.read(&dir.join("c")).unwrap(), b"v1");
        assert!(kept.read(&dir.join("c.tmp")).is_none());
    }
}
