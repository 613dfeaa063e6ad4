//! The agent runtime: builds the components a [`AgentConfig`] names, wires
//! sources → batcher → flushers, and shuts them down in order.
//!
//! ```text
//!  file source ──lines──► batcher ──Arc<Batch>──► [spill lane] ──► flusher task ──► flusher
//!       ▲                                 │  └──► [spill lane] ──► flusher task … (each flusher)
//!       └──── checkpoint ◄── FileAcks ◄───┘ delivered(slot) when that flusher acknowledged
//!                                           (or its lane durably spilled the batch)
//!
//!  stdin / socket ──► numbering + batcher ──► spool ──► feeder (one per flusher, own
//!                                               ▲       cursor) ──► flusher task
//!                                               └── SpoolAcks ◄── delivered(record id)
//! ```
//!
//! Sources that cannot replay ([`spool_pipeline`]) write every batch to the spool before
//! anything else; their streams are numbered by [`numbering`]. A socket client hears
//! `ok` only once its metric is in the spool.
//!
//! # A slow flusher does not hold the others
//!
//! A file source feeding two flushers or more hands each its batches through a
//! [`spill::SpillLane`]: directly into the flusher's channel while it keeps up; once
//! the channel stayed full for `[spill] after_ms`, into that flusher's own spool
//! (`<data_dir>/spill/<source>/<flusher>/`), from which the lane's feeder hands them on
//! when the flusher is ready, going back to direct once it has caught up. A durable
//! spill counts as that flusher's acknowledgement for the checkpoint, so the checkpoint
//! and the other flushers move on; the lagging flusher still gets every entry once, in
//! order (entries it acknowledged directly are trimmed from the spilled copies). This
//! is the simplest design that keeps the file as the spool of everyone who keeps up:
//! nothing is copied to disk unless a flusher lags. Sources that cannot replay need no
//! lane: every flusher already reads the spool with its own cursor.
//!
//! # `spool = true` on a file source
//!
//! Its batches go to the spool instead of the flushers, as a stdin source's do (the
//! indices still come from the file's checkpoint), and the checkpoint moves once a
//! batch is durable there (synced under `fsync = "interval"`). The file can then be
//! deleted by rotation during a long outage without loss; the spool's feeders deliver.
//!
//! # Guarantees
//!
//! - **End-to-end acknowledgement.** A file's checkpoint moves past a line only when
//!   every flusher the source feeds has acknowledged it or a durable spool holds it for
//!   that flusher ([`file_acks`]); a `kill -9` at
//!   any moment re-reads from the checkpoint, the lines get the indices they had, and
//!   the collector drops the duplicates.
//! - **Retries and back-pressure.** A failing flusher retries its batch with backoff
//!   ([`RetryConfig`]) and is handed nothing else meanwhile; a flusher that is not ready
//!   is not handed anything. Every channel is bounded, so sources stop reading.
//! - **Graceful shutdown** ([`Agent::shutdown`]): sources stop and write their
//!   checkpoints; the batchers hand out what they hold; flushers are told to hurry
//!   (`set_urgent`), deliver what is queued and `stop`; checkpoints are written again
//!   with the last acknowledgements. Whatever is not delivered within
//!   `shutdown_timeout_ms` stays behind the checkpoint for the next start.

pub mod dead_letter;
pub mod delivery;
pub mod file_acks;
pub mod file_pipeline;
pub mod flusher_task;
pub mod numbering;
pub mod retry;
pub mod spill;
pub mod spool_pipeline;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use dead_letter::{DeadLetterConfig, DeadLetters};
pub use delivery::{AckSink, Delivery, Phase};
pub use retry::RetryConfig;
pub use spill::SpillConfig;

use crate::batcher::{BatchConfig, Batcher};
use crate::config::AgentConfig;
use crate::events::{AgentEvents, EventsRuntime, fields, kind};
use crate::flusher::FlusherError;
use crate::metrics::{AgentMetrics, SourceCounters};
use crate::sources::file::FileSourceError;
use crate::sources::registry::SourceConfig;
use crate::spool::{Spool, SpoolError};
use file_pipeline::{FilePipeline, LaneSettings, Route};
use flusher_task::FlusherTask;
use numbering::Numbering;

/// Time the shipper of the agent's events gets at shutdown when the shutdown timeout
/// is spent.
pub const EVENTS_GRACE: Duration = Duration::from_secs(2);

/// Batches queued for one flusher (per flusher, all sources together). Two keep the
/// flusher busy while the next batch is cut: measured against four in one run
/// (`weir-bench agent --scenarios tcp,blackhole --runs 3`), throughput and CPU per GiB
/// were the same or better and peak RSS about 4.5 MiB lower.
pub const FLUSHER_CHANNEL: usize = 2;

