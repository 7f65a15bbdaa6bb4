//! The producer every citypulse component writes to Kafka with (stage 1's internal and output
//! topics, stage 2's outputs and alerts, the ingest endpoint, the alert feed's acknowledgements,
//! the demo's traffic and `bench-kafka`): librdkafka's producer behind one future per record,
//! like rdkafka's `FutureProducer`, but with a thread that sleeps until there is work.
//!
//! Why not `FutureProducer`: its thread serves librdkafka's events by polling in 100 ms slices,
//! and in the last millisecond of every slice the remaining time rounds down to a 0 ms timeout,
//! so the poll spins until the slice ends (rdkafka 0.39, `Timeout::as_millis`). That is ~0.8 %
//! of a core per producer, busy or idle: in `citypulse demo` the five producers' polling
//! threads took 1.48 of the process's 2.86 CPU-seconds over 40 s (README, Performance).
//!
//! Here librdkafka calls back when an event lands in the producer's empty event queue; the
//! callback unparks the thread, which serves exactly what is queued and parks again. The
//! delivery results are rdkafka's own types ([`OwnedDeliveryResult`]), so callers read them as
//! they would from `FutureProducer`.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::bindings as rdsys;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{OwnedMessage, ToBytes};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext,
};
use rdkafka::{ClientConfig, ClientContext, Message, Timestamp};

/// Longest the serving thread sleeps without a wake-up. It needs none: librdkafka's callback
/// and the producer's drop both unpark it. This only bounds the delay should a wake-up ever
/// be lost, at a few microseconds of CPU a second.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// How long a send waits before retrying a record the full local queue refused.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(2);

/// Sends each delivery result to the future of its record.
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // The caller may have stopped waiting (shutdown); its result is then of no use.
        let _ = tx.send(owned);
    }
}

/// The outcome of one record: rdkafka's delivery result, or `Canceled` when the producer was
/// dropped before librdkafka reported it.
pub struct DeliveryFuture(oneshot::Receiver<OwnedDeliveryResult>);

impl Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, oneshot::Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// A producer; clones share one librdkafka client and one serving thread.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    base: Arc<BaseProducer<DeliveryContext>>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
    /// The producer's event queue with librdkafka's wake-up callback set; released after the
    /// serving thread has stopped.
    wake_up: Option<WakeUp>,
}

impl FromClientConfig for Producer {
    /// A producer with this configuration (see `crate::kafka::producer_config`).
    fn from_config(config: &ClientConfig) -> KafkaResult<Producer> {
        let base = Arc::new(BaseProducer::from_config_and_context(
            config,
            DeliveryContext,
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let base = Arc::clone(&base);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("producer-events".to_string())
                .spawn(move || serve_events(&base, &stop))
                .map_err(|error| {
                    KafkaError::ClientCreation(format!(
                        "cannot start the producer's event thread: {error}"
                    ))
                })?
        };
        let wake_up = WakeUp::enable(&base, server.thread().clone());
        // Whatever was queued before the callback was set is served now, not at the next tick.
        server.thread().unpark();
        Ok(Producer {
            shared: Arc::new(Shared {
                base,
                stop,
                server: Some(server),
                wake_up: Some(wake_up),
            }),
        })
    }
}

impl Producer {
    /// Queues `record`; its future resolves when the broker acknowledged it or librdkafka gave
    /// up. A record the local queue cannot take now (full, too large …) comes straight back
    /// with the error.
    #[allow(clippy::result_large_err)] // the record handed back, as rdkafka's own API does
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base_record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.shared.base.send(base_record) {
            Ok(()) => Ok(DeliveryFuture(rx)),
            Err((error, returned)) => Err((
                error,
                FutureRecord {
                    topic: returned.topic,
                    partition: returned.partition,
                    payload: returned.payload,
                    key: returned.key,
                    timestamp: returned.timestamp,
                    headers: returned.headers,
                },
            )),
        }
    }

