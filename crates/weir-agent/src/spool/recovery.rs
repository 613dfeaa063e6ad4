//! Opening a spool directory: take the lock, read the cursors, scan every segment, cut
//! torn tails, count damage, set aside segments of another format version, and decide
//! where appending goes on. Never panics on what it reads; the only errors are the OS
//! refusing.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::SpoolError;
use super::config::SpoolConfig;
use super::core::{Core, Counters, Cursor, Recovered, Segment};
use super::error::io_err;
use super::format::{
    CURSOR_FILE_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, FrameHeader, LOCK_FILE, MAX_RECORD_BYTES,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SegmentHeader, TMP_SUFFIX, check_segment_header,
    decode_cursor, frame_crc, parse_cursor_file_name, parse_segment_file_name, segment_file_name,
};
use super::io::{SpoolFile, SpoolFs};
use super::scan::{Item, Scanner};
use super::shared::remove_logged;

/// Opens (creating if need be) the spool in `dir`: the recovered state, the held lock,
/// and the files to delete right away (segments every cursor has acknowledged).
pub(crate) fn recover(
    fs: Arc<dyn SpoolFs>,
    dir: &Path,
    config: &SpoolConfig,
) -> Result<(Core, Box<dyn Any + Send + Sync>), SpoolError> {
    fs.create_dir_all(dir)
        .map_err(io_err("create directory", dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let dir_lock = match fs.lock(&lock_path) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(SpoolError::Locked(dir.to_path_buf()));
        }
        Err(e) => return Err(io_err("lock", &lock_path)(e)),
    };
    let mut counters = Counters::default();
    let mut segment_ids = Vec::new();
    let mut cursors = BTreeMap::new();
    for name in fs.list(dir).map_err(io_err("list", dir))? {
        let path = dir.join(&name);
        if name.ends_with(TMP_SUFFIX) {
            // a cursor write cut short by a crash; the old cursor file is intact
            remove_logged(&*fs, &path);
        } else if let Some(first_id) = parse_segment_file_name(&name) {
            segment_ids.push(first_id);
        } else if let Some(reader) = parse_cursor_file_name(&name) {
            let cursor = match read_cursor(&*fs, &path) {
                Some(next) => Cursor::new(next, Some(next)),
                None => {
                    tracing::warn!(
                        path = %path.display(),
                        "spool: damaged cursor file; its reader starts again from the oldest record"
                    );
                    counters.corrupt_cursors += 1;
                    Cursor::new(0, None)
                }
            };
            cursors.insert(reader.to_owned(), cursor);
        }
    }
    segment_ids.sort_unstable();

    let mut sealed = VecDeque::new();
    let mut last_reusable = false;
    let mut next_id_floor = 0;
    for (i, &first_id) in segment_ids.iter().enumerate() {
        let next_first = segment_ids.get(i + 1).copied();
        let scanned = scan_segment(&*fs, dir, first_id, next_first, &mut counters)?;
        last_reusable = scanned.reusable;
        if scanned.set_aside {
            // its id range is not reused: the next segment name is past it
            next_id_floor = next_id_floor.max(first_id + 1);
            continue;
        }
        sealed.push_back(scanned.segment);
    }

    // Ids are never reused: the next one is past every record, every segment name and
    // every cursor (a cursor can be ahead of the records when a power loss took records
    // that had already been delivered and acknowledged).
    let next_id = sealed
        .iter()
        .map(|s| s.end_id.max(s.first_id))
        .chain(cursors.values().map(|c| c.acked_next))
        .chain([next_id_floor])
        .max()
        .unwrap_or(0);

    let active = match sealed.pop_back() {
        Some(last) if last_reusable && last.end_id == next_id => last,
        last => {
            // A last segment named `next_id` has no good records: it is recreated empty.
            if let Some(last) = last.filter(|s| s.first_id != next_id) {
                sealed.push_back(last);
            }
            Segment::create(&*fs, dir, next_id)?
        }
    };
    let found = Recovered {
        sealed,
        active,
        next_id,
        cursors,
        counters,
    };
    let mut core = Core::new(fs.clone(), dir.to_path_buf(), config.clone(), found);
    let mut deletions = Vec::new();
    core.reclaim(&mut deletions);
    for path in deletions {
        remove_logged(&*fs, &path);
    }
    Ok((core, dir_lock))
}

