//! Reads a WeChat callback document into its known child elements, in one pass with quick-xml.
//!
//! The document must be exactly one `<xml>` root. Each known child's text, CDATA and entity
//! references are joined into one value (borrowed from the input when it is a single piece);
//! unknown children and anything nested deeper are skipped. Values are kept untrimmed so the
//! decoder can tell "absent" from "present but blank".

use crate::channels::DecodeError;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::borrow::Cow;

/// The callback's children that the decoder reads (`ToUserName`, the account itself, and
/// `Scale`, the map zoom, have no place in a record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    FromUserName,
    CreateTime,
    MsgType,
    Content,
    MsgId,
    Recognition,
    LocationX,
    LocationY,
    Label,
    Event,
}

const FIELD_COUNT: usize = 10;

impl Field {
    const ALL: [Field; FIELD_COUNT] = [
        Field::FromUserName,
        Field::CreateTime,
        Field::MsgType,
        Field::Content,
        Field::MsgId,
        Field::Recognition,
        Field::LocationX,
        Field::LocationY,
        Field::Label,
        Field::Event,
    ];

    /// The element's name in the callback, as error messages quote it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::FromUserName => "FromUserName",
            Field::CreateTime => "CreateTime",
            Field::MsgType => "MsgType",
            Field::Content => "Content",
            Field::MsgId => "MsgId",
            Field::Recognition => "Recognition",
            Field::LocationX => "Location_X",
            Field::LocationY => "Location_Y",
            Field::Label => "Label",
            Field::Event => "Event",
        }
    }

    fn from_name(name: &[u8]) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name().as_bytes() == name)
    }
}

/// The known children of one callback document.
#[derive(Debug, Default)]
pub(crate) struct Message<'a> {
    values: [Option<Cow<'a, str>>; FIELD_COUNT],
}

impl Message<'_> {
    /// The element's text as written, if the element is present.
    pub(crate) fn raw(&self, field: Field) -> Option<&str> {
        self.values[field as usize].as_deref()
    }

    /// The element's trimmed text; absent and blank are both `None`.
    pub(crate) fn get(&self, field: Field) -> Option<&str> {
        self.raw(field).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// Parse one callback document.
pub(crate) fn parse(text: &str) -> Result<Message<'_>, DecodeError> {
    let mut reader = Reader::from_str(text);
    let mut message = Message::default();
    // Elements open around the reader: 0 outside the root, 1 inside `<xml>`, 2 inside a child.
    let mut depth = 0usize;
    let mut seen_root = false;
    // The known child being read, while depth is 2 or more.
    let mut current: Option<Field> = None;

    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(invalid(reader.error_position(), e.to_string())),
        };
        let here = reader.buffer_position();
        let piece = match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                match depth {
                    0 if seen_root => return Err(invalid(here, "more than one root element")),
                    0 if start.name().as_ref() != b"xml" => {
                        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                        return Err(invalid(
                            here,
                            format!("root element must be <xml>, found <{name}>"),
                        ));
                    }
                    0 => seen_root = true,
                    1 => {
                        current = Field::from_name(start.name().as_ref());
                        if let Some(field) = current {
                            let slot = &mut message.values[field as usize];
                            if slot.is_some() {
                                return Err(DecodeError::InvalidValue {
                                    field: field.name(),
                                    reason: "element appears more than once".into(),
                                });
                            }
                            *slot = Some(Cow::Borrowed(""));
                        }
                    }
                    _ => {}
                }
                if !is_empty {
                    depth += 1;
                }
                continue;
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches its start tag.
                depth = depth.saturating_sub(1);
                if depth <= 1 {
                    current = None;
                }
                continue;
            }
            Event::Text(text) => text
                .xml10_content()
                .map_err(|e| invalid(here, e.to_string()))?,
            Event::CData(cdata) => cdata
                .xml10_content()
                .map_err(|e| invalid(here, e.to_string()))?,
            Event::GeneralRef(reference) => resolve_reference(&reference, here)?,
            Event::Eof if depth > 0 => {
                return Err(invalid(
                    here,
                    "unexpected end of document: <xml> is not closed",
                ))
            }
            Event::Eof if !seen_root => return Err(invalid(here, "no <xml> root element")),
            Event::Eof => return Ok(message),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => continue,
        };
        if depth == 0 && !piece.trim().is_empty() {
            return Err(invalid(here, "text outside the <xml> root element"));
        }
        if let (2, Some(field)) = (depth, current) {
            append(&mut message.values[field as usize], piece);
        }
    }
}

