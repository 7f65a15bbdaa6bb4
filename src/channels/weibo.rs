//! Weibo decoder: one status JSON, as the Weibo open API returns it, to a public-opinion
//! ([`REPORT_KIND`]) [`Record`].
//!
//! The status text is HTML: links and topic anchors are tags (`<a href=…>#停水#</a>`) and
//! special characters are entities (`&quot;`). Tags are dropped and their inner text kept, then
//! entities decoded — in that order, so an escaped `&lt;b&gt;` stays visible text. A repost's
//! original (`retweeted_status`) becomes [`Record::context`]: the citizen's own words stay
//! apart from the words they quote. The district comes from the poster's text only: the user's
//! profile `location` is where they live, and the quoted original may be about somewhere else.

use super::district::Gazetteer;
use super::json::{self, Any, Nested};
use super::{checked_text, coordinates, non_empty, DecodeError, Decoded};
use crate::event::{Channel, Engagement, Record};
use regex::{Captures, Regex};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Weibo posts are public opinion, not a filed report.
pub const REPORT_KIND: &str = "舆情";

/// An HTML tag: `<` then a letter (or `/` and a letter) up to the next `>`. A bare `<` in text
/// reaches us as `&lt;`, so a real `<` always opens a tag.
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"</?([A-Za-z][A-Za-z0-9]*)[^<>]*>").expect("the HTML tag pattern is a valid regex")
});

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(borrow)]
    id: Option<Any<'a>>,
    #[serde(borrow)]
    idstr: Option<Any<'a>>,
    #[serde(borrow)]
    created_at: Option<Any<'a>>,
    #[serde(borrow)]
    text: Option<Any<'a>>,
    #[serde(borrow)]
    user: Option<Nested<User<'a>>>,
    #[serde(borrow)]
    geo: Option<Nested<Geo<'a>>>,
    #[serde(borrow)]
    reposts_count: Option<Any<'a>>,
    #[serde(borrow)]
    comments_count: Option<Any<'a>>,
    #[serde(borrow)]
    attitudes_count: Option<Any<'a>>,
    #[serde(borrow)]
    retweeted_status: Option<Nested<Retweeted<'a>>>,
}

/// The poster. `screen_name`, `location` and `verified` have no place in a [`Record`] (the
/// author is masked to a hash; `location` is where the user lives, not where the event is), so
/// they are not read.
#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    idstr: Option<Any<'a>>,
    #[serde(borrow)]
    id: Option<Any<'a>>,
    #[serde(borrow)]
    followers_count: Option<Any<'a>>,
}

#[derive(Deserialize)]
struct Geo<'a> {
    #[serde(borrow)]
    coordinates: Option<Any<'a>>,
}

/// Only the quoted text matters; reading no deeper also bounds the work on repost chains.
#[derive(Deserialize)]
struct Retweeted<'a> {
    #[serde(borrow)]
    text: Option<Any<'a>>,
}

/// Decode one Weibo status.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let status: Status = json::parse(checked_text(bytes)?)?;

    let native_id = match json::opt_id("idstr", status.idstr.as_ref())? {
        Some(idstr) => idstr,
        None => json::id("id", status.id.as_ref())?,
    };
    let occurred_at = json::timestamp("created_at", status.created_at.as_ref())?;
    let text = match status.text.as_ref() {
        Some(Any::Str(raw)) => non_empty("text", &clean_html(raw))?,
        other => json::text("text", other)?,
    };
    let context = match json::object("retweeted_status", status.retweeted_status.as_ref())? {
        Some(original) => json::opt_str("retweeted_status.text", original.text.as_ref())?
            .map(|raw| clean_html(raw).trim().to_owned())
            .filter(|quoted| !quoted.is_empty()),
        None => None,
    };

    let user = json::object("user", status.user.as_ref())?;
    let (author, followers) = match user {
        Some(user) => (
            match json::opt_id("user.idstr", user.idstr.as_ref())? {
                Some(idstr) => Some(idstr),
                None => json::opt_id("user.id", user.id.as_ref())?,
            },
            json::count("user.followers_count", user.followers_count.as_ref())?,
        ),
        None => (None, 0),
    };
    let coordinates = match json::object("geo", status.geo.as_ref())? {
        Some(geo) => geo_coordinates(geo.coordinates.as_ref())?,
        None => None,
    };
    let engagement = Engagement {
        reposts: json::count("reposts_count", status.reposts_count.as_ref())?,
        comments: json::count("comments_count", status.comments_count.as_ref())?,
        likes: json::count("attitudes_count", status.attitudes_count.as_ref())?,
        followers,
    };

    Ok(Decoded::Report(Record {
        channel: Channel::Weibo,
        native_id,
        occurred_at,
        title: None,
        district: Gazetteer::changsha().district_of(None, &[Some(&text)]),
        text,
        context,
        address: None,
        coordinates,
        author,
        report_kind: Some(REPORT_KIND.to_owned()),
        engagement: Some(engagement),
    }))
}