fn read_cursor(fs: &dyn SpoolFs, path: &Path) -> Option<u64> {
    let file = fs.open(path).ok()?;
    if file.size().ok()? != CURSOR_FILE_LEN as u64 {
        return None;
    }
    let mut buf = [0u8; CURSOR_FILE_LEN];
    file.read_exact_at(&mut buf, 0).ok()?;
    decode_cursor(&buf)
}

struct Scanned {
    segment: Segment,
    /// Appending can go on at its readable end (header good, no I/O trouble).
    reusable: bool,
    /// Renamed out of the spool (another format version): not part of it any more.
    set_aside: bool,
}

/// `<segment>.version-<found>`: kept for the version of weir that wrote it (rename it
/// back and run that version), ignored by this one.
fn set_aside(fs: &dyn SpoolFs, path: &Path, found: u8) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".version-{found}"));
    let aside = std::path::PathBuf::from(aside);
    match fs.rename(path, &aside) {
        Ok(()) => tracing::error!(
            path = %path.display(),
            set_aside_as = %aside.display(),
            found,
            supported = FORMAT_VERSION,
            "spool: segment of another format version (or damaged header and first frame); set aside, its records are not sent"
        ),
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            found,
            "spool: segment of another format version and it cannot be renamed; skipped"
        ),
    }
}

/// Whether the segment holds no frame at all or its first frame checks out under this
/// format: then a header that names another version was damaged (a flipped byte), not
/// written by another version of weir, and refusing to open would leave a spool that
/// must be deleted by hand.
fn first_frame_is_ours(file: &dyn SpoolFile, size: u64) -> bool {
    let start = SEGMENT_HEADER_LEN;
    if size <= start {
        return true;
    }
    let mut head = [0u8; FRAME_HEADER_LEN];
    if file.read_exact_at(&mut head, start).is_err() {
        return false;
    }
    let frame = FrameHeader::decode(&head);
    let len = frame.len as usize;
    let end = start + FRAME_HEADER_LEN as u64 + frame.len as u64;
    if len > MAX_RECORD_BYTES || end > size {
        return false;
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, start + FRAME_HEADER_LEN as u64)
        .is_ok()
        && frame_crc(frame.len, frame.id, &payload) == frame.crc
}

