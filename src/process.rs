//! Wiring for `process`: lines in, lines out, around the same stages as `run`.
//!
//! With a channel, each line is one raw record of that channel (a WeChat line is one XML
//! document). Without one, each line is an envelope `{"channel": CH, "record": R}` where `R` is
//! the record's JSON value, or for WeChat its XML as a JSON string. Each input line gives one
//! output line: the event, `{"error": …, "reason": …, "line": N}` for a bad line, or
//! `{"skipped": …, "line": N}` for a record that is not a citizen report. Blank lines are
//! passed over. Detection runs in line on event time: each alert message an event causes
//! follows that event as a line `{"alert": {…}}`, so replaying the same input gives the same
//! alerts every time.

use crate::channels::MAX_RECORD_BYTES;
use crate::detect::Detector;
use crate::detection::detect_input;
use crate::event::Channel;
use crate::pipeline::china_standard_time;
use crate::stages::{Outcome, Stages};
use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{self, BufRead, Write};

/// Lines longer than this are not buffered: they are reported as too large and skipped to the
/// next newline, so one huge line cannot exhaust memory. Envelopes wrap a record, hence the
/// headroom over [`MAX_RECORD_BYTES`].
const MAX_LINE_BYTES: usize = MAX_RECORD_BYTES + 64 * 1024;

/// What a run of `process` did, for the summary line on stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessSummary {
    pub lines: u64,
    pub routed: u64,
    pub triaged: u64,
    pub ignored: u64,
    pub skipped: u64,
    pub errors: u64,
    pub alerts: u64,
}

impl ProcessSummary {
    /// True when there was input and not one line of it was a good record: most likely the
    /// wrong `--channel` or the wrong file, which the exit code should say.
    pub fn nothing_good(&self) -> bool {
        self.lines > 0 && self.routed + self.triaged + self.ignored + self.skipped == 0
    }
}

/// The envelope of one line when no channel is given.
#[derive(Deserialize)]
struct Envelope<'a> {
    channel: String,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// Process every line of `input`, writing one JSON line per record to `output`.
pub fn process_lines(
    stages: &Stages,
    mut detector: Option<&mut Detector>,
    channel: Option<Channel>,
    mut input: impl BufRead,
    output: impl Write,
) -> io::Result<ProcessSummary> {
    let mut output = io::BufWriter::new(output);
    let mut summary = ProcessSummary::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    let cst = china_standard_time();
    while let Some(length) = read_bounded_line(&mut input, &mut line, MAX_LINE_BYTES)? {
        number += 1;
        if length <= MAX_LINE_BYTES && line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.lines += 1;
        let result = if length > MAX_LINE_BYTES {
            Err((
                "too_large",
                format!("line is {length} bytes, over the {MAX_LINE_BYTES}-byte limit"),
            ))
        } else {
            record_of_line(channel, &line)
        };
        let json = match result {
            Ok((channel, bytes)) => {
                let received_at = Utc::now().with_timezone(&cst);
                match stages.process(channel, &bytes, None, received_at) {
                    Outcome::Event { mut event, tokens } => {
                        match event.route {
                            crate::event::Route::Routed => summary.routed += 1,
                            crate::event::Route::Triage => summary.triaged += 1,
                            crate::event::Route::Ignored => summary.ignored += 1,
                        }
                        let alerts = match detector.as_deref_mut() {
                            Some(detector) => {
                                let observation = detector.observe(&detect_input(&event, &tokens));
                                event.incident_id = observation.incident_id;
                                observation.alerts
                            }
                            None => Vec::new(),
                        };
                        serde_json::to_writer(&mut output, &*event).map_err(io::Error::other)?;
                        output.write_all(b"\n")?;
                        for alert in alerts {
                            summary.alerts += 1;
                            serde_json::to_writer(
                                &mut output,
                                &serde_json::json!({"alert": alert}),
                            )
                            .map_err(io::Error::other)?;
                            output.write_all(b"\n")?;
                        }
                        continue;
                    }
                    Outcome::Skipped { reason } => {
                        summary.skipped += 1;
                        serde_json::json!({"skipped": reason, "line": number})
                    }
                    Outcome::DeadLetter(dead) => {
                        summary.errors += 1;
                        serde_json::json!({"error": dead.message, "reason": dead.reason, "line": number})
                    }
                }
            }
            Err((reason, message)) => {
                summary.errors += 1;
                serde_json::json!({"error": message, "reason": reason, "line": number})
            }
        };
        serde_json::to_writer(&mut output, &json).map_err(io::Error::other)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(summary)
}

/// The channel and raw bytes of one line, or why the line is not a record.
fn record_of_line(
    channel: Option<Channel>,
    line: &[u8],
) -> Result<(Channel, Vec<u8>), (&'static str, String)> {
    if let Some(channel) = channel {
        return Ok((channel, line.to_vec()));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        (
            "invalid_utf8",
            format!("envelope is not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| {
        (
            "invalid_envelope",
            format!(
                "envelope must be {{\"channel\": CH, \"record\": R}}: {e} (column {})",
                e.column()
            ),
        )
    })?;
    let channel: Channel = envelope
        .channel
        .parse()
        .map_err(|e| ("invalid_envelope", format!("envelope field `channel`: {e}")))?;
    let raw = envelope.record.get();
    // A record given as a JSON string is the raw text (always so for WeChat's XML).
    let bytes = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw)
            .map_err(|e| ("invalid_envelope", format!("envelope field `record`: {e}")))?
            .into_bytes()
    } else {
        raw.as_bytes().to_vec()
    };
    Ok((channel, bytes))
}

