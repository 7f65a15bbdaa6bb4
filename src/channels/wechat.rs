//! WeChat decoder: one official-account callback XML message to a [`REPORT_KIND`] [`Record`], or
//! to [`Decoded::Skipped`] for what is not a citizen's message.
//!
//! The callback is a flat `<xml>` element whose children hold text or CDATA:
//! `text` messages carry `Content`, `voice` messages WeChat's speech-to-text `Recognition`, and
//! `location` messages `Location_X` (latitude), `Location_Y` (longitude), `Scale` and `Label`.
//! Event pushes (`subscribe`, `CLICK` …) and media messages (image, video, link …) carry no words
//! to classify, so they are skipped with a reason rather than failed. The XML reading itself is
//! in the private `xml` module.

mod xml;

use super::district::Gazetteer;
use super::{checked_text, coordinates, non_empty, quote, time, DecodeError, Decoded};
use crate::event::{Channel, Record};
use xml::{Field, Message};

/// What WeChat messages to an official account are: a 留言 (message left for the government).
pub const REPORT_KIND: &str = "留言";

/// Decode one callback message.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let message = xml::parse(checked_text(bytes)?)?;
    let msg_type = message
        .get(Field::MsgType)
        .ok_or(DecodeError::MissingField { field: "MsgType" })?;

    let (text, address, coordinates) = match msg_type {
        "text" => (content(&message, Field::Content)?, None, None),
        "voice" => (content(&message, Field::Recognition)?, None, None),
        "location" => location(&message)?,
        "event" => {
            let event = message.get(Field::Event).unwrap_or("(unnamed)");
            return Ok(Decoded::Skipped {
                reason: format!("event push {} is not a citizen message", quote(event)),
            });
        }
        other => {
            return Ok(Decoded::Skipped {
                reason: format!("message type {} carries no text", quote(other)),
            })
        }
    };

    let native_id = message
        .get(Field::MsgId)
        .ok_or(DecodeError::MissingField { field: "MsgId" })?
        .to_owned();
    let occurred_at = create_time(&message)?;
    let district = Gazetteer::changsha().district_of(None, &[address.as_deref(), Some(&text)]);
    Ok(Decoded::Report(Record {
        channel: Channel::Wechat,
        native_id,
        occurred_at,
        title: None,
        text,
        context: None,
        district,
        address,
        coordinates,
        author: message.get(Field::FromUserName).map(str::to_owned),
        report_kind: Some(REPORT_KIND.to_owned()),
        engagement: None,
    }))
}

type Located = (String, Option<String>, Option<crate::event::Coordinates>);

/// A required text element. An element present but blank is [`DecodeError::EmptyText`]: for a
/// voice message that means WeChat's speech-to-text gave nothing.
fn content(message: &Message, field: Field) -> Result<String, DecodeError> {
    match message.raw(field) {
        None => Err(DecodeError::MissingField {
            field: field.name(),
        }),
        Some(text) => non_empty(field.name(), text),
    }
}

/// A shared location: its label is both the address and, prefixed, the text to classify.
fn location(message: &Message) -> Result<Located, DecodeError> {
    let degrees = |field: Field| -> Result<f64, DecodeError> {
        let raw = message.get(field).ok_or(DecodeError::MissingField {
            field: field.name(),
        })?;
        raw.parse().map_err(|_| DecodeError::InvalidValue {
            field: field.name(),
            reason: format!("{} is not a number", quote(raw)),
        })
    };
    let lat = degrees(Field::LocationX)?;
    let lon = degrees(Field::LocationY)?;
    let coordinates = coordinates(
        (Field::LocationX.name(), Some(lat)),
        (Field::LocationY.name(), Some(lon)),
    )?;
    let label = message.get(Field::Label).map(str::to_owned);
    let text = match &label {
        Some(label) => format!("位置上报：{label}"),
        None => format!("位置上报：{lat},{lon}"),
    };
    Ok((text, label, coordinates))
}

/// `CreateTime` is unix seconds, as digits.
fn create_time(message: &Message) -> Result<chrono::DateTime<chrono::FixedOffset>, DecodeError> {
    const FIELD: &str = "CreateTime";
    let raw = message
        .get(Field::CreateTime)
        .ok_or(DecodeError::MissingField { field: FIELD })?;
    raw.parse()
        .ok()
        .and_then(time::from_unix)
        .ok_or_else(|| DecodeError::InvalidValue {
            field: FIELD,
            reason: format!("{} is not a unix timestamp", quote(raw)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "<xml><FromUserName>oU</FromUserName><CreateTime>1795569123</CreateTime><MsgId>9</MsgId>";

    #[test]
    fn location_without_label_is_described_by_its_coordinates() {
        let doc = format!("{HEAD}<MsgType>location</MsgType><Location_X>28.2</Location_X><Location_Y>112.9</Location_Y></xml>");
        let Ok(Decoded::Report(record)) = decode(doc.as_bytes()) else {
            panic!("expected a report");
        };
        assert_eq!(record.text, "位置上报：28.2,112.9");
        assert_eq!(record.address, None);
        let doc = format!("{HEAD}<MsgType>location</MsgType><Location_X>north</Location_X><Location_Y>112.9</Location_Y></xml>");
        let err = decode(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`Location_X`"), "{err}");
    }

    #[test]
    fn create_time_must_be_unix_seconds() {
        let doc = "<xml><CreateTime>2026-11-25</CreateTime><MsgId>9</MsgId><MsgType>text</MsgType><Content>x</Content></xml>";
        let err = decode(doc.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidValue {
                field: "CreateTime",
                ..
            }
        ));
        let doc = format!("{HEAD}<Content>x</Content></xml>");
        assert_eq!(
            decode(doc.as_bytes()).unwrap_err(),
            DecodeError::MissingField { field: "MsgType" }
        );
    }
}
