//! 110 decoder: one police dispatch record (JSON, with the pinyin-initial keys of 接处警
//! databases) to a [`Record`].
//!
//! `jjdbh` 接警单编号 (id), `bjsj` 报警时间 (call time), `bjrdh` 报警人电话 (caller), `afdd`
//! 案发地点 (address), `bjnr` 报警内容 (text), `jqlb` 警情类别 (category), `x`/`y` (longitude,
//! latitude) and `xzqh` 行政区划 (a 6-digit administrative code, or a district name).

use super::district::Gazetteer;
use super::json::{self, Any};
use super::{checked_text, coordinates, DecodeError, Decoded};
use crate::event::{Channel, Record};
use serde::Deserialize;

/// The report kind when the record gives no 警情类别.
pub const DEFAULT_REPORT_KIND: &str = "报警";

#[derive(Deserialize)]
struct Dispatch<'a> {
    #[serde(borrow)]
    jjdbh: Option<Any<'a>>,
    #[serde(borrow)]
    bjsj: Option<Any<'a>>,
    #[serde(borrow)]
    bjrdh: Option<Any<'a>>,
    #[serde(borrow)]
    afdd: Option<Any<'a>>,
    #[serde(borrow)]
    bjnr: Option<Any<'a>>,
    #[serde(borrow)]
    jqlb: Option<Any<'a>>,
    #[serde(borrow)]
    x: Option<Any<'a>>,
    #[serde(borrow)]
    y: Option<Any<'a>>,
    #[serde(borrow)]
    xzqh: Option<Any<'a>>,
}

/// Decode one dispatch record.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let dispatch: Dispatch = json::parse(checked_text(bytes)?)?;

    let native_id = json::id("jjdbh", dispatch.jjdbh.as_ref())?;
    let occurred_at = json::timestamp("bjsj", dispatch.bjsj.as_ref())?;
    let text = json::text("bjnr", dispatch.bjnr.as_ref())?;
    let author = json::opt_id("bjrdh", dispatch.bjrdh.as_ref())?;
    let address = json::opt_str("afdd", dispatch.afdd.as_ref())?;
    let report_kind = json::opt_str("jqlb", dispatch.jqlb.as_ref())?.unwrap_or(DEFAULT_REPORT_KIND);
    let coordinates = coordinates(
        ("y", json::opt_float("y", dispatch.y.as_ref())?),
        ("x", json::opt_float("x", dispatch.x.as_ref())?),
    )?;
    // Codes arrive as strings or as bare integers; both read as the same code.
    let xzqh = json::opt_id("xzqh", dispatch.xzqh.as_ref())?;

    let district = Gazetteer::changsha().district_of(xzqh.as_deref(), &[address, Some(&text)]);
    Ok(Decoded::Report(Record {
        channel: Channel::Police110,
        native_id,
        occurred_at,
        title: None,
        text,
        context: None,
        district,
        address: address.map(str::to_owned),
        coordinates,
        author,
        report_kind: Some(report_kind.to_owned()),
        engagement: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(input: &str) -> Record {
        match decode(input.as_bytes()) {
            Ok(Decoded::Report(record)) => record,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    #[test]
    fn xzqh_code_name_or_unknown_code() {
        let base =
            r#""jjdbh":"J1","bjsj":"2026-11-25 09:12:03","afdd":"浏阳市关口街道","bjnr":"被骗""#;
        let district = |xzqh: &str| record(&format!("{{{base},\"xzqh\":{xzqh}}}")).district;
        assert_eq!(district("\"430105\"").as_deref(), Some("开福区"));
        assert_eq!(district("430105").as_deref(), Some("开福区"));
        assert_eq!(district("\"岳麓区\"").as_deref(), Some("岳麓区"));
        // A code outside the gazetteer falls back to the address.
        assert_eq!(district("\"430100\"").as_deref(), Some("浏阳市"));
        assert_eq!(district("null").as_deref(), Some("浏阳市"));
    }

    #[test]
    fn coordinates_are_x_longitude_y_latitude() {
        let base = r#""jjdbh":"J1","bjsj":"2026-11-25 09:12:03","bjnr":"有人打架""#;
        let coords = |xy: &str| record(&format!("{{{base},{xy}}}")).coordinates;
        let want = Some(crate::event::Coordinates {
            lat: 28.17,
            lon: 112.99,
        });
        assert_eq!(coords(r#""x":112.99,"y":28.17"#), want);
        assert_eq!(coords(r#""x":" 112.99 ","y":"28.17""#), want);
        assert_eq!(
            coords(r#""x":112.99"#),
            None,
            "half a position is no position"
        );
        assert_eq!(coords(r#""x":0,"y":0"#), None, "0,0 means not located");
        let err = decode(format!(r#"{{{base},"x":"东经112","y":28}}"#).as_bytes()).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidValue { field: "x", .. }),
            "{err:?}"
        );
        let err = decode(format!(r#"{{{base},"x":112,"y":95}}"#).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`y`"), "{err}");
    }
}
