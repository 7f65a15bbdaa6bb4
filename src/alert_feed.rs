//! The live alert feed: every alert message detection emits, numbered, kept in a bounded ring for
//! resumption, broadcast to `/alerts/stream` subscribers, and folded into the board that
//! `/api/alerts` serves (active threads and recently resolved ones).
//!
//! Sits after detection (`detect/`) in `run` and `demo`; the HTTP handlers in `http.rs` read it.

use crate::detect::{Alert, AlertStatus};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many past messages a reconnecting client can resume from; older ones are dropped from
/// the ring first (a client further behind gets what is left, and the board has the state).
pub const REPLAY_CAPACITY: usize = 1024;
/// Resolved threads kept on the board for `/api/alerts`; the oldest is dropped first.
pub const RECENT_CAPACITY: usize = 200;
/// Messages a slow subscriber may lag behind before it is told to reconnect.
const SUBSCRIBER_BUFFER: usize = 256;

/// One numbered alert message, as sent on the feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedMessage {
    /// Increases by one per message; the SSE `id`, so `Last-Event-ID` resumes after it.
    pub seq: u64,
    pub alert: Alert,
}

#[derive(Default)]
struct FeedState {
    next_seq: u64,
    ring: VecDeque<Arc<FeedMessage>>,
    /// Latest message of each thread that is still firing or updated, by alert id.
    active: BTreeMap<String, Alert>,
    /// Latest message of resolved threads, newest last.
    recent: VecDeque<Alert>,
}

/// The feed, shared by the detection task (publishing) and the HTTP handlers (reading).
#[derive(Clone)]
pub struct AlertFeed {
    state: Arc<Mutex<FeedState>>,
    live: broadcast::Sender<Arc<FeedMessage>>,
}

/// What `/api/alerts` returns.
#[derive(Debug, Clone, Serialize)]
pub struct AlertBoard {
    pub active: Vec<Alert>,
    pub recent: Vec<Alert>,
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
        let seq = state.next_seq;
        state.next_seq += 1;
        match alert.status {
            AlertStatus::Firing | AlertStatus::Updated => {
                state.active.insert(alert.alert_id.clone(), alert.clone());
            }
            AlertStatus::Resolved => {
                state.active.remove(&alert.alert_id);
                state.recent.retain(|a| a.alert_id != alert.alert_id);
                state.recent.push_back(alert.clone());
                if state.recent.len() > RECENT_CAPACITY {
                    state.recent.pop_front();
                }
            }
        }
        let message = Arc::new(FeedMessage { seq, alert });
        state.ring.push_back(message.clone());
        if state.ring.len() > REPLAY_CAPACITY {
            state.ring.pop_front();
        }
        // Sent under the lock so a subscriber's backlog and live stream never overlap or gap.
        let _ = self.live.send(message);
        seq
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
        let mut active: Vec<Alert> = state.active.values().cloned().collect();
        active.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.at.cmp(&a.at)));
        AlertBoard {
            active,
            recent: state.recent.iter().rev().cloned().collect(),
        }
    }
}

impl Default for AlertFeed {
    fn default() -> Self {
        Self::new()
    }
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
        assert_eq!(board.active[0].alert_id, "a", "newest first among equals");
        feed.publish(alert("a", AlertStatus::Resolved, 4));
        let board = feed.board();
        assert_eq!(board.active.len(), 1);
        assert_eq!(board.recent.len(), 1);
        assert_eq!(board.recent[0].status, AlertStatus::Resolved);
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
}
