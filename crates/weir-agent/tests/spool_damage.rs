//! A damaged spool opens, reports what it skipped and delivers the rest: torn tails,
//! flipped bytes, damaged headers and cursor files, and random damage anywhere.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use proptest::prelude::*;
use weir_agent::spool::{FsyncPolicy, RecordId, Spool, SpoolConfig, WhenFull};

/// 116-byte frames (100-byte payloads), three per segment.
fn config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes: 400,
        when_full: WhenFull::Block,
        fsync: FsyncPolicy::Always,
        fsync_interval_ms: 200,
    }
}

const FRAME: u64 = 116;
const HEADER: u64 = 8;

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("record {i:04} ").into_bytes();
    p.resize(100, b'a' + (i % 26) as u8);
    p
}

fn seg(dir: &Path, first: u64) -> std::path::PathBuf {
    dir.join(format!("{first:020}.seg"))
}

async fn write_records(dir: &Path, n: u64) {
    let spool = Spool::open(dir, config()).await.unwrap();
    let _reader = spool.reader("central").await.unwrap();
    for i in 0..n {
        spool.append(payload(i)).await.unwrap();
    }
}

/// Everything the reader `central` gets now: ids, each checked against its payload.
async fn delivered(spool: &Spool) -> Vec<u64> {
    let mut reader = spool.reader("central").await.unwrap();
    let mut ids = Vec::new();
    while let Some(r) = reader.try_next().await {
        assert_eq!(r.payload, payload(r.id.0), "record {} damaged", r.id);
        ids.push(r.id.0);
    }
    ids
}

fn flip(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).unwrap();
    file.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
}

#[tokio::test]
async fn torn_tail_and_flipped_byte_are_cut_skipped_counted_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10).await; // segments 0 [0,1,2], 3 [3,4,5], 6 [6,7,8], 9 [9]
    // a flipped byte in the payload of record 4, in the middle of a sealed segment
    flip(&seg(dir.path(), 3), HEADER + FRAME + 16 + 40);
    // a torn write at the end of the last segment: a header and part of its payload
    let torn = 30;
    let mut f = OpenOptions::new()
        .append(true)
        .open(seg(dir.path(), 9))
        .unwrap();
    let mut partial = 100u32.to_le_bytes().to_vec();
    partial.extend_from_slice(&[0xAB; 12]);
    partial.extend_from_slice(&vec![b'x'; torn - 16]);
    f.write_all(&partial).unwrap();
    drop(f);

    let spool = Spool::open(dir.path(), config()).await.unwrap();
    let stats = spool.stats();
    assert_eq!(stats.skipped_records, 1, "{stats:?}");
    assert_eq!(stats.skipped_bytes, FRAME);
    assert_eq!(stats.truncated_bytes, torn as u64);
    let expected: Vec<u64> = (0..10).filter(|&i| i != 4).collect();
    assert_eq!(delivered(&spool).await, expected);
    // the torn tail is gone from the file; appending goes on after record 9
    assert_eq!(
        std::fs::metadata(seg(dir.path(), 9)).unwrap().len(),
        HEADER + FRAME
    );
    assert_eq!(spool.append(payload(10)).await.unwrap(), RecordId(10));
    // the reader stepping over the damage did not count it a second time
    assert_eq!(spool.stats().skipped_records, 1);
    drop(spool);

    // reopening is stable: nothing more is cut, the same damage is reported, the same
    // records (and the new one) come out
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    let stats = spool.stats();
    assert_eq!((stats.skipped_records, stats.truncated_bytes), (1, 0));
    let mut expected = expected;
    expected.push(10);
    assert_eq!(delivered(&spool).await, expected);
}

#[tokio::test]
async fn damage_in_the_last_record_of_a_sealed_segment_is_counted_from_the_next_name() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 6).await;
    flip(&seg(dir.path(), 0), HEADER + 2 * FRAME + 20); // record 2
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(spool.stats().skipped_records, 1);
    assert_eq!(delivered(&spool).await, [0, 1, 3, 4, 5]);
}

#[tokio::test]
async fn impossible_length_and_damaged_header_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 6).await;
    // record 0's length becomes 4 GiB - 1
    let f = OpenOptions::new()
        .write(true)
        .open(seg(dir.path(), 0))
        .unwrap();
    f.write_all_at(&u32::MAX.to_le_bytes(), HEADER).unwrap();
    // segment 3's header is garbage; its frames are fine
    let f = OpenOptions::new()
        .write(true)
        .open(seg(dir.path(), 3))
        .unwrap();
    f.write_all_at(b"garbage!", 0).unwrap();
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(delivered(&spool).await, [1, 2, 3, 4, 5]);
    assert_eq!(spool.stats().skipped_records, 1);
}

