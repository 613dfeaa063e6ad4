//! Every acknowledged append survives `kill -9` of the process, even with
//! `fsync = "never"`: a child process appends and reports each acknowledgement, the
//! test kills it with SIGKILL mid-stream, reopens the store and finds everything that
//! was acknowledged.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{
    AppendOutcome, AppendRequest, FjallConfig, FjallStore, FsyncPolicy, Owner, Registration, Store,
};

/// Set in the child's environment to the data directory.
const CHILD_ENV: &str = "WEIR_STORE_KILL_CHILD_DIR";
const PATH: &str = "kill/+/a";
const BATCH: u64 = 10;
/// Acknowledged entries to wait for before killing the child.
const KILL_AFTER: u64 = 3000;

fn config(dir: &str) -> FjallConfig {
    FjallConfig {
        data_dir: dir.into(),
        fsync: FsyncPolicy::Never,
        ..FjallConfig::default()
    }
}

fn log(i: u64) -> Envelope {
    Envelope {
        message: Some(Body::Log(Log {
            payload: format!("entry {i} {}", "x".repeat(100)).into_bytes().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

fn owner() -> Owner {
    Owner::Producer(b"kill-test-secret".to_vec())
}

/// The child: appends batches forever, printing `acked <next>` after each one.
#[test]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only runs as the child of the test below.
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = FjallStore::open(config(&dir)).unwrap();
        let reg = Registration {
            path: PATH.into(),
            owner: owner(),
            descriptor: Descriptor::default(),
        };
        store.register(reg).await.unwrap();
        for k in 0u64.. {
            let first = k * BATCH;
            let req = AppendRequest {
                path: PATH.into(),
                owner: owner(),
                first_index: Some(first),
                entries: (first..first + BATCH).map(log).collect(),
            };
            let out = store.append(req).await.unwrap();
            assert!(matches!(out, AppendOutcome::Stored { .. }), "{out:?}");
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "acked {}", first + BATCH).unwrap();
            stdout.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0;
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if acked >= KILL_AFTER {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        acked >= KILL_AFTER,
        "the child stopped after {acked} entries"
    );

    let store = FjallStore::open(config(dir.path().to_str().unwrap())).unwrap();
    let state = store.stream(PATH).await.unwrap().unwrap();
    assert!(
        state.next_index >= acked,
        "acknowledged {acked}, found {}",
        state.next_index
    );
    let batch = store.read(PATH, 0, usize::MAX).await.unwrap().unwrap();
    assert_eq!(batch.entries.len() as u64, state.next_index);
    for (i, e) in batch.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(e.envelope, log(i as u64), "entry {i}");
    }
}