    /// [`Self::send_result`], waiting while the local queue is full — it is bounded, so a slow
    /// broker slows the sender down instead of growing memory — for up to `queue_timeout`
    /// (`None`: as long as it takes). Any other refusal comes back at once.
    #[allow(clippy::result_large_err)] // as `send_result`
    pub async fn send_when_queued<'a, K, P>(
        &self,
        mut record: FutureRecord<'a, K, P>,
        queue_timeout: Option<Duration>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        loop {
            match self.send_result(record) {
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if queue_timeout.is_none_or(|limit| started.elapsed() < limit) =>
                {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_RETRY).await;
                }
                queued_or_refused => return queued_or_refused,
            }
        }
    }

    /// [`Self::send_when_queued`] without a time limit, for threads outside the async runtime:
    /// blocks the calling thread while the local queue is full.
    #[allow(clippy::result_large_err)] // as `send_result`
    pub fn send_when_queued_blocking<'a, K, P>(
        &self,
        mut record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match self.send_result(record) {
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(QUEUE_FULL_RETRY);
                }
                queued_or_refused => return queued_or_refused,
            }
        }
    }

    /// Sends `record` and waits for its delivery result. While the local queue is full it
    /// retries for up to `queue_timeout`, then reports `QueueFull` for the record.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        match self.send_when_queued(record, Some(queue_timeout)).await {
            Ok(delivery) => match delivery.await {
                Ok(result) => result,
                // The producer went before librdkafka reported on the record.
                Err(_canceled) => Err((KafkaError::Canceled, empty_message())),
            },
            Err((error, returned)) => Err((error, owned(returned))),
        }
    }

    /// Waits up to `timeout` until every queued record was acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.shared.base.flush(timeout)
    }

    /// Records queued, in flight, or acknowledged but with their delivery report still being
    /// served: librdkafka counts a record until its report event is destroyed, which is just
    /// after the record's future resolves, so this may lag a resolved future by an instant.
    pub fn in_flight_count(&self) -> i32 {
        self.shared.base.in_flight_count()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(server) = self.server.take() {
            server.thread().unpark();
            if server.join().is_err() {
                tracing::error!("the producer's event thread panicked");
            }
        }
        // Only now, with no thread left to wake, may the callback's target go. The base producer
        // is dropped after this: it purges what is still queued and serves those results itself.
        self.wake_up.take();
    }
}

/// Serves the producer's events as librdkafka queues them: delivery results resolve their
/// futures, errors and statistics reach the client context.
fn serve_events(base: &BaseProducer<DeliveryContext>, stop: &AtomicBool) {
    let queue = EventQueue::of(base);
    loop {
        let pending = queue.len();
        if pending == 0 {
            if stop.load(Ordering::Acquire) {
                return;
            }
            // An event queued after `len` read 0 has unparked us already: no wake-up is lost.
            std::thread::park_timeout(IDLE_WAKE);
            continue;
        }
        for _ in 0..pending {
            // A zero timeout serves one event at most and never spins (see the module doc).
            base.poll(Duration::ZERO);
        }
    }
}

/// A handle on a producer's event queue (librdkafka's main queue), released on drop.
struct EventQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka queue handles may be used from any thread.
unsafe impl Send for EventQueue {}

impl EventQueue {
    fn of(base: &BaseProducer<DeliveryContext>) -> Self {
        // SAFETY: the client pointer is valid while `base` lives, which outlives the handle
        // (the handle holds its own reference on the queue).
        EventQueue(unsafe { rdsys::rd_kafka_queue_get_main(base.client().native_ptr()) })
    }

    fn len(&self) -> usize {
        // SAFETY: the handle is valid until dropped.
        unsafe { rdsys::rd_kafka_queue_length(self.0) }
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_main` and is released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
    }
}

/// librdkafka's "an event was queued on the empty queue" callback, set to unpark the serving
/// thread; removed before the thread handle it points to is freed.
struct WakeUp {
    queue: EventQueue,
    thread: *mut Thread,
}

// SAFETY: only the pointer's owner (this value) frees it, after librdkafka stopped using it.
unsafe impl Send for WakeUp {}
unsafe impl Sync for WakeUp {}

impl WakeUp {
    fn enable(base: &BaseProducer<DeliveryContext>, thread: Thread) -> Self {
        let queue = EventQueue::of(base);
        let thread = Box::into_raw(Box::new(thread));
        // SAFETY: `thread` stays valid until `drop` has removed the callback.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(queue.0, Some(unpark), thread.cast::<c_void>())
        };
        WakeUp { queue, thread }
    }
}

impl Drop for WakeUp {
    fn drop(&mut self) {
        // SAFETY: librdkafka calls the callback under the queue's lock, which removing it takes
        // too: once this returns, no call is running or will start, and the box can go.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.0, None, std::ptr::null_mut());
            drop(Box::from_raw(self.thread));
        }
    }
}

/// Called by librdkafka, from its own threads, when an event lands in the empty queue.
unsafe extern "C" fn unpark(_client: *mut rdsys::rd_kafka_t, thread: *mut c_void) {
    // SAFETY: `thread` is the `Thread` that `WakeUp` owns and keeps alive while the callback
    // is set.
    let thread = unsafe { &*thread.cast::<Thread>() };
    thread.unpark();
}

/// The record handed back with an error, as the owned message rdkafka's results carry.
fn owned<K, P>(record: FutureRecord<'_, K, P>) -> OwnedMessage
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    OwnedMessage::new(
        record.payload.map(|p| p.to_bytes().to_vec()),
        record.key.map(|k| k.to_bytes().to_vec()),
        record.topic.to_owned(),
        record
            .timestamp
            .map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
        record.partition.unwrap_or(-1),
        0,
        record.headers,
    )
}

/// Stands for the record of a delivery that was canceled: the producer went away with it.
fn empty_message() -> OwnedMessage {
    OwnedMessage::new(
        None,
        None,
        String::new(),
        Timestamp::NotAvailable,
        -1,
        0,
        None,
    )
}