#[tokio::test]
async fn empty_and_headerless_segments_and_stray_files_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 4).await; // segments 0 and 3
    // a crash right after creating the next segment file, before its header
    std::fs::write(seg(dir.path(), 4), b"WEI").unwrap();
    std::fs::write(dir.path().join("central.cursor.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(delivered(&spool).await, [0, 1, 2, 3]);
    assert_eq!(spool.append(payload(4)).await.unwrap(), RecordId(4));
    assert!(!dir.path().join("central.cursor.tmp").exists());
}

#[tokio::test]
async fn damaged_cursor_redelivers_from_the_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), config()).await.unwrap();
        let mut reader = spool.reader("central").await.unwrap();
        for i in 0..5 {
            spool.append(payload(i)).await.unwrap();
        }
        for _ in 0..2 {
            reader.next().await.unwrap();
        }
        reader.ack(RecordId(1)).await.unwrap();
    }
    flip(&dir.path().join("central.cursor"), 9);
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(spool.stats().corrupt_cursors, 1);
    assert_eq!(delivered(&spool).await, [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_segment_of_another_format_version_is_set_aside_a_flipped_version_byte_is_not() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 4).await;
    let f = OpenOptions::new()
        .write(true)
        .open(seg(dir.path(), 0))
        .unwrap();
    // Only the version byte differs and the frames check out under this format: a
    // flipped byte, read as damage, never a spool that must be deleted by hand.
    f.write_all_at(b"WEIRSPL\x07", 0).unwrap();
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(delivered(&spool).await, [0, 1, 2, 3]);
    drop(spool);
    // Frames of another layout as well: written by another version (or damaged beyond
    // telling). Set aside under another name, kept, never misread; the spool opens with
    // the rest and ids go on past the set-aside range.
    f.write_all_at(b"WEIRSPL\x07", 0).unwrap();
    f.write_all_at(&[0xA5; 16], 8).unwrap();
    drop(f);
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert!(!seg(dir.path(), 0).exists());
    let aside = dir.path().join(format!("{:020}.seg.version-7", 0));
    assert!(aside.exists(), "the segment is kept under another name");
    assert_eq!(spool.stats().skipped_bytes, HEADER + 3 * FRAME);
    assert_eq!(delivered(&spool).await, [3]);
    let fresh = spool.append(payload(4)).await.unwrap();
    assert_eq!(fresh.0, 4);
    drop(spool);
    // And it stays set aside: a second open agrees.
    let spool = Spool::open(dir.path(), config()).await.unwrap();
    assert_eq!(delivered(&spool).await, [3, 4]);
    assert!(aside.exists());
}

#[derive(Debug, Clone)]
enum Damage {
    Flip {
        file: usize,
        at: usize,
    },
    Truncate {
        file: usize,
        at: usize,
    },
    Garbage {
        file: usize,
        at: usize,
        len: usize,
        byte: u8,
    },
    Append {
        file: usize,
        len: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Damage::Flip { file, at }),
        (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Damage::Truncate { file, at }),
        (any::<usize>(), any::<usize>(), 1..300usize, any::<u8>()).prop_map(
            |(file, at, len, byte)| Damage::Garbage {
                file,
                at,
                len,
                byte
            }
        ),
        (any::<usize>(), 1..200usize).prop_map(|(file, len)| Damage::Append { file, len }),
    ]
}

fn apply(dir: &Path, d: &Damage) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "cursor"))
        .collect();
    files.sort();
    let pick = |i: usize| files[i % files.len()].clone();
    let len = |p: &Path| std::fs::metadata(p).unwrap().len() as usize;
    match *d {
        Damage::Flip { file, at } => {
            let p = pick(file);
            if len(&p) > 0 {
                flip(&p, (at % len(&p)) as u64);
            }
        }
        Damage::Truncate { file, at } => {
            let p = pick(file);
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len((at % (len(&p) + 1)) as u64).unwrap();
        }
        Damage::Garbage {
            file,
            at,
            len: n,
            byte,
        } => {
            let p = pick(file);
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&vec![byte; n], (at % (len(&p) + 1)) as u64)
                .unwrap();
        }
        Damage::Append { file, len: n } => {
            let p = pick(file);
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(&vec![0x5A; n]).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the damage: open succeeds, what comes out is in order and exactly what
    /// was appended at those ids, appending goes on, and a second open agrees.
    #[test]
    fn random_damage_never_breaks_open(
        records in 1u64..15,
        damages in proptest::collection::vec(damage(), 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            write_records(dir.path(), records).await;
            for d in &damages {
                apply(dir.path(), d);
            }
            let spool = Spool::open(dir.path(), config()).await.unwrap();
            let got = delivered(&spool).await;
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "{:?}", got);
            prop_assert!(got.iter().all(|&id| id < records));
            let fresh = spool.append(payload(1000)).await.unwrap();
            drop(spool);
            let spool = Spool::open(dir.path(), config()).await.unwrap();
            let mut reader = spool.reader("central").await.unwrap();
            let mut again = Vec::new();
            while let Some(r) = reader.try_next().await {
                again.push(r.id.0);
            }
            let mut expected = got.clone();
            expected.push(fresh.0);
            prop_assert_eq!(again, expected);
            Ok(())
        })?;
    }
}