/// Scans one segment: counts its good records, counts and steps over damage in the
/// middle, cuts a torn tail, repairs a damaged header.
fn scan_segment(
    fs: &dyn SpoolFs,
    dir: &Path,
    first_id: u64,
    next_first: Option<u64>,
    counters: &mut Counters,
) -> Result<Scanned, SpoolError> {
    let path = dir.join(segment_file_name(first_id));
    let file = fs.open(&path).map_err(io_err("open segment", &path))?;
    let size = file.size().map_err(io_err("read size of", &path))?;
    let id_limit = next_first.unwrap_or(u64::MAX);
    let mut reusable = true;
    let mut header_bad = false;
    let mut segment = Segment {
        first_id,
        end_id: first_id,
        len: SEGMENT_HEADER_LEN,
        disk_bytes: size,
        records: 0,
        file: file.clone(),
        path: path.clone(),
        holes: BTreeSet::new(),
    };

    if size < SEGMENT_HEADER_LEN {
        // created, header not (wholly) written: nothing in it
        counters.truncated_bytes += size;
        header_bad = true;
    } else {
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        if let Err(e) = file.read_exact_at(&mut head, 0) {
            tracing::warn!(path = %path.display(), error = %e, "spool: cannot read segment; skipping it");
            counters.skipped_bytes += size;
            return Ok(Scanned {
                segment,
                reusable: false,
                set_aside: false,
            });
        }
        match check_segment_header(&head) {
            SegmentHeader::Valid => {}
            SegmentHeader::OtherVersion(_) if first_frame_is_ours(&*file, size) => {
                // only the version byte is off, the frames are of this format: damage
                tracing::warn!(path = %path.display(), "spool: damaged segment version byte");
                counters.skipped_bytes += SEGMENT_HEADER_LEN;
                header_bad = true;
            }
            SegmentHeader::OtherVersion(found) => {
                // Written by another version of weir, or damaged beyond telling: set
                // aside under a name no spool reads, never deleted, never misread, and
                // never a spool that refuses to open.
                counters.skipped_bytes += size;
                set_aside(fs, &path, found);
                return Ok(Scanned {
                    segment,
                    reusable: false,
                    set_aside: true,
                });
            }
            SegmentHeader::Damaged => {
                // the frames after it may be fine: scan them anyway
                tracing::warn!(path = %path.display(), "spool: damaged segment header");
                counters.skipped_bytes += SEGMENT_HEADER_LEN;
                header_bad = true;
            }
        }
        let (end, tail) = scan_frames(&*file, &mut segment, size, id_limit, counters);
        segment.len = end;
        if let Some(tail_result) = tail {
            match tail_result {
                Tail::Garbage => {
                    // torn tail (or damage with no good frame after it): cut it
                    let garbage = size - end;
                    if let Some(limit) = next_first.filter(|&limit| limit > segment.end_id) {
                        counters.skipped_records += limit - segment.end_id;
                    }
                    match file.set_len(end) {
                        Ok(()) => {
                            tracing::warn!(
                                path = %path.display(),
                                offset = end,
                                bytes = garbage,
                                "spool: cut a torn tail"
                            );
                            counters.truncated_bytes += garbage;
                            segment.disk_bytes = end;
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "spool: cannot cut a torn tail");
                            counters.skipped_bytes += garbage;
                            reusable = false;
                        }
                    }
                }
                Tail::Unreadable => reusable = false,
            }
        }
    }

    if header_bad && reusable {
        let repaired = if size < SEGMENT_HEADER_LEN {
            file.set_len(0)
                .and_then(|()| file.write_all_at(&SEGMENT_MAGIC, 0))
        } else {
            file.write_all_at(&SEGMENT_MAGIC, 0)
        };
        match repaired {
            Ok(()) => segment.disk_bytes = segment.disk_bytes.max(SEGMENT_HEADER_LEN),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "spool: cannot repair segment header");
                reusable = false;
            }
        }
    }
    Ok(Scanned {
        segment,
        reusable,
        set_aside: false,
    })
}

enum Tail {
    /// No good frame from the readable end to the file's end.
    Garbage,
    /// Reading failed; the rest is skipped and the file left alone.
    Unreadable,
}

/// Walks the frames of `segment` from its header to `size`, filling in its records,
/// end id and holes. Returns where good data ends and what lies after it.
fn scan_frames(
    file: &dyn SpoolFile,
    segment: &mut Segment,
    size: u64,
    id_limit: u64,
    counters: &mut Counters,
) -> (u64, Option<Tail>) {
    let mut scanner = Scanner::new(file, size, id_limit).verify_only();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = segment.first_id;
    loop {
        match scanner.next(offset, expected) {
            Ok(None) => break,
            Ok(Some(Item::Record {
                id, next_offset, ..
            })) => {
                segment.records += 1;
                expected = id + 1;
                offset = next_offset;
            }
            Ok(Some(Item::Skip {
                resume_offset,
                resume_id,
            })) => {
                let records = resume_id - expected;
                let bytes = resume_offset - offset;
                tracing::warn!(
                    path = %segment.path.display(),
                    offset,
                    records,
                    bytes,
                    "spool: damaged records skipped"
                );
                counters.skipped_records += records;
                counters.skipped_bytes += bytes;
                segment.holes.insert(offset);
                offset = resume_offset;
                expected = resume_id;
            }
            Ok(Some(Item::Tail)) => {
                segment.end_id = expected;
                return (offset, Some(Tail::Garbage));
            }
            Err(e) => {
                tracing::warn!(
                    path = %segment.path.display(),
                    offset,
                    error = %e,
                    "spool: cannot read segment; skipping its rest"
                );
                counters.skipped_bytes += size - offset;
                segment.end_id = expected;
                return (offset, Some(Tail::Unreadable));
            }
        }
    }
    segment.end_id = expected;
    (offset, None)
}
