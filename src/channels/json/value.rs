//! The two lenient value types the JSON decoders declare their fields with: [`Any`] for a
//! scalar or array, [`Nested`] for an object the decoder reads into (Weibo's `user`, `geo`).
//! Both accept every JSON type, so a wrong type reaches the decoder's own check, which names the
//! field.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Any JSON value, kept only as far as a decoder needs it: objects are skipped (a nested object
/// the decoder wants is declared as [`Nested`]), so only their kind survives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Any<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Any<'a>>),
    Object,
}

impl Any<'_> {
    /// The JSON type's name, for "expected …, found …" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Any::Null => "null",
            Any::Bool(_) => "boolean",
            Any::Int(_) | Any::UInt(_) => "integer",
            Any::Float(_) => "number",
            Any::Str(_) => "string",
            Any::Array(_) => "array",
            Any::Object => "object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Any<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}

struct AnyVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for AnyVisitor<'a> {
    type Value = Any<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Any<'a>, E> {
        Ok(Any::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Any<'a>, E> {
        Ok(Any::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Any<'a>, E> {
        Ok(Any::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Any<'a>, E> {
        Ok(Any::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Any<'a>, E> {
        Ok(Any::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Any<'a>, E> {
        Ok(Any::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Any<'a>, E> {
        Ok(Any::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Any<'a>, E> {
        Ok(Any::Null)
    }
    fn visit_none<E>(self) -> Result<Any<'a>, E> {
        Ok(Any::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any<'a>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Any::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Any::Object)
    }
}

/// A field that should hold an object of shape `T` (Weibo's `user`, `geo`), or whatever else the
/// input put there, by kind, so the decoder can name the field in a wrong-type error.
#[derive(Debug)]
pub(crate) enum Nested<T> {
    Object(T),
    Other(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NestedVisitor(PhantomData))
    }
}

struct NestedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NestedVisitor<T> {
    type Value = Nested<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Nested::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nested<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Nested::Other("array"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Nested<T>, E> {
        Ok(Nested::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Nested<T>, E> {
        Ok(Nested::Other("integer"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Nested<T>, E> {
        Ok(Nested::Other("integer"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Nested<T>, E> {
        Ok(Nested::Other("number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Nested<T>, E> {
        Ok(Nested::Other("string"))
    }
    fn visit_unit<E>(self) -> Result<Nested<T>, E> {
        Ok(Nested::Other("null"))
    }
}
