//! citypulse: one live stream from a city's Weibo, WeChat, 12345 and 110 channels.
//!
//! Every citizen report, whatever door it came through, is decoded into one [`event::Record`],
//! masked, segmented, classified and routed to the department that owns it — or to manual
//! triage when the model is not sure — and published as one [`event::Event`] on Kafka.
//!
//! # Layout
//! - [`event`]: the types between stages (`Channel`, `Record`, `Event`).
//! - [`channels`]: one pure decoder per channel, bytes → `Record` or a `DecodeError`.
//! - [`text`]: personal-data masking and keyed author hashes ([`text::mask`]); jieba-rs
//!   segmentation with the domain dictionary and stop words ([`text::segment`]).
//! - [`model`]: the category model — features, training on linfa, evaluation, loading.
//! - [`priority`]: the urgency table; [`route`]: department rules and the triage threshold.
//! - [`stages`]: decode → mask → segment → classify → route, the one path, free of I/O.
//! - [`config`]: the pipeline file, validated with every error at once.
//! - [`kafka`]: client settings, rebalance hooks, offset tracking ([`kafka::offsets`]).
//! - [`pipeline`]: wiring for `run` — consumer, workers, producer, commits, shutdown.
//! - [`process`]: wiring for `process` — lines in, lines out, around the same stages.
//! - [`assets`]: the models and dictionaries embedded in the binary, and loading them.
//! - [`detect`]: early warning — incidents, bursts, emotion surges, the alert lifecycle; pure,
//!   on event time. [`detection`]: its wiring in `run` (internal topic in, alerts out);
//!   [`inline_detection`]: the same inside stage 1, for one instance (no internal topic);
//!   [`alert_feed`]: the live feed and board behind `/alerts/stream` and `/api/alerts`.
//! - [`metrics`], [`health`], [`http`]: what an operator sees (`/metrics`, `/healthz`, `/readyz`).
//! - [`demo`]: the embedded broker, the traffic generator and the terminal summary.

pub mod alert_feed;
pub mod assets;
pub mod auth;
pub mod bench;
pub mod bench_kafka;
pub mod channels;
pub mod config;
pub mod cpu_affinity;
pub mod demo;
pub mod detect;
pub mod detection;
pub mod event;
pub mod health;
pub mod http;
pub mod ingest;
pub mod inline_detection;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod priority;
pub mod process;
pub mod route;
pub mod stages;
pub mod text;
