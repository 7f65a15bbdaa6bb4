//! The live alert feed: every alert message detection emits and every dispatcher's
//! acknowledgement, numbered, kept in a bounded ring for resumption, broadcast to
//! `/alerts/stream` subscribers, and folded into the board that `/api/alerts` serves (active
//! threads and recently resolved ones, each with its acknowledgement and its size over time).
//!
//! Sits after detection (`detect/`) in `run` and `demo`; the HTTP handlers in `http.rs` read it,
//! and the [`AckPublisher`] records acknowledgements here once the broker has them.

use crate::detect::{Alert, AlertStatus};
use crate::kafka::producer::Producer;
use crate::metrics::Metrics;
use chrono::{DateTime, FixedOffset};
use futures::StreamExt;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many past messages a reconnecting client can resume from; older ones are dropped from
/// the ring first (a client further behind gets what is left, and the board has the state).
pub const REPLAY_CAPACITY: usize = 1024;
/// Resolved threads kept on the board for `/api/alerts`; the oldest is dropped first.
pub const RECENT_CAPACITY: usize = 200;
/// Size points kept per thread for the console's sparkline. When full, the second-oldest is
/// dropped, so the curve keeps its start and its newest part.
pub const HISTORY_CAPACITY: usize = 64;
/// Messages a slow subscriber may lag behind before it is told to reconnect.
const SUBSCRIBER_BUFFER: usize = 256;
/// Longest `by` and `note` of an acknowledgement, in characters.
pub const ACK_BY_MAX_CHARS: usize = 64;
pub const ACK_NOTE_MAX_CHARS: usize = 500;

/// A dispatcher's acknowledgement of an alert thread: who took it on, and when (wall clock).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ack {
    pub alert_id: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: DateTime<FixedOffset>,
}

/// Why an acknowledgement was refused before it reached the broker.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckError {
    #[error("no alert {alert_id:?} on the board (neither active nor recently resolved)")]
    UnknownAlert { alert_id: String },
    #[error("ack field `{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("ack field `{field}` holds control characters")]
    ControlCharacters { field: &'static str },
}

impl Ack {
    /// An acknowledgement from the console's request fields, checked: `by` defaults to 值班员,
    /// both fields are trimmed, bounded and free of control characters (they end up in logs
    /// and on every other console).
    pub fn new(
        alert_id: &str,
        by: Option<&str>,
        note: Option<&str>,
        at: DateTime<FixedOffset>,
    ) -> Result<Ack, AckError> {
        let by = checked(
            "by",
            by.map(str::trim).filter(|b| !b.is_empty()),
            ACK_BY_MAX_CHARS,
        )?
        .unwrap_or("值班员");
        let note = checked(
            "note",
            note.map(str::trim).filter(|n| !n.is_empty()),
            ACK_NOTE_MAX_CHARS,
        )?;
        Ok(Ack {
            alert_id: alert_id.to_string(),
            by: by.to_string(),
            note: note.map(str::to_string),
            at,
        })
    }
}

fn checked<'a>(
    field: &'static str,
    value: Option<&'a str>,
    max: usize,
) -> Result<Option<&'a str>, AckError> {
    let Some(value) = value else { return Ok(None) };
    if value.chars().count() > max {
        return Err(AckError::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(AckError::ControlCharacters { field });
    }
    Ok(Some(value))
}

/// What one feed message carries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedItem {
    /// An alert lifecycle message from detection (SSE `event: alert`).
    Alert(Alert),
    /// A dispatcher acknowledged a thread (SSE `event: ack`).
    Ack(Ack),
}

/// One numbered feed message, as sent on the feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedMessage {
    /// Increases by one per message; the SSE `id`, so `Last-Event-ID` resumes after it.
    pub seq: u64,
    pub item: FeedItem,
}

/// The size of an alert thread at one of its messages.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SizePoint {
    pub at: DateTime<FixedOffset>,
    pub count: u64,
}

/// One thread on the board: its latest message, its acknowledgement and its size over time.
#[derive(Debug, Clone)]
struct Thread {
    alert: Alert,
    ack: Option<Ack>,
    history: VecDeque<SizePoint>,
}

