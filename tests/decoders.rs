//! The four channel decoders from the outside: the fixture files line by line, every field of a
//! good record per channel, each kind of malformed input, and a no-panic property over
//! arbitrary bytes and JSON/XML-shaped strings.

use chrono::{DateTime, FixedOffset};
use citypulse::channels::{self, DecodeError, Decoded};
use citypulse::event::{Channel, Coordinates, Engagement, Record};
use std::path::Path;

#[path = "decoders/malformed.rs"]
mod malformed;
#[path = "decoders/props.rs"]
mod props;

fn report(channel: Channel, input: &str) -> Record {
    match channels::decode(channel, input.as_bytes()) {
        Ok(Decoded::Report(record)) => record,
        other => panic!("{channel}: expected a report, got {other:?} for {input}"),
    }
}

fn error(channel: Channel, input: &str) -> DecodeError {
    match channels::decode(channel, input.as_bytes()) {
        Err(e) => e,
        Ok(other) => panic!("{channel}: expected an error, got {other:?} for {input}"),
    }
}

fn at(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap()
}

/// Decode every line of a fixture file; returns (good, skipped, reason codes of the bad lines).
fn decode_fixture(channel: Channel, file: &str) -> (usize, usize, Vec<&'static str>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/channels")
        .join(file);
    let content = std::fs::read_to_string(&path).unwrap();
    let (mut good, mut skipped, mut bad) = (0, 0, Vec::new());
    for line in content.lines() {
        match channels::decode(channel, line.as_bytes()) {
            Ok(Decoded::Report(_)) => good += 1,
            Ok(Decoded::Skipped { .. }) => skipped += 1,
            Err(e) => bad.push(e.reason_code()),
        }
    }
    (good, skipped, bad)
}

#[test]
fn fixture_files_decode_as_their_readme_says() {
    let weibo = decode_fixture(Channel::Weibo, "weibo.jsonl");
    let wanted = [
        "invalid_json",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "empty_text",
    ];
    assert_eq!(weibo, (7, 0, wanted.to_vec()));
    let wechat = decode_fixture(Channel::Wechat, "wechat.xmll");
    let wanted = [
        "invalid_xml",
        "missing_field",
        "missing_field",
        "invalid_value",
        "empty_text",
    ];
    assert_eq!(wechat, (6, 3, wanted.to_vec()));
    let hotline = decode_fixture(Channel::Hotline12345, "12345.jsonl");
    let wanted = [
        "invalid_json",
        "missing_field",
        "wrong_type",
        "empty_text",
        "wrong_type",
    ];
    assert_eq!(hotline, (6, 0, wanted.to_vec()));
    let police = decode_fixture(Channel::Police110, "110.jsonl");
    let wanted = [
        "missing_field",
        "wrong_type",
        "invalid_json",
        "invalid_value",
        "invalid_value",
    ];
    assert_eq!(police, (6, 0, wanted.to_vec()));
}

#[test]
fn weibo_status_fills_every_field() {
    let status = r#"{"created_at":"Wed Nov 25 09:12:03 +0800 2026","id":5234567890123456,
        "idstr":"5234567890123456","text":"<a href=\"https://s.weibo.com/weibo?q=%23停水%23\">#停水#</a> 雨花区又停水了&quot;怎么办&quot;&amp;[怒]",
        "geo":{"type":"Point","coordinates":[28.1402,112.9951]},
        "user":{"id":1987654321,"idstr":"1987654321","screen_name":"井湾子","location":"湖南 长沙","followers_count":356,"verified":false},
        "reposts_count":12,"comments_count":48,"attitudes_count":103,"mid":"x","pic_ids":[]}"#;
    let record = report(Channel::Weibo, status);
    assert_eq!(
        record,
        Record {
            channel: Channel::Weibo,
            native_id: "5234567890123456".into(),
            occurred_at: at("2026-11-25T09:12:03+08:00"),
            title: None,
            text: "#停水# 雨花区又停水了\"怎么办\"&[怒]".into(),
            context: None,
            district: Some("雨花区".into()),
            address: None,
            coordinates: Some(Coordinates {
                lat: 28.1402,
                lon: 112.9951
            }),
            author: Some("1987654321".into()),
            report_kind: Some("舆情".into()),
            engagement: Some(Engagement {
                reposts: 12,
                comments: 48,
                likes: 103,
                followers: 356
            }),
        }
    );
}

