//! The JetStream assets of one deployment and the few operations the store needs on
//! them: leader-consistent gets, compare-and-set writes, binary search over a subject's
//! records, and purges.
//!
//! Every read goes to the stream leader (`STREAM.MSG.GET`), never to direct-get
//! replicas, so a read after an acknowledged write sees it even in a cluster.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{self, RawMessageErrorKind};
use async_nats::{HeaderMap, ServerAddr, header};
use bytes::Bytes;
use weir_store::StoreError;

use crate::NatsConfig;
use crate::record::{RecordHead, RegRecord};

/// Subject-level compare-and-set attempts before giving up as unavailable.
pub const CAS_ATTEMPTS: usize = 64;
/// How long setting up the assets may be retried while JetStream is not ready (a
/// cluster electing its leader).
const SETUP_PATIENCE: Duration = Duration::from_secs(30);

/// A NATS failure as [`StoreError::Unavailable`], naming the operation.
pub fn unavailable<E: std::fmt::Display>(
    what: impl std::fmt::Display,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

/// What became of a compare-and-set publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored at this stream sequence.
    Stored(u64),
    /// The subject's last sequence was not the expected one, or the server dropped the
    /// message as a duplicate id: read back and decide.
    Raced,
    /// No answer (timeout, connection lost): it may or may not be stored; read back.
    Unknown(String),
}

/// The connection and the assets.
pub struct Js {
    pub client: async_nats::Client,
    pub ctx: async_nats::jetstream::Context,
    /// `<prefix>_entries`: one subject per weir stream.
    pub entries: stream::Stream,
    /// KV bucket `<prefix>_registry` (writes) and its stream (leader reads).
    pub registry: kv::Store,
    registry_stream: stream::Stream,
    /// KV bucket `<prefix>_meta`: `expired` and `p.<start_ns>` keys.
    pub meta: kv::Store,
    meta_stream: stream::Stream,
    pub prefix: String,
    /// Largest message the server takes.
    pub max_payload: usize,
}

