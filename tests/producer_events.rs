//! citypulse's producer (`kafka::producer`) against the embedded broker (librdkafka's mock
//! cluster, over the Kafka protocol): every record's future resolves with what the broker did
//! with it, pending records are settled when the producer goes, and the thread that serves
//! librdkafka's events sleeps while there are none.
//!
//! One test at a time (`SERIAL`): the idle test reads the CPU time of the threads named
//! `producer-events`, which must then be its own producer's.

use citypulse::kafka::producer::{DeliveryFuture, Producer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::Duration;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster starts");
    cluster.create_topic("out", 1, 1).expect("topic created");
    cluster
}

fn config(cluster: &MockCluster<'static, DefaultProducerContext>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "1");
    config
}

/// A producer whose broker is down, so its records wait until librdkafka's
/// `message.timeout.ms` (or the producer's drop) settles them.
fn producer_to_a_down_broker(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    message_timeout_ms: &str,
) -> Producer {
    let producer: Producer = config(cluster)
        .set("message.timeout.ms", message_timeout_ms)
        .create()
        .expect("producer");
    cluster.broker_down(1).expect("broker down");
    producer
}

/// Queues `payload` on the topic `out`.
fn queue(producer: &Producer, payload: &[u8]) -> DeliveryFuture {
    let record = FutureRecord::<str, _>::to("out").key("k").payload(payload);
    producer
        .send_result(record)
        .map_err(|(error, _)| error)
        .expect("the local queue takes the record")
}

#[tokio::test]
async fn each_record_resolves_with_its_partition_and_offset() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster();
    let producer: Producer = config(&cluster).create().expect("producer");
    let futures: Vec<DeliveryFuture> = (0..5)
        .map(|i| queue(&producer, format!("record {i}").as_bytes()))
        .collect();
    let mut offsets = Vec::new();
    for future in futures {
        let delivery = tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .expect("resolved in time")
            .expect("not canceled")
            .expect("delivered");
        assert_eq!(delivery.partition, 0);
        offsets.push(delivery.offset);
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    let awaited = producer
        .send(
            FutureRecord::<str, _>::to("out").payload("after".as_bytes()),
            Duration::from_secs(1),
        )
        .await
        .expect("delivered");
    assert_eq!(awaited.offset, 5);
    // librdkafka drops a record from its count once the delivery report is served, an instant
    // after the future resolved.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while producer.in_flight_count() != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(producer.in_flight_count(), 0);
}

#[tokio::test]
async fn a_delivery_wakes_the_sleeping_event_thread() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster();
    let producer: Producer = config(&cluster).create().expect("producer");
    // Warm up the connection; the event thread then falls asleep between records.
    let delivered = |payload: &'static [u8]| async {
        queue(&producer, payload)
            .await
            .expect("not canceled")
            .expect("delivered")
    };
    delivered(b"first").await;
    // Each record is served on librdkafka's wake-up, not on the thread's 1 s fallback tick:
    // were wake-ups lost, each would wait a uniform 0–1 s, and all four staying below 250 ms
    // would have odds of 0.4 %.
    let mut slowest = Duration::ZERO;
    for pause_ms in [1300, 1700, 1100, 1450] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let started = std::time::Instant::now();
        delivered(b"again").await;
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(250),
        "slowest delivery took {slowest:?}"
    );
}

#[tokio::test]
async fn a_record_the_broker_never_takes_fails_with_the_timeout() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster();
    let producer = producer_to_a_down_broker(&cluster, "800");
    let future = queue(&producer, b"lost");
    let result = tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the failure is reported, not left hanging")
        .expect("not canceled");
    let (error, message) = result.expect_err("the broker was down");
    assert!(
        matches!(error, KafkaError::MessageProduction(_)),
        "unexpected error {error:?}"
    );
    assert_eq!(rdkafka::Message::payload(&message), Some(&b"lost"[..]));
}

#[tokio::test]
async fn dropping_the_producer_settles_what_it_still_holds() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster();
    let producer = producer_to_a_down_broker(&cluster, "60000");
    let future = queue(&producer, b"pending");
    drop(producer);
    let settled = tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("settled when the producer went, not after the 60 s delivery timeout");
    assert!(
        !matches!(settled, Ok(Ok(_))),
        "a record the broker never saw cannot have been delivered"
    );
}

#[tokio::test]
async fn a_full_local_queue_is_waited_on_for_as_long_as_asked() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster();
    // Room for one record, which waits on the down broker until its 800 ms timeout.
    let producer: Producer = config(&cluster)
        .set("queue.buffering.max.messages", "1")
        .set("message.timeout.ms", "800")
        .create()
        .expect("producer");
    cluster.broker_down(1).expect("broker down");
    let first = queue(&producer, b"first");

    let record = |payload: &'static [u8]| FutureRecord::<str, _>::to("out").payload(payload);
    let started = std::time::Instant::now();
    let (error, returned) = producer
        .send_when_queued(record(b"refused"), Some(Duration::from_millis(200)))
        .await
        .err()
        .expect("no room within 200 ms");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(
        matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        ),
        "unexpected error {error:?}"
    );
    assert_eq!(returned.payload, Some(&b"refused"[..]));

    // Without a limit it waits until the first record's timeout frees the queue.
    let queued = tokio::time::timeout(
        Duration::from_secs(10),
        producer.send_when_queued(record(b"waited"), None),
    )
    .await
    .expect("queued once the first record timed out");
    assert!(queued.is_ok(), "the second record was refused");
    let first = first.await.expect("not canceled");
    assert!(first.is_err(), "the broker was down");
}

/// Nanoseconds on the CPU, summed over this process's threads with this name.
fn cpu_ns_of_threads(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let path = task.expect("task entry").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn an_idle_producer_leaves_the_cpu_alone() {
    let _serial = SERIAL.blocking_lock();
    let cluster = cluster();
    let idle = Duration::from_secs(3);

    let producer: Producer = config(&cluster).create().expect("producer");
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ns_of_threads("producer-events");
    std::thread::sleep(idle);
    let ours = cpu_ns_of_threads("producer-events") - before;
    drop(producer);

    // rdkafka's own, for the record only: its polling thread spins in the last millisecond of
    // every 100 ms poll (the module doc of `kafka::producer`).
    let theirs: FutureProducer = config(&cluster).create().expect("producer");
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ns_of_threads("producer pollin");
    std::thread::sleep(idle);
    let rdkafka = cpu_ns_of_threads("producer pollin") - before;
    drop(theirs);
    eprintln!(
        "CPU over {idle:?} idle: citypulse's event thread {:.2} ms, rdkafka's FutureProducer \
         polling thread {:.2} ms",
        ours as f64 / 1e6,
        rdkafka as f64 / 1e6
    );

    // Parked between events, with a 1 s timeout: it wakes about three times here.
    assert!(
        ours < 3_000_000,
        "the event thread used {:.2} ms of CPU while idle",
        ours as f64 / 1e6
    );
}