#[test]
fn weibo_repost_keeps_the_original_as_context() {
    let status = r#"{"created_at":"Wed Nov 25 10:03:41 +0800 2026","id":77,"text":"转发微博 //@岳麓山下:又塌了",
        "geo":null,"user":{"id":2233445566},"retweeted_status":{"id":76,
        "text":"岳麓区麓山南路塌了一个坑 <a href=\"https://weibo.cn/x\">网页链接</a>","user":{"idstr":"9"}}}"#;
    let record = report(Channel::Weibo, status);
    assert_eq!(
        record.native_id, "77",
        "a numeric id stands in for a missing idstr"
    );
    assert_eq!(record.text, "转发微博 //@岳麓山下:又塌了");
    assert_eq!(
        record.context.as_deref(),
        Some("岳麓区麓山南路塌了一个坑 网页链接")
    );
    assert_eq!(record.author.as_deref(), Some("2233445566"));
    assert_eq!(record.coordinates, None);
    assert_eq!(
        record.district, None,
        "the district of quoted text is not the poster's"
    );
    assert_eq!(
        record.engagement,
        Some(Engagement {
            followers: 0,
            ..Engagement::default()
        })
    );
}

#[test]
fn wechat_text_voice_and_location_messages() {
    let envelope = |body: &str| {
        format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName><CreateTime>1795569123</CreateTime>{body}<MsgId>245678</MsgId></xml>")
    };
    let text = envelope("<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ 天心区书院路的路灯坏了 ]]></Content>");
    assert_eq!(
        report(Channel::Wechat, &text),
        Record {
            channel: Channel::Wechat,
            native_id: "245678".into(),
            occurred_at: at("2026-11-25T09:12:03+08:00"),
            title: None,
            text: "天心区书院路的路灯坏了".into(),
            context: None,
            district: Some("天心区".into()),
            address: None,
            coordinates: None,
            author: Some("oUser1".into()),
            report_kind: Some("留言".into()),
            engagement: None,
        }
    );
    let voice = envelope("<MsgType>voice</MsgType><MediaId>m</MediaId><Recognition><![CDATA[工地半夜施工]]></Recognition>");
    assert_eq!(report(Channel::Wechat, &voice).text, "工地半夜施工");
    let location = envelope("<MsgType>location</MsgType><Location_X>28.2279</Location_X><Location_Y>112.9388</Location_Y><Scale>15</Scale><Label><![CDATA[长沙市开福区湘江中路]]></Label>");
    let record = report(Channel::Wechat, &location);
    assert_eq!(record.text, "位置上报：长沙市开福区湘江中路");
    assert_eq!(record.address.as_deref(), Some("长沙市开福区湘江中路"));
    assert_eq!(
        record.coordinates,
        Some(Coordinates {
            lat: 28.2279,
            lon: 112.9388
        })
    );
    assert_eq!(record.district.as_deref(), Some("开福区"));

    let silent = envelope("<MsgType>voice</MsgType><Recognition><![CDATA[]]></Recognition>");
    let err = error(Channel::Wechat, &silent);
    assert_eq!(
        err,
        DecodeError::EmptyText {
            field: "Recognition"
        }
    );
    let unrecognised = envelope("<MsgType>voice</MsgType><MediaId>m</MediaId>");
    let err = error(Channel::Wechat, &unrecognised);
    assert_eq!(
        err,
        DecodeError::MissingField {
            field: "Recognition"
        }
    );
    assert!(err.to_string().contains("`Recognition`"), "{err}");
}