impl Js {
    /// Connects and creates (or opens) the stream and buckets.
    pub async fn connect(config: &NatsConfig) -> Result<Js, StoreError> {
        if config.prefix.is_empty()
            || !config
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(StoreError::Unavailable(format!(
                "nats prefix {:?}: use letters, digits, - and _",
                config.prefix
            )));
        }
        let addrs = config
            .servers
            .iter()
            .map(|s| s.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable("nats server address"))?;
        let timeout = Duration::from_millis(config.request_timeout_ms.max(100));
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .connect(addrs.as_slice())
            .await
            .map_err(unavailable(format_args!(
                "connecting to {:?}",
                config.servers
            )))?;
        let mut ctx = async_nats::jetstream::new(client.clone());
        ctx.set_timeout(timeout);
        let max_payload = client.server_info().max_payload;
        let deadline = tokio::time::Instant::now() + SETUP_PATIENCE;
        loop {
            match Self::assets(&client, &ctx, config, max_payload).await {
                Ok(js) => return Ok(js),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("JetStream not ready yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn assets(
        client: &async_nats::Client,
        ctx: &async_nats::jetstream::Context,
        config: &NatsConfig,
        max_payload: usize,
    ) -> Result<Js, StoreError> {
        let p = &config.prefix;
        let wanted = stream::Config {
            name: format!("{p}_entries"),
            description: Some("weir stream entries, one subject per stream".into()),
            subjects: vec![format!("{p}.e.>")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas.max(1),
            duplicate_window: config.duplicate_window(),
            max_age: Duration::from_secs(config.max_age_secs),
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let entries = ctx
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(unavailable("creating the entries stream"))?;
        let entries = apply_settings(ctx, entries, wanted).await?;
        let (registry, registry_stream) = bucket(ctx, config, &format!("{p}_registry")).await?;
        let (meta, meta_stream) = bucket(ctx, config, &format!("{p}_meta")).await?;
        Ok(Js {
            client: client.clone(),
            ctx: ctx.clone(),
            entries,
            registry,
            registry_stream,
            meta,
            meta_stream,
            prefix: p.clone(),
            max_payload,
        })
    }

    // ----- registry and meta (KV) -----------------------------------------------------

    /// A stream's registry value and its revision.
    pub async fn reg_get(&self, key: &str) -> Result<Option<(u64, RegRecord)>, StoreError> {
        match kv_get(&self.registry_stream, &self.registry.name, key).await? {
            Some((rev, bytes)) => Ok(Some((rev, RegRecord::decode(&bytes)?))),
            None => Ok(None),
        }
    }

    /// Creates a registry value; `false` when the key exists (someone else won).
    pub async fn reg_create(&self, key: &str, rec: &RegRecord) -> Result<bool, StoreError> {
        match self.registry.create(key, rec.encode()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::Unavailable(format!("registering: {e}"))),
        }
    }

    /// Compare-and-set update of a registry value; `false` when the revision moved.
    pub async fn reg_update(
        &self,
        key: &str,
        rec: &RegRecord,
        rev: u64,
    ) -> Result<bool, StoreError> {
        match self.registry.update(key, rec.encode(), rev).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(StoreError::Unavailable(format!(
                "updating the registry: {e}"
            ))),
        }
    }

    /// Every key of the registry.
    pub async fn reg_keys(&self) -> Result<Vec<String>, StoreError> {
        keys(&self.registry).await
    }

    /// A meta value and its revision.
    pub async fn meta_get(&self, key: &str) -> Result<Option<(u64, Bytes)>, StoreError> {
        kv_get(&self.meta_stream, &self.meta.name, key).await
    }

    /// Every meta key.
    pub async fn meta_keys(&self) -> Result<Vec<String>, StoreError> {
        keys(&self.meta).await
    }

    /// Creates a meta key if absent (`Ok` either way).
    pub async fn meta_create(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        match self.meta.create(key, value).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!("writing meta {key}: {e}"))),
        }
    }

    /// Compare-and-set of a meta key (`rev` 0: create); `false` when it moved.
    pub async fn meta_cas(&self, key: &str, value: Bytes, rev: u64) -> Result<bool, StoreError> {
        let res = if rev == 0 {
            self.meta
                .create(key, value)
                .await
                .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string()))
        } else {
            self.meta.update(key, value, rev).await.map_err(|e| {
                (
                    e.kind() == UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            })
        };
        match res {
            Ok(_) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(StoreError::Unavailable(format!("writing meta {key}: {e}"))),
        }
    }

    /// Deletes a meta key.
    pub async fn meta_delete(&self, key: &str) -> Result<(), StoreError> {
        self.meta
            .delete(key)
            .await
            .map_err(unavailable(format_args!("deleting meta {key}")))
    }

    // ----- entry records --------------------------------------------------------------

    /// The last record on `subject`.
    pub async fn last(&self, subject: &str) -> Result<Option<RecordHead>, StoreError> {
        let got = self
            .entries
            .raw_message_builder()
            .last_by_subject(subject)
            .send()
            .await;
        match got {
            Ok(m) => Ok(Some(RecordHead::parse(m.sequence, Some(&m.headers))?)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!("reading {subject}: {e}"))),
        }
    }

    /// The first record on `subject` at or after stream sequence `seq`.
    pub async fn next_from(
        &self,
        subject: &str,
        seq: u64,
    ) -> Result<Option<(RecordHead, StreamMessage)>, StoreError> {
        let got = self
            .entries
            .raw_message_builder()
            .sequence(seq.max(1))
            .next_by_subject(subject)
            .send()
            .await;
        match got {
            Ok(m) => Ok(Some((RecordHead::parse(m.sequence, Some(&m.headers))?, m))),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!("reading {subject}: {e}"))),
        }
    }

    /// The first record on `subject` between sequences `from_seq` and `last_seq` for
    /// which `pred` holds, `pred` being false then true along the subject (index and
    /// ingest time only grow), and false for every record before `from_seq`. Binary
    /// search over stream sequences: O(log(last_seq - from_seq)) gets.
    pub async fn search(
        &self,
        subject: &str,
        from_seq: u64,
        last_seq: u64,
        pred: impl Fn(&RecordHead) -> bool,
    ) -> Result<Option<(RecordHead, StreamMessage)>, StoreError> {
        let (mut lo, mut hi) = (from_seq.max(1), last_seq.saturating_add(1));
        let mut best = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.next_from(subject, mid).await? {
                Some((head, msg)) if head.seq <= last_seq => {
                    if pred(&head) {
                        hi = mid;
                        best = Some((head, msg));
                    } else {
                        lo = head.seq + 1;
                    }
                }
                _ => hi = mid,
            }
        }
        Ok(best)
    }

    /// Publishes a record with `Nats-Expected-Last-Subject-Sequence: expected` (the
    /// compare-and-set) and `Nats-Msg-Id: msg_id`.
    pub async fn publish_cas(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<Published, StoreError> {
        headers.insert(header::NATS_MESSAGE_ID, msg_id);
        headers.insert(
            header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let sent = self
            .ctx
            .publish_with_headers(subject.to_string(), headers, payload)
            .await;
        let ack = match sent {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) if ack.duplicate => Ok(Published::Raced),
            Ok(ack) => Ok(Published::Stored(ack.sequence)),
            Err(e) => match e.kind() {
                PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                    Ok(Published::Raced)
                }
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                    Ok(Published::Unknown(e.to_string()))
                }
                PublishErrorKind::MaxPayloadExceeded => Err(StoreError::Unavailable(format!(
                    "record too large for the NATS server: {e}"
                ))),
                _ => Ok(Published::Unknown(e.to_string())),
            },
        }
    }

    /// Removes the records on `subject` below stream sequence `seq`; how many went.
    pub async fn purge_below(&self, subject: &str, seq: u64) -> Result<u64, StoreError> {
        let res = self
            .entries
            .purge()
            .filter(subject)
            .sequence(seq)
            .await
            .map_err(unavailable(format_args!("purging {subject}")))?;
        Ok(res.purged)
    }
}

