//! 12345 decoder: one hotline work order (JSON) to a [`Record`] whose `report_kind` is the
//! order's 诉求类型 (咨询/投诉/建议/举报/求助).
//!
//! Call-centre exports use Chinese keys (工单编号, 来电时间 …); some systems use English ones
//! (`ticket_id`, `call_time` …). Both map to the same [`Record`]. When a record has both spellings
//! of one key the Chinese one wins, and error messages name fields in the record's own spelling
//! (Chinese as soon as it has any Chinese key), so an operator can search the input for them.

use super::district::Gazetteer;
use super::json::{self, Any};
use super::{checked_text, DecodeError, Decoded};
use crate::event::{Channel, Record};
use serde::Deserialize;

/// A key's two spellings.
struct Key {
    zh: &'static str,
    en: &'static str,
}

const ID: Key = Key {
    zh: "工单编号",
    en: "ticket_id",
};
const CALL_TIME: Key = Key {
    zh: "来电时间",
    en: "call_time",
};
const PHONE: Key = Key {
    zh: "来电号码",
    en: "caller_phone",
};
const KIND: Key = Key {
    zh: "诉求类型",
    en: "request_type",
};
const TITLE: Key = Key {
    zh: "诉求标题",
    en: "title",
};
const CONTENT: Key = Key {
    zh: "诉求内容",
    en: "content",
};
const ADDRESS: Key = Key {
    zh: "事发地址",
    en: "address",
};
const DISTRICT: Key = Key {
    zh: "所属区县",
    en: "district",
};

/// Both spellings of every key read. 来源渠道/`source_channel` (phone, web, app) has no place in a
/// [`Record`] and is not read.
#[derive(Deserialize)]
struct WorkOrder<'a> {
    #[serde(borrow, rename = "工单编号")]
    id_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "ticket_id")]
    id_en: Option<Any<'a>>,
    #[serde(borrow, rename = "来电时间")]
    call_time_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "call_time")]
    call_time_en: Option<Any<'a>>,
    #[serde(borrow, rename = "来电号码")]
    phone_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "caller_phone")]
    phone_en: Option<Any<'a>>,
    #[serde(borrow, rename = "诉求类型")]
    kind_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "request_type")]
    kind_en: Option<Any<'a>>,
    #[serde(borrow, rename = "诉求标题")]
    title_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "title")]
    title_en: Option<Any<'a>>,
    #[serde(borrow, rename = "诉求内容")]
    content_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "content")]
    content_en: Option<Any<'a>>,
    #[serde(borrow, rename = "事发地址")]
    address_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "address")]
    address_en: Option<Any<'a>>,
    #[serde(borrow, rename = "所属区县")]
    district_zh: Option<Any<'a>>,
    #[serde(borrow, rename = "district")]
    district_en: Option<Any<'a>>,
}

/// The value under whichever spelling is present, and the name to quote in an error about it.
fn pick<'v, 'a>(
    key: &Key,
    zh: &'v Option<Any<'a>>,
    en: &'v Option<Any<'a>>,
    chinese: bool,
) -> (&'static str, Option<&'v Any<'a>>) {
    match (zh, en) {
        (Some(value), _) => (key.zh, Some(value)),
        (None, Some(value)) => (key.en, Some(value)),
        (None, None) => (if chinese { key.zh } else { key.en }, None),
    }
}

/// Decode one work order.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let order: WorkOrder = json::parse(checked_text(bytes)?)?;
    let chinese = [
        &order.id_zh,
        &order.call_time_zh,
        &order.phone_zh,
        &order.kind_zh,
        &order.title_zh,
        &order.content_zh,
        &order.address_zh,
        &order.district_zh,
    ]
    .iter()
    .any(|value| value.is_some());
    let pick = |key: &Key, zh, en| pick(key, zh, en, chinese);

    let (field, value) = pick(&ID, &order.id_zh, &order.id_en);
    let native_id = json::id(field, value)?;
    let (field, value) = pick(&CALL_TIME, &order.call_time_zh, &order.call_time_en);
    let occurred_at = json::timestamp(field, value)?;
    let (field, value) = pick(&CONTENT, &order.content_zh, &order.content_en);
    let text = json::text(field, value)?;
    let (field, value) = pick(&PHONE, &order.phone_zh, &order.phone_en);
    let author = json::opt_id(field, value)?;
    let (field, value) = pick(&KIND, &order.kind_zh, &order.kind_en);
    let report_kind = json::opt_str(field, value)?.map(str::to_owned);
    let (field, value) = pick(&TITLE, &order.title_zh, &order.title_en);
    let title = json::opt_str(field, value)?;
    let (field, value) = pick(&ADDRESS, &order.address_zh, &order.address_en);
    let address = json::opt_str(field, value)?;
    let (field, value) = pick(&DISTRICT, &order.district_zh, &order.district_en);
    let district = json::opt_str(field, value)?;

    let district =
        Gazetteer::changsha().district_of(district, &[address, title, Some(text.as_str())]);
    Ok(Decoded::Report(Record {
        channel: Channel::Hotline12345,
        native_id,
        occurred_at,
        title: title.map(str::to_owned),
        text,
        context: None,
        district,
        address: address.map(str::to_owned),
        coordinates: None,
        author,
        report_kind,
        engagement: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_err(input: &str) -> DecodeError {
        decode(input.as_bytes()).unwrap_err()
    }

    #[test]
    fn missing_fields_are_named_in_the_records_spelling() {
        let chinese = decode_err(r#"{"来电时间":"2026-11-25 09:12:03","诉求内容":"x"}"#);
        assert_eq!(
            chinese,
            DecodeError::MissingField {
                field: "工单编号"
            }
        );
        let english = decode_err(r#"{"call_time":"2026-11-25 09:12:03","content":"x"}"#);
        assert_eq!(english, DecodeError::MissingField { field: "ticket_id" });
        let neither = decode_err(r#"{"other":1}"#);
        assert_eq!(neither, DecodeError::MissingField { field: "ticket_id" });
    }

    #[test]
    fn chinese_wins_when_both_spellings_are_present() {
        let input = r#"{"工单编号":"ZH","ticket_id":"EN","来电时间":"2026-11-25 09:12:03","content":"x","所属区县":"430182","address":"岳麓区"}"#;
        let Ok(Decoded::Report(record)) = decode(input.as_bytes()) else {
            panic!("expected a report");
        };
        assert_eq!(record.native_id, "ZH");
        assert_eq!(
            record.district.as_deref(),
            Some("宁乡市"),
            "a code in 所属区县 is resolved"
        );
        assert_eq!(
            record.report_kind, None,
            "no 诉求类型 means no kind, not a guess"
        );
    }
}
