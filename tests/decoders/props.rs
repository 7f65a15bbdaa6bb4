//! No decoder panics, whatever it is fed: arbitrary bytes, JSON objects built from the channels'
//! own keys with values of every type, and XML-shaped text built from WeChat's element names.
//! Every outcome must be explainable: errors carry a non-empty message and a known reason code,
//! skips a non-empty reason, and reports a non-empty text.

use citypulse::channels::{self, DecodeError, Decoded};
use citypulse::event::Channel;
use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 2000;

/// Keys the decoders read, so generated objects reach the type checks and not just "missing".
const JSON_KEYS: &[&str] = &[
    "id",
    "idstr",
    "created_at",
    "text",
    "user",
    "geo",
    "coordinates",
    "followers_count",
    "reposts_count",
    "comments_count",
    "attitudes_count",
    "retweeted_status",
    "工单编号",
    "来电时间",
    "来电号码",
    "诉求类型",
    "诉求标题",
    "诉求内容",
    "事发地址",
    "所属区县",
    "ticket_id",
    "call_time",
    "caller_phone",
    "content",
    "district",
    "jjdbh",
    "bjsj",
    "bjrdh",
    "afdd",
    "bjnr",
    "jqlb",
    "x",
    "y",
    "xzqh",
    "unknown",
];

const XML_NAMES: &[&str] = &[
    "xml",
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Content",
    "MsgId",
    "Recognition",
    "Location_X",
    "Location_Y",
    "Scale",
    "Label",
    "Event",
    "Other",
];

fn check(channel: Channel, bytes: &[u8]) {
    match channels::decode(channel, bytes) {
        Ok(Decoded::Report(record)) => {
            assert!(
                !record.text.trim().is_empty(),
                "{channel}: empty report text"
            );
            assert!(!record.native_id.is_empty(), "{channel}: empty native id");
        }
        Ok(Decoded::Skipped { reason }) => assert!(!reason.is_empty(), "{channel}: empty skip"),
        Err(e) => {
            assert!(
                !e.to_string().is_empty(),
                "{channel}: empty message for {e:?}"
            );
            assert!(DecodeError::REASON_CODES.contains(&e.reason_code()));
        }
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(1795569123)),
        Just(Value::from("2026-11-25 09:12:03")),
        Just(Value::from("Wed Nov 25 09:12:03 +0800 2026")),
        Just(Value::from("430111")),
        Just(Value::from(" ")),
        "[ -~雨花区小A3县&;<>/]{0,24}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(JSON_KEYS), inner), 0..8).prop_map(
                |entries| {
                    let map: Map<String, Value> = entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect();
                    Value::Object(map)
                }
            ),
        ]
    })
}

fn json_record() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(JSON_KEYS), json_value()), 0..14).prop_map(
        |entries| {
            let map: Map<String, Value> = entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            Value::Object(map).to_string()
        },
    )
}

fn xml_piece() -> impl Strategy<Value = String> {
    let name = prop::sample::select(XML_NAMES);
    prop_oneof![
        (name.clone(), "[ -~雨花区&;]{0,16}").prop_map(|(n, t)| format!("<{n}>{t}</{n}>")),
        (name.clone(), "[ -~雨花区]{0,16}")
            .prop_map(|(n, t)| format!("<{n}><![CDATA[{t}]]></{n}>")),
        name.clone().prop_map(|n| format!("<{n}>")),
        name.clone().prop_map(|n| format!("</{n}>")),
        name.prop_map(|n| format!("<{n}/>")),
        Just("<MsgType>text</MsgType>".to_owned()),
        Just("<MsgType>voice</MsgType>".to_owned()),
        Just("<MsgType>location</MsgType>".to_owned()),
        Just("<MsgType>event</MsgType>".to_owned()),
        Just("<CreateTime>1795569123</CreateTime>".to_owned()),
        Just("<MsgId>1</MsgId>".to_owned()),
        prop::sample::select(
            &[
                "&amp;",
                "&#x4E2D;",
                "&#0;",
                "&bogus;",
                "&",
                "<!-- c -->",
                "<?pi x?>",
                "<!DOCTYPE xml>"
            ][..]
        )
        .prop_map(str::to_owned),
        "[ -~]{0,8}",
    ]
}

fn xml_record() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(xml_piece(), 0..14),
        any::<bool>(),
    )
        .prop_map(|(open, pieces, close)| {
            let mut doc = String::new();
            if open {
                doc.push_str("<xml>");
            }
            doc.extend(pieces);
            if close {
                doc.push_str("</xml>");
            }
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for channel in Channel::ALL {
            check(channel, &bytes);
        }
    }

    #[test]
    fn json_shaped_records_never_panic(record in json_record()) {
        for channel in Channel::ALL {
            check(channel, record.as_bytes());
        }
    }

    #[test]
    fn xml_shaped_records_never_panic(record in xml_record()) {
        for channel in Channel::ALL {
            check(channel, record.as_bytes());
        }
    }
}