impl Thread {
    fn record(&mut self, alert: Alert) {
        if self.history.len() >= HISTORY_CAPACITY {
            self.history.remove(1);
        }
        self.history.push_back(SizePoint {
            at: alert.at,
            count: alert.count,
        });
        self.alert = alert;
    }

    fn entry(&self) -> BoardEntry {
        BoardEntry {
            alert: self.alert.clone(),
            acknowledged_by: self.ack.as_ref().map(|a| a.by.clone()),
            acknowledged_at: self.ack.as_ref().map(|a| a.at),
            ack_note: self.ack.as_ref().and_then(|a| a.note.clone()),
            history: self.history.iter().copied().collect(),
        }
    }
}

#[derive(Default)]
struct FeedState {
    next_seq: u64,
    ring: VecDeque<Arc<FeedMessage>>,
    /// Threads still firing or updated, by alert id.
    active: BTreeMap<String, Thread>,
    /// Resolved threads, newest last.
    recent: VecDeque<Thread>,
}

impl FeedState {
    /// Number and remember one message; the caller broadcasts it under the same lock.
    fn push(&mut self, item: FeedItem) -> Arc<FeedMessage> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let message = Arc::new(FeedMessage { seq, item });
        self.ring.push_back(message.clone());
        if self.ring.len() > REPLAY_CAPACITY {
            self.ring.pop_front();
        }
        message
    }

    fn thread_mut(&mut self, alert_id: &str) -> Option<&mut Thread> {
        if let Some(thread) = self.active.get_mut(alert_id) {
            return Some(thread);
        }
        self.recent
            .iter_mut()
            .find(|t| t.alert.alert_id == alert_id)
    }
}

/// The feed, shared by the detection task (publishing) and the HTTP handlers (reading).
#[derive(Clone)]
pub struct AlertFeed {
    state: Arc<Mutex<FeedState>>,
    live: broadcast::Sender<Arc<FeedMessage>>,
}

/// One thread as `/api/alerts` shows it: the alert's own fields, then the console's.
#[derive(Debug, Clone, Serialize)]
pub struct BoardEntry {
    #[serde(flatten)]
    pub alert: Alert,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<FixedOffset>>,
    pub ack_note: Option<String>,
    /// The thread's size at each of its messages, oldest first (bounded).
    pub history: Vec<SizePoint>,
}

/// What `/api/alerts` returns.
#[derive(Debug, Clone, Serialize)]
pub struct AlertBoard {
    /// The seq of the newest feed message folded into this board: a console that loaded it
    /// resumes the stream right after it, with no gap and no duplicate.
    pub seq: u64,
    pub active: Vec<BoardEntry>,
    pub recent: Vec<BoardEntry>,
}

impl AlertFeed {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        AlertFeed {
            state: Arc::new(Mutex::new(FeedState {
                next_seq: 1,
                ..FeedState::default()
            })),
            live,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        // The state is updated in single steps; after a panic elsewhere it is still whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number, remember and broadcast one alert message.
    pub fn publish(&self, alert: Alert) -> u64 {
        let mut state = self.lock();
        let id = alert.alert_id.clone();
        let mut thread = match state.active.remove(&id) {
            Some(thread) => thread,
            None => {
                // A thread that fires again after resolving keeps its curve but needs a new
                // acknowledgement.
                let earlier = state
                    .recent
                    .iter()
                    .position(|t| t.alert.alert_id == id)
                    .and_then(|i| state.recent.remove(i));
                match earlier {
                    Some(mut thread) => {
                        thread.ack = None;
                        thread
                    }
                    None => Thread {
                        alert: alert.clone(),
                        ack: None,
                        history: VecDeque::new(),
                    },
                }
            }
        };
        thread.record(alert.clone());
        match alert.status {
            AlertStatus::Firing | AlertStatus::Updated => {
                state.active.insert(id, thread);
            }
            AlertStatus::Resolved => {
                state.recent.push_back(thread);
                if state.recent.len() > RECENT_CAPACITY {
                    state.recent.pop_front();
                }
            }
        }
        let message = state.push(FeedItem::Alert(alert));
        // Sent under the lock so a subscriber's backlog and live stream never overlap or gap.
        let _ = self.live.send(message.clone());
        message.seq
    }

    /// True when the thread is on the board (active or recently resolved).
    pub fn contains(&self, alert_id: &str) -> bool {
        self.lock().thread_mut(alert_id).is_some()
    }