/// `geo.coordinates` is `[lat, lon]` (GeoJSON order reversed, as Weibo has always sent it).
fn geo_coordinates(value: Option<&Any>) -> Result<Option<crate::event::Coordinates>, DecodeError> {
    const FIELD: &str = "geo.coordinates";
    const EXPECTED: &str = "array of two numbers [lat, lon]";
    let items = match value {
        None | Some(Any::Null) => return Ok(None),
        Some(Any::Array(items)) => items,
        Some(other) => return Err(json::wrong_type(FIELD, EXPECTED, other.kind())),
    };
    let [lat, lon] = items.as_slice() else {
        return Err(DecodeError::InvalidValue {
            field: FIELD,
            reason: format!("expected 2 numbers [lat, lon], found {}", items.len()),
        });
    };
    coordinates(
        (FIELD, json::opt_float(FIELD, Some(lat))?),
        (FIELD, json::opt_float(FIELD, Some(lon))?),
    )
}

/// Drop HTML tags (keeping their inner text; `<br>` becomes a line break), then decode entities.
/// Borrows when there is nothing to change, which is most posts.
fn clean_html(raw: &str) -> Cow<'_, str> {
    let untagged = TAG.replace_all(raw, |caps: &Captures| {
        if caps[1].eq_ignore_ascii_case("br") {
            "\n"
        } else {
            ""
        }
    });
    match untagged {
        Cow::Borrowed(text) => html_escape::decode_html_entities(text),
        Cow::Owned(text) => Cow::Owned(html_escape::decode_html_entities(&text).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stripped_and_entities_decoded() {
        assert_eq!(
            clean_html(
                r#"<a href="https://s.weibo.com/weibo?q=%23停水%23">#停水#</a> 又停水了&quot;"#
            ),
            "#停水# 又停水了\""
        );
        assert_eq!(clean_html("第一行<br />第二行"), "第一行\n第二行");
        assert_eq!(clean_html("写成 &lt;b&gt; 的字"), "写成 <b> 的字");
        assert_eq!(clean_html("价格 3<5 元"), "价格 3<5 元");
        assert!(matches!(clean_html("没有标签"), Cow::Borrowed(_)));
    }

    #[test]
    fn geo_must_be_two_numbers() {
        let two = Any::Array(vec![Any::Float(28.19), Any::Float(112.97)]);
        let got = geo_coordinates(Some(&two)).unwrap().unwrap();
        assert_eq!((got.lat, got.lon), (28.19, 112.97));
        let one = Any::Array(vec![Any::Float(28.19)]);
        assert!(matches!(
            geo_coordinates(Some(&one)),
            Err(DecodeError::InvalidValue {
                field: "geo.coordinates",
                ..
            })
        ));
        let text = Any::Str("28.19,112.97".into());
        assert!(matches!(
            geo_coordinates(Some(&text)),
            Err(DecodeError::WrongType {
                field: "geo.coordinates",
                ..
            })
        ));
    }
}