/// Read one line (without its `\n` or `\r\n`) into `line`, buffering at most `limit` bytes.
/// Returns the line's full length (which may exceed `limit`: then `line` holds only its start),
/// or `None` at end of input.
fn read_bounded_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    line.clear();
    let mut length = 0usize;
    let mut saw_any = false;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        saw_any = true;
        let (chunk, consumed, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], at + 1, true),
            None => (buffer, buffer.len(), false),
        };
        if length + chunk.len() <= limit {
            line.extend_from_slice(chunk);
        }
        length += chunk.len();
        input.consume(consumed);
        if done {
            break;
        }
    }
    if !saw_any {
        return Ok(None);
    }
    if length <= limit && line.last() == Some(&b'\r') {
        line.pop();
        length -= 1;
    }
    Ok(Some(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reader_splits_lines_and_reports_oversized_ones() {
        let data = b"short\r\n0123456789abcdef\nlast".to_vec();
        let mut input = io::Cursor::new(data);
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 8).unwrap(),
            Some(5)
        );
        assert_eq!(line, b"short");
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 8).unwrap(),
            Some(16)
        );
        assert!(line.is_empty(), "an oversized line is not buffered");
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 8).unwrap(),
            Some(4)
        );
        assert_eq!(line, b"last");
        assert_eq!(read_bounded_line(&mut input, &mut line, 8).unwrap(), None);
    }

    #[test]
    fn envelope_gives_channel_and_record_bytes() {
        let (channel, bytes) =
            record_of_line(None, br#"{"channel":"110","record":{"jjdbh":"J1"}}"#).unwrap();
        assert_eq!(channel, Channel::Police110);
        assert_eq!(bytes, br#"{"jjdbh":"J1"}"#);
        let (channel, bytes) =
            record_of_line(None, br#"{"channel":"wechat","record":"<xml>\"a\"</xml>"}"#).unwrap();
        assert_eq!(channel, Channel::Wechat);
        assert_eq!(bytes, br#"<xml>"a"</xml>"#);
    }

    #[test]
    fn bad_envelopes_name_the_problem() {
        let (reason, message) = record_of_line(None, br#"{"record":{}}"#).unwrap_err();
        assert_eq!(reason, "invalid_envelope");
        assert!(message.contains("channel"), "{message}");
        let (_, message) = record_of_line(None, br#"{"channel":"sms","record":{}}"#).unwrap_err();
        assert!(message.contains("sms"), "{message}");
        let (reason, _) = record_of_line(None, b"\xff\xfe").unwrap_err();
        assert_eq!(reason, "invalid_utf8");
    }
}
