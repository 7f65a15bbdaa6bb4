//! Malformed input on every channel: each kind of problem gives its own [`DecodeError`]
//! variant, and the message names the field, line, column, byte or size at fault.

use super::error;
use citypulse::channels::{self, DecodeError, MAX_RECORD_BYTES};
use citypulse::event::Channel;

#[test]
fn invalid_json_names_line_and_column() {
    for channel in [Channel::Weibo, Channel::Hotline12345, Channel::Police110] {
        let err = error(channel, "{\"id\": 1,\n  \"text\": oops}");
        assert!(
            matches!(
                err,
                DecodeError::InvalidJson {
                    line: 2,
                    column: 11,
                    ..
                }
            ),
            "{channel}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "invalid JSON at line 2, column 11: expected value"
        );
        let err = error(channel, "[1, 2]");
        assert_eq!(err.reason_code(), "wrong_type", "{channel}");
        assert!(
            err.to_string().contains("expected object, found array"),
            "{err}"
        );
    }
}

#[test]
fn invalid_xml_names_the_position() {
    let err = error(
        Channel::Wechat,
        "<xml><MsgType>text</MsgType><Content>a</Conten></xml>",
    );
    let DecodeError::InvalidXml {
        position,
        ref message,
    } = err
    else {
        panic!("expected InvalidXml, got {err:?}");
    };
    assert_eq!(position, 38, "the byte where the mismatched end tag starts");
    assert!(message.contains("Content"), "{message}");
    assert!(
        err.to_string().starts_with("invalid XML at byte 38:"),
        "{err}"
    );
}

#[test]
fn wrong_types_missing_fields_and_empty_text_name_the_field() {
    let cases: [(Channel, &str, DecodeError, &str); 6] = [
        (
            Channel::Weibo,
            r#"{"id":1,"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":"x","user":"someone"}"#,
            DecodeError::WrongType {
                field: "user",
                expected: "object",
                found: "string",
            },
            "field `user` has the wrong type: expected object, found string",
        ),
        (
            Channel::Weibo,
            r#"{"id":1,"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":"x","reposts_count":-3}"#,
            DecodeError::InvalidValue {
                field: "reposts_count",
                reason: "count -3 is negative".into(),
            },
            "field `reposts_count` has an invalid value: count -3 is negative",
        ),
        (
            Channel::Weibo,
            r#"{"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":"x"}"#,
            DecodeError::MissingField { field: "id" },
            "missing required field `id`",
        ),
        (
            Channel::Weibo,
            r#"{"id":1,"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":"<a href=\"u\"> </a>"}"#,
            DecodeError::EmptyText { field: "text" },
            "field `text` is empty",
        ),
        (
            Channel::Police110,
            r#"{"jjdbh":"J1","bjsj":"2026-11-25 09:12:03"}"#,
            DecodeError::MissingField { field: "bjnr" },
            "missing required field `bjnr`",
        ),
        (
            Channel::Police110,
            r#"{"jjdbh":"J1","bjsj":"2026-11-25 09:12:03","bjnr":"x","y":{"lat":1}}"#,
            DecodeError::WrongType {
                field: "y",
                expected: "number",
                found: "object",
            },
            "field `y` has the wrong type: expected number, found object",
        ),
    ];
    for (channel, input, want, message) in cases {
        let err = error(channel, input);
        assert_eq!(err, want, "{input}");
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn invalid_utf8_is_rejected_with_its_offset_on_every_channel() {
    let mut bytes = br#"{"jjdbh":"J1","bjnr":""#.to_vec();
    let offset = bytes.len();
    bytes.extend_from_slice(&[0xe6, 0xb0, b'"', b'}']);
    for channel in Channel::ALL {
        let err = channels::decode(channel, &bytes).unwrap_err();
        assert_eq!(err, DecodeError::InvalidUtf8 { offset }, "{channel}");
        assert!(
            err.to_string().contains(&format!("byte offset {offset}")),
            "{err}"
        );
    }
}

#[test]
fn a_ten_megabyte_record_is_rejected_by_size_before_parsing() {
    // Well-formed apart from its size: only the size check can reject it.
    let huge_text = "长".repeat(10 * 1024 * 1024 / 3);
    let json = format!(r#"{{"jjdbh":"J1","bjsj":"2026-11-25 09:12:03","bjnr":"{huge_text}"}}"#);
    let xml = format!("<xml><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>{huge_text}</Content><MsgId>1</MsgId></xml>");
    for (channel, input) in [
        (Channel::Weibo, &json),
        (Channel::Hotline12345, &json),
        (Channel::Police110, &json),
        (Channel::Wechat, &xml),
    ] {
        let err = error(channel, input);
        assert_eq!(
            err,
            DecodeError::TooLarge {
                size: input.len(),
                limit: MAX_RECORD_BYTES
            }
        );
        assert!(
            err.to_string().contains(&format!("{} bytes", input.len())),
            "{err}"
        );
    }
}