/// What stops the agent from starting or from shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flusher {name:?}: {error}")]
    Flusher {
        name: String,
        #[source]
        error: FlusherError,
    },
    #[error(transparent)]
    FileSource(#[from] FileSourceError),
    #[error("source {name:?}: {reason}")]
    Source { name: String, reason: String },
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("events: {0}")]
    Events(#[from] crate::events::EventsError),
    #[error("source {name:?}: checkpoints: {error}")]
    Checkpoint {
        name: String,
        #[source]
        error: crate::sources::file::CheckpointError,
    },
}

/// Input of the `stdin` sources (the process's standard input unless a test gives one).
pub type StdinInput = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Inputs of `stdin` sources by source name (`weir run` gives the command's stdout and
/// stderr); a `stdin` source not named here reads the process's standard input.
pub type Inputs = std::collections::HashMap<String, StdinInput>;

/// The spool and what reads it.
struct Spooled {
    spool: Spool,
    numbering: Arc<Numbering>,
    sealed: Arc<watch::Sender<bool>>,
    readers: Vec<JoinHandle<()>>,
    batchers: Vec<JoinHandle<()>>,
    inputs: Vec<JoinHandle<()>>,
}

impl Spooled {
    /// Starts the batcher of one spooled source: it numbers `items` as `stream` and
    /// appends the batches to the spool. `(terminate, stderr)`: terminate the stream
    /// when the items end; mark its log entries as stderr.
    fn start_batcher(
        &mut self,
        name: &str,
        stream: &str,
        counters: SourceCounters,
        (terminate, stderr): (bool, bool),
        items: mpsc::Receiver<spool_pipeline::SpoolItem>,
        batch: &BatchConfig,
    ) {
        let source = spool_pipeline::SpooledSource {
            name: name.to_string(),
            stream: stream.into(),
            spool: self.spool.clone(),
            numbering: self.numbering.clone(),
            counters,
            terminate,
            stderr,
        };
        self.batchers
            .push(tokio::spawn(spool_pipeline::run_spooled_batcher(
                source,
                items,
                Batcher::new(batch.clone()),
            )));
    }
}

/// A running agent.
pub struct Agent {
    phase: watch::Sender<Phase>,
    files: Vec<FilePipeline>,
    spooled: Option<Spooled>,
    flushers: Vec<(String, JoinHandle<()>)>,
    shutdown_timeout: Duration,
    metrics: Arc<AgentMetrics>,
    /// The agent's own events (see [`crate::events`]).
    events: Arc<EventsRuntime>,
}

impl Agent {
    /// Builds and initialises every flusher, then starts every source (`stdin` sources
    /// read the process's standard input).
    pub async fn start(
        config: AgentConfig,
        metrics: Arc<AgentMetrics>,
    ) -> Result<Agent, AgentError> {
        Self::start_with_inputs(config, metrics, Inputs::new()).await
    }

    /// [`Agent::start`] with `stdin` as the input of the `stdin` source.
    pub async fn start_with_stdin(
        config: AgentConfig,
        metrics: Arc<AgentMetrics>,
        stdin: StdinInput,
    ) -> Result<Agent, AgentError> {
        let mut inputs = Inputs::new();
        for (name, s) in &config.sources {
            if matches!(s, SourceConfig::Stdin(_)) {
                inputs.insert(name.clone(), stdin);
                break;
            }
        }
        Self::start_with_inputs(config, metrics, inputs).await
    }

    /// [`Agent::start`] with the given inputs for `stdin` sources.
    pub async fn start_with_inputs(
        config: AgentConfig,
        metrics: Arc<AgentMetrics>,
        stdin: Inputs,
    ) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let events = Arc::new(EventsRuntime::start(&config)?);
        events.export_metrics(&metrics);
        events.events().add(
            kind::CONFIG_LOADED,
            format!(
                "configuration loaded: {} sources, {} flushers, data dir {}",
                config.sources.len(),
                config.flushers.len(),
                config.data_dir.display()
            ),
            fields([
                ("data_dir", config.data_dir.display().to_string()),
                (
                    "sources",
                    config.sources.keys().cloned().collect::<Vec<_>>().join(","),
                ),
                (
                    "flushers",
                    config
                        .flushers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ]),
        );
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let dead_letters = Arc::new(DeadLetters::new(&config.data_dir, &config.dead_letters));
        let mut inputs: BTreeMap<String, mpsc::Sender<Delivery>> = BTreeMap::new();
        let mut flushers = Vec::new();
        for (name, spec) in &config.flushers {
            let dir = config.data_dir.join("flushers").join(name);
            let mut flusher = spec.config.build(&dir);
            flusher.init().await.map_err(|error| AgentError::Flusher {
                name: name.clone(),
                error,
            })?;
            tracing::info!(flusher = %name, describe = %flusher.describe(), "flusher ready");
            let (tx, rx) = mpsc::channel(FLUSHER_CHANNEL);
            inputs.insert(name.clone(), tx);
            let task = FlusherTask {
                name: name.clone(),
                flusher,
                rx,
                phase: phase_rx.clone(),
                retry: config.retry.clone(),
                counters: metrics.flusher(name),
                dead_letters: dead_letters.clone(),
                events: events.events().clone(),
            };
            flushers.push((name.clone(), tokio::spawn(task.run())));
        }
        let mut agent = Agent {
            phase,
            files: Vec::new(),
            spooled: None,
            flushers,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
            metrics: metrics.clone(),
            events,
        };
        let started = agent.start_sources(&config, &inputs, stdin).await;
        drop(inputs);
        match started {
            Ok(()) => {
                let live = config
                    .sources
                    .iter()
                    .filter(|(_, s)| matches!(s, SourceConfig::File(c) if !c.spool))
                    .flat_map(|(name, _)| {
                        config
                            .flushers_of(name)
                            .into_iter()
                            .map(move |f| (name.clone(), f))
                    })
                    .collect();
                spill::clean_stale_lanes(
                    &config.data_dir,
                    &live,
                    &config.spill.lane_spool(&config.spool),
                )
                .await;
                agent
                    .events
                    .events()
                    .add(kind::AGENT_STARTED, "agent started", Default::default());
                Ok(agent)
            }
            Err(e) => {
                // Stop what already runs before reporting.
                let _ = agent.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start_sources(
        &mut self,
        config: &AgentConfig,
        inputs: &BTreeMap<String, mpsc::Sender<Delivery>>,
        mut given: Inputs,
    ) -> Result<(), AgentError> {
        let mut stdin: Option<StdinInput> = Some(Box::new(tokio::io::stdin()));
        for (name, source) in &config.sources {
            match source {
                SourceConfig::File(c) => {
                    let route = if c.spool {
                        let spooled = self.spooled(config, inputs).await?;
                        Route::Spool(spooled.spool.clone())
                    } else {
                        Route::Flushers(
                            config
                                .flushers_of(name)
                                .into_iter()
                                .filter_map(|f| inputs.get(&f).cloned().map(|tx| (f, tx)))
                                .collect(),
                        )
                    };
                    let lanes = LaneSettings {
                        data_dir: config.data_dir.clone(),
                        spool: config.spool.clone(),
                        spill: config.spill.clone(),
                        phase: self.phase.subscribe(),
                    };
                    let pipeline = FilePipeline::start(
                        name,
                        c.clone(),
                        config.batch.clone(),
                        route,
                        lanes,
                        self.metrics.source(name),
                    )
                    .await?;
                    for h in &pipeline.lanes {
                        self.events.watch_spool(
                            h.lane.spool().clone(),
                            format!("spill/{name}/{}", h.lane.flusher()),
                        );
                    }
                    self.files.push(pipeline);
                }
                SourceConfig::Socket(c) => {
                    let stream = c.stream_path(name).map_err(|reason| AgentError::Source {
                        name: name.clone(),
                        reason,
                    })?;
                    let listener =
                        crate::sources::socket::bind(c).map_err(|e| AgentError::Source {
                            name: name.clone(),
                            reason: format!("cannot listen on {}: {e}", c.path.display()),
                        })?;
                    let counters = self.metrics.source(name);
                    let spooled = self.spooled(config, inputs).await?;
                    let (tx, mut rx) = mpsc::channel(file_pipeline::LINE_CHANNEL);
                    let (items_tx, items) = mpsc::channel(file_pipeline::LINE_CHANNEL);
                    spooled
                        .inputs
                        .push(tokio::spawn(crate::sources::socket::serve(
                            listener,
                            c.clone(),
                            name.clone(),
                            tx,
                        )));
                    // Accepted metrics become spool items (one hop, bounded).
                    spooled.batchers.push(tokio::spawn(async move {
                        while let Some((env, done)) = rx.recv().await {
                            if items_tx
                                .send(spool_pipeline::SpoolItem::Entry(env, done))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }));
                    spooled.start_batcher(
                        name,
                        &stream,
                        counters,
                        (false, false),
                        items,
                        &config.batch,
                    );
                }
                SourceConfig::Stdin(c) => {
                    let stream = c.stream_path(name).map_err(|reason| AgentError::Source {
                        name: name.clone(),
                        reason,
                    })?;
                    let Some(input) = given.remove(name).or_else(|| stdin.take()) else {
                        return Err(AgentError::Source {
                            name: name.clone(),
                            reason: "only one stdin source can read standard input".into(),
                        });
                    };
                    let counters = self.metrics.source(name);
                    let spooled = self.spooled(config, inputs).await?;
                    let (tx, rx) = mpsc::channel(file_pipeline::LINE_CHANNEL);
                    let max = c.max_line_bytes;
                    let source = name.clone();
                    spooled.inputs.push(tokio::spawn(async move {
                        match crate::sources::stdin::read_lines(input, max, tx).await {
                            Ok(_) => tracing::info!(source = %source, "stdin ended"),
                            Err(e) => tracing::error!(source = %source, error = %e, "reading stdin failed"),
                        }
                    }));
                    spooled.start_batcher(
                        name,
                        &stream,
                        counters,
                        (c.terminate, c.stderr),
                        rx,
                        &config.batch,
                    );
                }
            }
        }
        Ok(())
    }

    /// Opens the spool on first use, reconciles the numbering, and starts one feeder per
    /// flusher fed by a spooled source.
    async fn spooled(
        &mut self,
        config: &AgentConfig,
        inputs: &BTreeMap<String, mpsc::Sender<Delivery>>,
    ) -> Result<&mut Spooled, AgentError> {
        if self.spooled.is_none() {
            let spool = Spool::open(config.data_dir.join("spool"), config.spool.clone()).await?;
            self.events.watch_spool(spool.clone(), "spool");
            let numbering = Numbering::open(&config.data_dir).map_err(|e| AgentError::Source {
                name: "numbering".into(),
                reason: e.to_string(),
            })?;
            numbering.reconcile(&spool).await?;
            let numbering = Arc::new(numbering);
            let spooled_sources: HashSet<String> = config
                .sources
                .iter()
                .filter(|(_, s)| !matches!(s, SourceConfig::File(f) if !f.spool))
                .map(|(n, _)| n.clone())
                .collect();
            let (sealed, sealed_rx) = watch::channel(false);
            let mut readers = Vec::new();
            let mut wanted = HashSet::new();
            for (flusher, spec) in &config.flushers {
                let fed: HashSet<String> = spec
                    .inputs
                    .iter()
                    .filter(|i| spooled_sources.contains(*i))
                    .cloned()
                    .collect();
                let Some(tx) = inputs.get(flusher).filter(|_| !fed.is_empty()) else {
                    continue;
                };
                wanted.insert(flusher.clone());
                let reader = spool.reader(flusher).await?;
                let (sink, acks) =
                    spool_pipeline::SpoolAcks::start(reader.acker(), numbering.clone());
                readers.push(acks);
                readers.push(tokio::spawn(spool_pipeline::run_feeder(
                    reader,
                    fed,
                    tx.clone(),
                    sink,
                    sealed_rx.clone(),
                )));
            }
            // A flusher no longer configured must not hold records forever.
            for c in spool.stats().cursors {
                if !wanted.contains(&c.name) {
                    tracing::warn!(reader = %c.name, "removing the spool cursor of a flusher no longer configured");
                    spool.remove_reader(&c.name).await?;
                }
            }
            {
                let spool = spool.clone();
                let full = self.metrics.dropped("spool_full");
                let damaged = self.metrics.dropped("spool_damaged");
                let seen = std::sync::Mutex::new((0u64, 0u64));
                self.metrics.on_scrape(move |m| {
                    let s = spool.stats();
                    m.spool_bytes.set(s.bytes as i64);
                    m.spool_records.set(s.records as i64);
                    // The spool counts its own losses; the counters follow them.
                    let mut seen = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    full.inc_by(s.dropped_records.saturating_sub(seen.0));
                    damaged.inc_by(s.skipped_records.saturating_sub(seen.1));
                    *seen = (seen.0.max(s.dropped_records), seen.1.max(s.skipped_records));
                });
            }
            self.spooled = Some(Spooled {
                spool,
                numbering,
                sealed: Arc::new(sealed),
                readers,
                batchers: Vec::new(),
                inputs: Vec::new(),
            });
        }
        match self.spooled.as_mut() {
            Some(s) => Ok(s),
            None => unreachable!("set above"),
        }
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// The checkpoints of file source `name`.
    pub fn checkpoints(&self, name: &str) -> Option<crate::sources::file::CheckpointHandle> {
        self.files
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.checkpoints.clone())
    }

    /// Waits until every `stdin` input has ended (end of file).
    pub async fn wait_inputs(&mut self) {
        if let Some(s) = self.spooled.as_mut() {
            futures_join(std::mem::take(&mut s.inputs)).await;
        }
    }

    /// The spool, when a source uses it.
    pub fn spool(&self) -> Option<&Spool> {
        self.spooled.as_ref().map(|s| &s.spool)
    }

    /// Stops sources, delivers what is in flight (within the shutdown timeout), stops
    /// flushers and writes the checkpoints. See the [module docs](self).
    pub async fn shutdown(self) -> Result<(), AgentError> {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let events = self.events.clone();
        events
            .events()
            .add(kind::AGENT_STOPPING, "agent stopping", Default::default());
        let _ = self.phase.send(Phase::Draining);
        let mut first_error = None;
        let mut checkpoints = Vec::new();
        let mut batchers = Vec::new();
        let mut lane_feeders = Vec::new();
        let mut lane_acks = Vec::new();
        let mut lane_spools = Vec::new();
        for p in self.files {
            checkpoints.push((p.name.clone(), p.checkpoints));
            batchers.push(p.batcher);
            for l in p.lanes {
                lane_feeders.push(l.feeder);
                lane_acks.push(l.acks);
                lane_spools.push(l.lane.spool().clone());
            }
            if let Err(e) = p.source.stop().await {
                tracing::error!(source = %p.name, error = %e, "file source stopped with an error");
                first_error.get_or_insert(AgentError::from(e));
            }
        }
        let mut readers = Vec::new();
        let mut spool = None;
        if let Some(s) = self.spooled {
            for input in s.inputs {
                input.abort();
            }
            batchers.extend(s.batchers);
            readers = s.readers;
            spool = Some((s.spool, s.numbering, s.sealed));
        }
        let names: Vec<String> = self.flushers.iter().map(|(n, _)| n.clone()).collect();
        let flushers: Vec<JoinHandle<()>> = self.flushers.into_iter().map(|(_, t)| t).collect();
        let phase = self.phase;
        let sealed = spool.as_ref().map(|(_, _, s)| s.clone());
        let all = async {
            futures_join(batchers).await;
            // Every append is done: the feeders hand over what is left and end.
            if let Some(sealed) = &sealed {
                let _ = sealed.send(true);
            }
            futures_join(lane_feeders).await;
            futures_join(flushers).await;
            futures_join(readers).await;
            futures_join(lane_acks).await;
        };
        tokio::pin!(all);
        if tokio::time::timeout_at(deadline, &mut all).await.is_err() {
            tracing::warn!(flushers = ?names, "shutdown timeout: giving up on what is in flight (it stays for the next start)");
            let _ = phase.send(Phase::Abandon);
            if let Some(sealed) = &sealed {
                let _ = sealed.send(true);
            }
            if let Some((spool, _, _)) = &spool {
                // Appends waiting for room (when_full = block) give up: what they held
                // was never acknowledged to its source.
                let _ = spool.close().await;
            }
            for spool in &lane_spools {
                let _ = spool.close().await;
            }
            all.await;
        }
        for (name, c) in checkpoints {
            if let Err(error) = c.persist() {
                tracing::error!(source = %name, error = %error, "writing checkpoints at shutdown failed");
                first_error.get_or_insert(AgentError::Checkpoint { name, error });
            }
        }
        for lane in lane_spools {
            if let Err(e) = lane.close().await {
                first_error.get_or_insert(AgentError::Spool(e));
            }
        }
        if let Some((spool, numbering, _)) = spool {
            if let Err(e) = numbering.save() {
                tracing::error!(error = %e, "writing the stream numbering at shutdown failed");
            }
            if let Err(e) = spool.close().await {
                first_error.get_or_insert(AgentError::Spool(e));
            }
        }
        // The events get a moment to reach the collector even when the data used up
        // the shutdown timeout.
        events
            .stop(deadline.max(tokio::time::Instant::now() + EVENTS_GRACE))
            .await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The handle to report the agent's events with.
    pub fn events(&self) -> &AgentEvents {
        self.events.events()
    }

    /// The agent's events: its file, counts and shipper.
    pub fn events_runtime(&self) -> &Arc<EventsRuntime> {
        &self.events
    }
}

/// Awaits every task (panics are logged).
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        if let Err(e) = t.await
            && !e.is_cancelled()
        {
            tracing::error!(error = %e, "agent task failed");
        }
    }
}