    /// Record an acknowledgement on its thread and broadcast it (SSE `event: ack`). A later
    /// acknowledgement of the same thread replaces the earlier one.
    pub fn acknowledge(&self, ack: Ack) -> Result<u64, AckError> {
        let mut state = self.lock();
        let Some(thread) = state.thread_mut(&ack.alert_id) else {
            return Err(AckError::UnknownAlert {
                alert_id: ack.alert_id,
            });
        };
        thread.ack = Some(ack.clone());
        let message = state.push(FeedItem::Ack(ack));
        let _ = self.live.send(message.clone());
        Ok(message.seq)
    }

    /// Messages after `last_seen` still in the ring, and a receiver for everything after them.
    pub fn subscribe(
        &self,
        last_seen: Option<u64>,
    ) -> (Vec<Arc<FeedMessage>>, broadcast::Receiver<Arc<FeedMessage>>) {
        let state = self.lock();
        let backlog = match last_seen {
            Some(last) => state
                .ring
                .iter()
                .filter(|m| m.seq > last)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (backlog, self.live.subscribe())
    }

    /// Active threads (most severe, then newest first) and recently resolved ones (newest first).
    pub fn board(&self) -> AlertBoard {
        let state = self.lock();
        let mut active: Vec<BoardEntry> = state.active.values().map(Thread::entry).collect();
        active.sort_by(|a, b| {
            b.alert
                .severity
                .cmp(&a.alert.severity)
                .then(b.alert.at.cmp(&a.alert.at))
        });
        AlertBoard {
            seq: state.next_seq - 1,
            active,
            recent: state.recent.iter().rev().map(Thread::entry).collect(),
        }
    }
}

impl Default for AlertFeed {
    fn default() -> Self {
        Self::new()
    }
}

/// Acknowledgements waiting for the broker, at most this many; more answer 503 at once.
pub const ACK_QUEUE_CAPACITY: usize = 64;
/// Acknowledgements sent to the broker at the same time.
const ACK_CONCURRENCY: usize = 8;
/// How long the broker may take to acknowledge an acknowledgement before the console is told
/// it failed (librdkafka's `message.timeout.ms` for the ack producer).
pub const ACK_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an acknowledgement was not published.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckPublishError {
    #[error("too many acknowledgements waiting for the broker ({ACK_QUEUE_CAPACITY}); retry")]
    QueueFull,
    #[error("the acknowledgement publisher has stopped")]
    Stopped,
    #[error("the broker did not take the acknowledgement: {0}")]
    Broker(String),
    #[error(transparent)]
    Rejected(#[from] AckError),
}

/// The console's side of acknowledgement publishing: hands an [`Ack`] to the task that owns
/// the producer and waits until the broker has it and the feed has recorded it.
#[derive(Clone)]
pub struct AckPublisher {
    queue: mpsc::Sender<PendingAck>,
    feed: AlertFeed,
}

/// An acknowledgement on its way to the broker. Whoever drains the [`AckQueue`] finishes it with
/// [`PendingAck::delivered`] or [`PendingAck::failed`]; dropping it counts as failed.
pub struct PendingAck {
    pub ack: Ack,
    feed: AlertFeed,
    done: oneshot::Sender<Result<u64, AckPublishError>>,
}

impl PendingAck {
    /// The broker has it: record it on the feed (every console sees it) and answer the caller.
    /// Done here rather than by the caller so an acknowledgement that reached Kafka reaches the
    /// board too, even if the dispatcher's request was cancelled meanwhile.
    pub fn delivered(self) {
        let result = self
            .feed
            .acknowledge(self.ack)
            .map_err(AckPublishError::Rejected);
        let _ = self.done.send(result);
    }

    pub fn failed(self, reason: String) {
        let _ = self.done.send(Err(AckPublishError::Broker(reason)));
    }
}

/// The receiving end of an [`AckPublisher`].
pub struct AckQueue {
    receiver: mpsc::Receiver<PendingAck>,
}

impl AckQueue {
    pub async fn recv(&mut self) -> Option<PendingAck> {
        self.receiver.recv().await
    }
}

/// The Kafka message of an acknowledgement on the alerts topic (key: the alert id), beside the
/// alert lifecycle messages of the same thread.
#[derive(Debug, Serialize, Deserialize)]
pub struct AckMessage {
    pub ack: Ack,
}

impl AckPublisher {
    /// A publisher and its queue, bounded by [`ACK_QUEUE_CAPACITY`].
    pub fn new(feed: AlertFeed) -> (AckPublisher, AckQueue) {
        let (queue, receiver) = mpsc::channel(ACK_QUEUE_CAPACITY);
        (AckPublisher { queue, feed }, AckQueue { receiver })
    }

    /// A publisher producing to `kafka.alerts_topic` with the pipeline's producer settings, but
    /// a bounded delivery timeout ([`ACK_DELIVERY_TIMEOUT`]): a dispatcher waits for the answer.
    /// Needs a tokio runtime (it spawns the draining task).
    pub fn for_kafka(
        feed: AlertFeed,
        kafka: &crate::config::KafkaConfig,
        metrics: Metrics,
    ) -> rdkafka::error::KafkaResult<AckPublisher> {
        let producer: Producer = crate::kafka::producer_config(kafka)
            .set(
                "message.timeout.ms",
                ACK_DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?;
        Ok(AckPublisher::kafka(
            feed,
            producer,
            kafka.alerts_topic.clone(),
            metrics,
        ))
    }

    /// A publisher whose queue is drained by a task producing each acknowledgement to `topic`.
    /// The task ends when every publisher is dropped.
    pub fn kafka(feed: AlertFeed, producer: Producer, topic: String, metrics: Metrics) -> Self {
        let (publisher, queue) = AckPublisher::new(feed);
        tokio::spawn(drain_to_kafka(queue, producer, topic, metrics));
        publisher
    }

    /// Publish one acknowledgement; returns its feed seq once the broker acknowledged it and
    /// the feed recorded it.
    pub async fn publish(&self, ack: Ack) -> Result<u64, AckPublishError> {
        if !self.feed.contains(&ack.alert_id) {
            return Err(AckError::UnknownAlert {
                alert_id: ack.alert_id,
            }
            .into());
        }
        let (done, answer) = oneshot::channel();
        let pending = PendingAck {
            ack,
            feed: self.feed.clone(),
            done,
        };
        self.queue.try_send(pending).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => AckPublishError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => AckPublishError::Stopped,
        })?;
        answer.await.map_err(|_| AckPublishError::Stopped)?
    }
}

/// Produce each queued acknowledgement to `topic` and finish it when the broker answers.
pub async fn drain_to_kafka(queue: AckQueue, producer: Producer, topic: String, metrics: Metrics) {
    let pending = futures::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|pending| (pending, queue))
    });
    pending
        .for_each_concurrent(ACK_CONCURRENCY, |pending| {
            let (producer, topic, metrics) = (&producer, &topic, &metrics);
            async move {
                let payload = match serde_json::to_vec(&AckMessage {
                    ack: pending.ack.clone(),
                }) {
                    Ok(payload) => payload,
                    Err(error) => return pending.failed(format!("cannot serialise: {error}")),
                };
                let record = FutureRecord::to(topic)
                    .key(&pending.ack.alert_id)
                    .payload(&payload);
                match producer.send(record, ACK_DELIVERY_TIMEOUT).await {
                    Ok(_) => {
                        tracing::info!(alert_id = %pending.ack.alert_id, by = %pending.ack.by, "alert acknowledged");
                        pending.delivered();
                    }
                    Err((error, _)) => {
                        metrics.delivery_failures.with_label_values(&["alert"]).inc();
                        tracing::error!(%error, alert_id = %pending.ack.alert_id, "acknowledgement not delivered");
                        pending.failed(error.to_string());
                    }
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{AlertKind, Severity};
    use chrono::DateTime;

    fn alert(id: &str, status: AlertStatus, minute: u32) -> Alert {
        let at =
            DateTime::parse_from_rfc3339(&format!("2026-11-25T10:{minute:02}:00+08:00")).unwrap();
        Alert {
            alert_id: id.into(),
            kind: AlertKind::Incident,
            status,
            severity: Severity::Warning,
            district: Some("雨花区".into()),
            category: Some("城乡建设".into()),
            terms: vec!["停水".into()],
            count: 12,
            baseline: 0.5,
            channels: vec![],
            first_seen: at,
            last_seen: at,
            at,
            event_ids: vec![],
            incident_id: None,
        }
    }

    #[test]
    fn board_moves_resolved_threads_to_recent() {
        let feed = AlertFeed::new();
        feed.publish(alert("a", AlertStatus::Firing, 1));
        feed.publish(alert("b", AlertStatus::Firing, 2));
        feed.publish(alert("a", AlertStatus::Updated, 3));
        let board = feed.board();
        assert_eq!(board.active.len(), 2);
        assert_eq!(
            board.active[0].alert.alert_id, "a",
            "newest first among equals"
        );
        feed.publish(alert("a", AlertStatus::Resolved, 4));
        let board = feed.board();
        assert_eq!(board.active.len(), 1);
        assert_eq!(board.recent.len(), 1);
        assert_eq!(board.recent[0].alert.status, AlertStatus::Resolved);
    }

    #[tokio::test]
    async fn resuming_replays_only_what_came_after_the_last_seen_id() {
        let feed = AlertFeed::new();
        for minute in 0..5 {
            feed.publish(alert(&format!("x{minute}"), AlertStatus::Firing, minute));
        }
        let (backlog, mut live) = feed.subscribe(Some(3));
        assert_eq!(
            backlog.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        feed.publish(alert("y", AlertStatus::Firing, 9));
        assert_eq!(live.recv().await.unwrap().seq, 6);
        let (backlog, _) = feed.subscribe(None);
        assert!(
            backlog.is_empty(),
            "a new client starts live; the board has the state"
        );
    }

    #[test]
    fn ring_and_recent_list_are_bounded() {
        let feed = AlertFeed::new();
        for i in 0..(REPLAY_CAPACITY + 10) {
            feed.publish(alert(&format!("r{i}"), AlertStatus::Resolved, 0));
        }
        let (backlog, _) = feed.subscribe(Some(0));
        assert_eq!(backlog.len(), REPLAY_CAPACITY);
        assert_eq!(backlog[0].seq, 11);
        assert_eq!(feed.board().recent.len(), RECENT_CAPACITY);
    }

    fn sized(id: &str, status: AlertStatus, minute: u32, count: u64) -> Alert {
        Alert {
            count,
            ..alert(id, status, minute)
        }
    }

    fn ack(id: &str, by: &str) -> Ack {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:30:00+08:00").unwrap();
        Ack::new(id, Some(by), Some("已派单"), at).unwrap()
    }

    #[test]
    fn board_keeps_each_threads_size_over_time_through_resolution() {
        let feed = AlertFeed::new();
        feed.publish(sized("a", AlertStatus::Firing, 1, 5));
        feed.publish(sized("a", AlertStatus::Updated, 3, 9));
        feed.publish(sized("a", AlertStatus::Resolved, 9, 9));
        let board = feed.board();
        let counts: Vec<u64> = board.recent[0].history.iter().map(|p| p.count).collect();
        assert_eq!(counts, vec![5, 9, 9]);
        assert_eq!(board.recent[0].history[1].at.format("%M").to_string(), "03");
    }

    #[test]
    fn history_is_bounded_and_keeps_its_start() {
        let feed = AlertFeed::new();
        for i in 0..(HISTORY_CAPACITY as u64 + 20) {
            feed.publish(sized("a", AlertStatus::Updated, 1, i + 1));
        }
        let history = &feed.board().active[0].history;
        assert_eq!(history.len(), HISTORY_CAPACITY);
        assert_eq!(history[0].count, 1, "the first point stays");
        assert_eq!(
            history[HISTORY_CAPACITY - 1].count,
            HISTORY_CAPACITY as u64 + 20
        );
    }

    #[tokio::test]
    async fn acknowledging_marks_the_thread_and_is_broadcast_in_order() {
        let feed = AlertFeed::new();
        feed.publish(alert("a", AlertStatus::Firing, 1));
        let (_, mut live) = feed.subscribe(None);
        let seq = feed.acknowledge(ack("a", "张三")).unwrap();
        assert_eq!(seq, 2);
        let message = live.recv().await.unwrap();
        match &message.item {
            FeedItem::Ack(ack) => {
                assert_eq!((ack.alert_id.as_str(), ack.by.as_str()), ("a", "张三"))
            }
            other => panic!("expected an ack, got {other:?}"),
        }
        let entry = &feed.board().active[0];
        assert_eq!(entry.acknowledged_by.as_deref(), Some("张三"));
        assert_eq!(entry.ack_note.as_deref(), Some("已派单"));
        assert!(entry.acknowledged_at.is_some());
        // The acknowledgement survives updates and resolution of the same thread …
        feed.publish(alert("a", AlertStatus::Updated, 2));
        feed.publish(alert("a", AlertStatus::Resolved, 3));
        assert_eq!(
            feed.board().recent[0].acknowledged_by.as_deref(),
            Some("张三")
        );
        // … but a thread that fires again needs a new one.
        feed.publish(alert("a", AlertStatus::Firing, 4));
        let board = feed.board();
        assert!(board.recent.is_empty());
        assert_eq!(board.active[0].acknowledged_by, None);
        assert_eq!(board.active[0].history.len(), 4, "the curve continues");
    }

    #[test]
    fn unknown_alerts_cannot_be_acknowledged() {
        let feed = AlertFeed::new();
        feed.publish(alert("a", AlertStatus::Firing, 1));
        assert_eq!(
            feed.acknowledge(ack("nope", "张三")),
            Err(AckError::UnknownAlert {
                alert_id: "nope".into()
            })
        );
        assert_eq!(feed.board().seq, 1, "a refused ack is not numbered");
    }

    #[test]
    fn ack_fields_are_trimmed_defaulted_and_bounded() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:30:00+08:00").unwrap();
        let ack = Ack::new("a", Some("  "), Some(" 已派单 "), at).unwrap();
        assert_eq!(
            (ack.by.as_str(), ack.note.as_deref()),
            ("值班员", Some("已派单"))
        );
        let long = "长".repeat(ACK_BY_MAX_CHARS + 1);
        assert_eq!(
            Ack::new("a", Some(&long), None, at),
            Err(AckError::TooLong {
                field: "by",
                max: ACK_BY_MAX_CHARS
            })
        );
        assert_eq!(
            Ack::new("a", None, Some("a\u{1b}[31m"), at),
            Err(AckError::ControlCharacters { field: "note" })
        );
    }

    #[tokio::test]
    async fn publisher_records_only_what_the_broker_took() {
        let feed = AlertFeed::new();
        feed.publish(alert("a", AlertStatus::Firing, 1));
        let (publisher, mut queue) = AckPublisher::new(feed.clone());
        // A stand-in for the broker: takes the first acknowledgement, refuses the second.
        let broker = tokio::spawn(async move {
            queue.recv().await.unwrap().delivered();
            queue.recv().await.unwrap().failed("broker down".into());
        });
        assert_eq!(publisher.publish(ack("a", "张三")).await, Ok(2));
        assert_eq!(
            publisher.publish(ack("a", "李四")).await,
            Err(AckPublishError::Broker("broker down".into()))
        );
        broker.await.unwrap();
        assert_eq!(
            feed.board().active[0].acknowledged_by.as_deref(),
            Some("张三"),
            "the refused one is not on the board"
        );
        assert_eq!(
            publisher.publish(ack("zzz", "张三")).await,
            Err(AckPublishError::Rejected(AckError::UnknownAlert {
                alert_id: "zzz".into()
            })),
            "unknown alerts never reach the broker"
        );
        assert_eq!(
            publisher.publish(ack("a", "王五")).await,
            Err(AckPublishError::Stopped),
            "the queue's drain has ended"
        );
    }

    #[test]
    fn a_full_queue_answers_at_once() {
        let feed = AlertFeed::new();
        feed.publish(alert("a", AlertStatus::Firing, 1));
        let (publisher, _queue) = AckPublisher::new(feed);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut waiting = Vec::new();
        for _ in 0..ACK_QUEUE_CAPACITY {
            let publisher = publisher.clone();
            waiting.push(runtime.spawn(async move { publisher.publish(ack("a", "张三")).await }));
        }
        runtime.block_on(async {
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        });
        let refused = runtime.block_on(publisher.publish(ack("a", "张三")));
        assert_eq!(refused, Err(AckPublishError::QueueFull));
        drop(waiting);
    }
}
