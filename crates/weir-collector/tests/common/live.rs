//! Helpers for the live egress tests: selectors, a producer over `Ingress/Send`, and a
//! [`Recorder`] that reads a `BatchedReceiver` stream on its own task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use weir_core::Envelope;
use weir_proto::lv2::egress_client::EgressClient;
use weir_proto::lv2::ingress_client::IngressClient;
use weir_proto::lv2::selector::Message as Wants;
use weir_proto::lv2::{CounterSelector, EgressBatchRequest, EnvelopeBatch, LogSelector, Selector};

use super::{TestServer, lg_log, payload_of};

/// How long a test waits for something that should happen at once before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn log_selector(source: &str) -> Selector {
    Selector {
        source_id: source.into(),
        message: Some(Wants::Log(LogSelector {})),
    }
}

pub fn counter_selector(source: &str, name: &str) -> Selector {
    Selector {
        source_id: source.into(),
        message: Some(Wants::Counter(CounterSelector { name: name.into() })),
    }
}

/// A batched request for these selectors, with preferred tags.
pub fn batch_request(selectors: Vec<Selector>, shard_id: &str, det: &str) -> EgressBatchRequest {
    EgressBatchRequest {
        shard_id: shard_id.into(),
        legacy_selector: None,
        selectors,
        use_preferred_tags: true,
        deterministic_name: det.into(),
    }
}

pub async fn channel(server: &TestServer) -> Channel {
    Endpoint::from_shared(server.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// The log envelope number `i` of `source`: payload `<source>-<i>`.
pub fn numbered(source: &str, i: u64) -> Envelope {
    lg_log(source, "0", &format!("{source}-{i}"))
}

/// `(source, i)` of an envelope made by [`numbered`].
pub fn number_of(env: &Envelope) -> (String, u64) {
    let p = payload_of(env);
    let (source, i) = p.rsplit_once('-').expect("numbered payload");
    (source.to_string(), i.parse().expect("number"))
}

/// Sends one batch with the unary `Send`, which answers once it is stored (and so
/// published to the hub).
pub async fn send(client: &mut IngressClient<Channel>, batch: Vec<Envelope>) {
    client.send(EnvelopeBatch { batch }).await.expect("send");
}

/// A `BatchedReceiver` subscriber reading on its own task, recording every envelope.
pub struct Recorder {
    got: Arc<Mutex<Vec<Envelope>>>,
    count: watch::Receiver<usize>,
    task: JoinHandle<Result<(), tonic::Status>>,
}

impl Recorder {
    /// Subscribes (the call returns once the server has subscribed) and starts reading.
    pub async fn start(channel: Channel, req: EgressBatchRequest) -> Recorder {
        Self::start_mapped(channel, req, |e| e).await
    }

    /// Like [`start`](Self::start), keeping `keep(envelope)` of each (to keep less).
    pub async fn start_mapped(
        channel: Channel,
        req: EgressBatchRequest,
        keep: fn(Envelope) -> Envelope,
    ) -> Recorder {
        let mut client = EgressClient::new(channel);
        let mut stream = client
            .batched_receiver(req)
            .await
            .expect("batched receiver")
            .into_inner();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0usize);
        let sink = got.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = stream.message().await? {
                let mut g = sink.lock().expect("lock");
                g.extend(batch.batch.into_iter().map(keep));
                let n = g.len();
                drop(g);
                tx.send_replace(n);
            }
            Ok(())
        });
        Recorder { got, count, task }
    }

    /// Waits until at least `n` envelopes arrived (fails the test after [`PATIENCE`]).
    pub async fn wait_for(&mut self, n: usize) {
        let reached = tokio::time::timeout(PATIENCE, self.count.wait_for(|c| *c >= n))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => {}
            Ok(false) => panic!(
                "subscriber stream ended with {} of {n} envelopes",
                self.count()
            ),
            Err(_) => panic!("subscriber got {} of {n} envelopes in time", self.count()),
        }
    }

    /// Waits until `a` and `b` together received at least `n` envelopes.
    pub async fn wait_for_sum(a: &mut Recorder, b: &mut Recorder, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while a.count() + b.count() < n {
            let changed = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    r = a.count.changed() => r.is_ok(),
                    r = b.count.changed() => r.is_ok(),
                }
            })
            .await;
            match changed {
                Ok(true) => {}
                Ok(false) => panic!(
                    "a subscriber stream ended at {} + {} of {n}",
                    a.count(),
                    b.count()
                ),
                Err(_) => panic!("got {} + {} of {n} envelopes in time", a.count(), b.count()),
            }
        }
    }

    /// Waits at most `d` for more envelopes to arrive; whether some did.
    pub async fn changed_within(&mut self, d: Duration) -> bool {
        matches!(
            tokio::time::timeout(d, self.count.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Envelopes received so far.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// A copy of what was received so far.
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.got.lock().expect("lock").clone()
    }

    /// Stops reading (unsubscribes when the server sees the stream go).
    pub fn stop(self) {
        self.task.abort();
    }
}