/// `&amp;`-style and `&#x4E2D;`-style references; XML knows only five named entities.
fn resolve_reference(
    reference: &quick_xml::events::BytesRef,
    here: u64,
) -> Result<Cow<'static, str>, DecodeError> {
    match reference.resolve_char_ref() {
        Ok(Some(ch)) => return Ok(Cow::Owned(ch.to_string())),
        Ok(None) => {}
        Err(e) => return Err(invalid(here, e.to_string())),
    }
    let name = reference
        .decode()
        .map_err(|e| invalid(here, e.to_string()))?;
    resolve_predefined_entity(&name)
        .map(Cow::Borrowed)
        .ok_or_else(|| invalid(here, format!("unknown entity &{name};")))
}

fn append<'a>(slot: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>) {
    match slot {
        Some(value) if value.is_empty() => *value = piece,
        Some(value) => value.to_mut().push_str(&piece),
        None => *slot = Some(piece),
    }
}

/// Longest error message kept: quick-xml's messages quote element and entity names, which the
/// input can make as long as the record, and the message travels in a dead-letter header.
const MAX_MESSAGE_CHARS: usize = 200;

fn invalid(position: u64, message: impl Into<String>) -> DecodeError {
    let mut message = message.into();
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    DecodeError::InvalidXml { position, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cdata_and_references_are_joined() {
        let doc = "<xml><Content>水管&amp;<![CDATA[<漏水>]]>&#x4E86;</Content><Other><Content>x</Content></Other></xml>";
        let message = parse(doc).unwrap();
        assert_eq!(message.raw(Field::Content), Some("水管&<漏水>了"));
        assert!(matches!(
            message.values[Field::Content as usize],
            Some(Cow::Owned(_))
        ));
        let single = parse("<xml><MsgType><![CDATA[text]]></MsgType></xml>").unwrap();
        assert!(matches!(
            single.values[Field::MsgType as usize],
            Some(Cow::Borrowed("text"))
        ));
    }

    #[test]
    fn blank_and_empty_elements_are_present_but_blank() {
        let message = parse("<xml><Content>  </Content><Label/></xml>").unwrap();
        assert_eq!(message.raw(Field::Content), Some("  "));
        assert_eq!(message.get(Field::Content), None);
        assert_eq!(message.raw(Field::Label), Some(""));
        assert_eq!(message.raw(Field::MsgId), None);
    }

    #[test]
    fn error_messages_are_bounded_whatever_the_names() {
        // Found by fuzzing: a mismatched end tag was quoted whole.
        let long = "C".repeat(5000);
        let doc = format!("<xml><Content>x</{long}></xml>");
        let Err(DecodeError::InvalidXml { message, .. }) = parse(&doc) else {
            panic!("expected invalid XML");
        };
        assert!(
            message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{message}"
        );
        assert!(message.ends_with('…'), "{message}");
    }

    #[test]
    fn deep_nesting_is_counted_not_recursed() {
        let doc = format!(
            "<xml><Content>x{}{}</Content></xml>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert_eq!(parse(&doc).unwrap().raw(Field::Content), Some("x"));
    }

    #[test]
    fn malformed_documents_name_the_problem() {
        for (doc, needle) in [
            ("<xml><Content>a</Content>", "not closed"),
            ("<xml><Content>a</MsgId></xml>", "Content"),
            ("<root></root>", "<xml>"),
            ("<xml></xml><xml></xml>", "more than one root"),
            ("hello<xml></xml>", "outside"),
            ("", "no <xml> root"),
            ("<xml><Content>&nbsp;</Content></xml>", "nbsp"),
            ("<xml><Content", "not closed"),
        ] {
            let err = parse(doc).unwrap_err();
            assert!(
                matches!(err, DecodeError::InvalidXml { .. }),
                "{doc}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{doc}: {err}");
        }
        let twice = parse("<xml><MsgId>1</MsgId><MsgId>2</MsgId></xml>").unwrap_err();
        assert!(matches!(
            twice,
            DecodeError::InvalidValue { field: "MsgId", .. }
        ));
    }
}