/// Opens or creates a KV bucket (history 1) and its stream. The bucket's stream is
/// created here with the settings KV clients use (`KV_<name>` on `$KV.<name>.>`), as
/// the client's own bucket creation asks the 2.9 server for account details it cannot
/// parse.
async fn bucket(
    ctx: &async_nats::jetstream::Context,
    config: &NatsConfig,
    name: &str,
) -> Result<(kv::Store, stream::Stream), StoreError> {
    let wanted = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: config.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let stream = ctx
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(unavailable(format_args!("creating the KV bucket {name}")))?;
    let stream = apply_settings(ctx, stream, wanted).await?;
    let store = ctx
        .get_key_value(name)
        .await
        .map_err(unavailable(format_args!("opening the KV bucket {name}")))?;
    Ok((store, stream))
}

/// Applies the settings a collector is configured with (replicas, `max_age`, the
/// dedupe window) to a stream that already existed with others: the first collector
/// started after a change of `--nats-replicas` or `max_age_secs` updates it, and says
/// so. Returns the stream as it now is.
async fn apply_settings(
    ctx: &async_nats::jetstream::Context,
    mut existing: stream::Stream,
    wanted: stream::Config,
) -> Result<stream::Stream, StoreError> {
    let have = existing.cached_info().config.clone();
    // A zero window is the server's default: whatever it chose is fine.
    let window = if wanted.duplicate_window.is_zero() {
        have.duplicate_window
    } else {
        wanted.duplicate_window
    };
    if have.num_replicas == wanted.num_replicas
        && have.max_age == wanted.max_age
        && have.duplicate_window == window
    {
        return Ok(existing);
    }
    let update = stream::Config {
        num_replicas: wanted.num_replicas,
        max_age: wanted.max_age,
        duplicate_window: window,
        ..have.clone()
    };
    ctx.update_stream(&update).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "updating JetStream stream {} (replicas {} -> {}, max_age {:?} -> {:?}): {e}",
            have.name, have.num_replicas, wanted.num_replicas, have.max_age, wanted.max_age
        ))
    })?;
    tracing::info!(
        stream = %have.name,
        replicas = format_args!("{} -> {}", have.num_replicas, wanted.num_replicas),
        max_age = format_args!("{:?} -> {:?}", have.max_age, wanted.max_age),
        duplicate_window = format_args!("{:?} -> {:?}", have.duplicate_window, window),
        "applied changed settings to an existing JetStream stream"
    );
    existing
        .info()
        .await
        .map_err(unavailable("reading the updated stream"))?;
    Ok(existing)
}

/// A KV value read from the bucket's stream leader; deleted keys are `None`.
async fn kv_get(
    stream: &stream::Stream,
    bucket: &str,
    key: &str,
) -> Result<Option<(u64, Bytes)>, StoreError> {
    let got = stream
        .raw_message_builder()
        .last_by_subject(format!("$KV.{bucket}.{key}"))
        .send()
        .await;
    match got {
        Ok(m) => {
            let op = m.headers.get("KV-Operation").map(|v| v.as_str());
            if matches!(op, Some("DEL") | Some("PURGE")) {
                Ok(None)
            } else {
                Ok(Some((m.sequence, m.payload)))
            }
        }
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(StoreError::Unavailable(format!(
            "reading {bucket}/{key}: {e}"
        ))),
    }
}

/// Every live key of a bucket.
async fn keys(store: &kv::Store) -> Result<Vec<String>, StoreError> {
    use futures::TryStreamExt;
    let keys = store
        .keys()
        .await
        .map_err(unavailable(format_args!("listing {}", store.name)))?;
    keys.try_collect()
        .await
        .map_err(unavailable(format_args!("listing {}", store.name)))
}