#[test]
fn wechat_event_pushes_and_media_are_skipped_with_a_reason() {
    let subscribe = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oUser1</FromUserName><CreateTime>1795569123</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>";
    match channels::decode(Channel::Wechat, subscribe.as_bytes()) {
        Ok(Decoded::Skipped { reason }) => assert!(reason.contains("subscribe"), "{reason}"),
        other => panic!("expected a skip, got {other:?}"),
    }
    let image = "<xml><CreateTime>1795569123</CreateTime><MsgType>image</MsgType><PicUrl>u</PicUrl><MsgId>1</MsgId></xml>";
    match channels::decode(Channel::Wechat, image.as_bytes()) {
        Ok(Decoded::Skipped { reason }) => assert!(reason.contains("image"), "{reason}"),
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[test]
fn hotline_chinese_and_english_keys_give_equal_records() {
    let chinese = r#"{"工单编号":"CS001","来电时间":"2026-11-25 09:12:03","来电号码":"13873112345","诉求类型":"投诉",
        "诉求标题":"餐馆油烟扰民","诉求内容":"楼下餐馆油烟直排","事发地址":"长沙市岳麓区望月湖街道","所属区县":"雨花区","来源渠道":"电话","多余字段":1}"#;
    let english = r#"{"ticket_id":"CS001","call_time":"2026/11/25 9:12:03","caller_phone":13873112345,"request_type":"投诉",
        "title":"餐馆油烟扰民","content":" 楼下餐馆油烟直排 ","address":"长沙市岳麓区望月湖街道","district":"雨花区","source_channel":"电话"}"#;
    let record = report(Channel::Hotline12345, chinese);
    assert_eq!(record, report(Channel::Hotline12345, english));
    assert_eq!(
        record,
        Record {
            channel: Channel::Hotline12345,
            native_id: "CS001".into(),
            occurred_at: at("2026-11-25T09:12:03+08:00"),
            title: Some("餐馆油烟扰民".into()),
            text: "楼下餐馆油烟直排".into(),
            context: None,
            district: Some("雨花区".into()),
            address: Some("长沙市岳麓区望月湖街道".into()),
            coordinates: None,
            author: Some("13873112345".into()),
            report_kind: Some("投诉".into()),
            engagement: None,
        }
    );
    // Errors speak the record's own spelling.
    let err = error(
        Channel::Hotline12345,
        r#"{"工单编号":"CS2","来电时间":"2026-11-25 09:12:03"}"#,
    );
    assert_eq!(
        err,
        DecodeError::MissingField {
            field: "诉求内容"
        }
    );
    let err = error(
        Channel::Hotline12345,
        r#"{"ticket_id":[1],"call_time":"2026-11-25 09:12:03","content":"x"}"#,
    );
    assert_eq!(
        err.to_string(),
        "field `ticket_id` has the wrong type: expected string or integer, found array"
    );
}

#[test]
fn police_dispatch_fills_every_field() {
    let dispatch = r#"{"jjdbh":"J001","bjsj":"20261125091203","bjrdh":"13975812345","afdd":"长沙市岳麓区麓山南路",
        "bjnr":"两车相撞，有人受伤","jqlb":"交通事故","x":"112.9986","y":28.1732,"xzqh":430111,"cjdw":"ignored"}"#;
    assert_eq!(
        report(Channel::Police110, dispatch),
        Record {
            channel: Channel::Police110,
            native_id: "J001".into(),
            occurred_at: at("2026-11-25T09:12:03+08:00"),
            title: None,
            text: "两车相撞，有人受伤".into(),
            context: None,
            district: Some("雨花区".into()),
            address: Some("长沙市岳麓区麓山南路".into()),
            coordinates: Some(Coordinates {
                lat: 28.1732,
                lon: 112.9986
            }),
            author: Some("13975812345".into()),
            report_kind: Some("交通事故".into()),
            engagement: None,
        }
    );
    let minimal = report(
        Channel::Police110,
        r#"{"jjdbh":7,"bjsj":1795569123,"bjnr":"有人落水"}"#,
    );
    assert_eq!(minimal.native_id, "7");
    assert_eq!(minimal.occurred_at, at("2026-11-25T09:12:03+08:00"));
    assert_eq!(minimal.report_kind.as_deref(), Some("报警"));
    assert_eq!(
        (minimal.author, minimal.address, minimal.district),
        (None, None, None)
    );
}

#[test]
fn times_with_and_without_zone() {
    let with_time = |t: &str| format!(r#"{{"jjdbh":"J1","bjsj":{t},"bjnr":"有人落水"}}"#);
    let cst = at("2026-11-25T09:12:03+08:00");
    for t in [
        r#""2026-11-25 09:12:03""#,
        r#""2026-11-25T09:12:03""#,
        "1795569123",
        "1795569123000",
    ] {
        let record = report(Channel::Police110, &with_time(t));
        assert_eq!(record.occurred_at, cst, "{t}");
        assert_eq!(
            record.occurred_at.offset().local_minus_utc(),
            8 * 3600,
            "{t}"
        );
    }
    let utc = report(Channel::Police110, &with_time(r#""2026-11-25T01:12:03Z""#));
    assert_eq!(utc.occurred_at, cst);
    assert_eq!(
        utc.occurred_at.offset().local_minus_utc(),
        0,
        "a given zone is kept"
    );
    let err = error(Channel::Police110, &with_time(r#""25/11/2026""#));
    assert!(
        matches!(err, DecodeError::InvalidValue { field: "bjsj", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("unrecognised time \"25/11/2026\""),
        "{err}"
    );
}
