//! Shared by `codec_props` and `codec_crosscheck`: proptest strategies for field tables and
//! basic properties, conversions to and from amq-protocol's types, and amq-protocol's frame
//! encoder/decoder behind plain functions. The per-method parts are generated (`methods.rs`).
#![allow(dead_code, unreachable_pub)] // test helpers; each test binary uses a different part

pub mod methods;

use std::collections::BTreeMap;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types as amqt;
use bytes::Bytes;
use lagomorph::protocol::properties::BasicProperties;
use lagomorph::protocol::types::{Decimal, FieldTable, FieldValue, LongStr, ShortStr};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Short strings up to the 255-byte limit, ASCII and multi-byte UTF-8.
pub fn short_str() -> BoxedStrategy<ShortStr> {
    prop_oneof![
        4 => "[a-zA-Z0-9._:-]{0,40}",
        2 => "\\PC{0,63}", // at most 63 chars of at most 4 bytes: within 255
        1 => "[a-z]{255}",
    ]
    .prop_map(|s: String| ShortStr::try_from(s).expect("strategy stays within 255 bytes"))
    .boxed()
}

/// Long strings: arbitrary bytes, not necessarily UTF-8.
pub fn long_str() -> BoxedStrategy<LongStr> {
    vec(any::<u8>(), 0..300).prop_map(LongStr::from).boxed()
}

/// Zero/empty when `zero`, else `s`: reserved fields in canonical mode.
pub fn zero_if<T, S>(zero: bool, s: S) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
    S: Strategy<Value = T> + 'static,
{
    if zero {
        Just(T::default()).boxed()
    } else {
        s.boxed()
    }
}

fn finite_f32() -> impl Strategy<Value = f32> {
    use proptest::num::f32::*;
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64::*;
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

/// Every scalar field value type (NaN excluded: it is not equal to itself).
fn leaf_value() -> BoxedStrategy<FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        finite_f32().prop_map(FieldValue::F32),
        finite_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| FieldValue::Decimal(Decimal { scale, value })),
        long_str().prop_map(FieldValue::LongStr),
        vec(any::<u8>(), 0..64).prop_map(|v| FieldValue::ByteArray(Bytes::from(v))),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
    .boxed()
}

fn table_of(value: BoxedStrategy<FieldValue>, canonical: bool) -> BoxedStrategy<FieldTable> {
    if canonical {
        // amq-protocol's tables are BTreeMaps: sorted, unique keys.
        btree_map(short_str(), value, 0..6)
            .prop_map(|m: BTreeMap<ShortStr, FieldValue>| FieldTable(m.into_iter().collect()))
            .boxed()
    } else {
        vec((short_str(), value), 0..6).prop_map(FieldTable).boxed()
    }
}

/// Any value, tables and arrays nested up to 4 levels.
pub fn field_value(canonical: bool) -> BoxedStrategy<FieldValue> {
    leaf_value()
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                table_of(inner, canonical).prop_map(FieldValue::Table),
            ]
        })
        .boxed()
}

/// Any field table, nested. `canonical`: sorted unique keys, as amq-protocol keeps them.
pub fn field_table(canonical: bool) -> BoxedStrategy<FieldTable> {
    table_of(field_value(canonical), canonical)
}

/// Any combination of the 14 basic properties.
pub fn properties(canonical: bool) -> BoxedStrategy<BasicProperties> {
    let s = || proptest::option::of(short_str());
    (
        (s(), s(), proptest::option::of(field_table(canonical))),
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
        ),
        (s(), s(), s(), s()),
        proptest::option::of(any::<u64>()),
        (s(), s(), s(), s()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, headers),
                (delivery_mode, priority),
                (correlation_id, reply_to, expiration, message_id),
                timestamp,
                (kind, user_id, app_id, cluster_id),
            )| BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            },
        )
        .boxed()
}

// ---- ours -> amq-protocol ----

pub fn amq_short(s: &ShortStr) -> amqt::ShortString {
    amqt::ShortString::from(s.as_str())
}

pub fn amq_long(s: &LongStr) -> amqt::LongString {
    amqt::LongString::from(s.as_bytes().to_vec())
}

pub fn amq_value(v: &FieldValue) -> amqt::AMQPValue {
    use amqt::AMQPValue as A;
    match v {
        FieldValue::Bool(b) => A::Boolean(*b),
        FieldValue::I8(x) => A::ShortShortInt(*x),
        FieldValue::U8(x) => A::ShortShortUInt(*x),
        FieldValue::I16(x) => A::ShortInt(*x),
        FieldValue::U16(x) => A::ShortUInt(*x),
        FieldValue::I32(x) => A::LongInt(*x),
        FieldValue::U32(x) => A::LongUInt(*x),
        FieldValue::I64(x) => A::LongLongInt(*x),
        FieldValue::F32(x) => A::Float(*x),
        FieldValue::F64(x) => A::Double(*x),
        FieldValue::Decimal(d) => A::DecimalValue(amqt::DecimalValue {
            scale: d.scale,
            value: d.value,
        }),
        FieldValue::LongStr(s) => A::LongString(amq_long(s)),
        FieldValue::ByteArray(b) => A::ByteArray(amqt::ByteArray::from(b.to_vec())),
        FieldValue::Array(a) => A::FieldArray(amqt::FieldArray::from(
            a.iter().map(amq_value).collect::<Vec<_>>(),
        )),
        FieldValue::Timestamp(t) => A::Timestamp(*t),
        FieldValue::Table(t) => A::FieldTable(amq_table(t)),
        FieldValue::Void => A::Void,
    }
}

pub fn amq_table(t: &FieldTable) -> amqt::FieldTable {
    let mut out = amqt::FieldTable::default();
    for (k, v) in t.iter() {
        out.insert(amq_short(k), amq_value(v));
    }
    out
}

pub fn amq_properties(p: &BasicProperties) -> AMQPProperties {
    let mut a = AMQPProperties::default();
    if let Some(v) = &p.content_type {
        a = a.with_content_type(amq_short(v));
    }
    if let Some(v) = &p.content_encoding {
        a = a.with_content_encoding(amq_short(v));
    }
    if let Some(v) = &p.headers {
        a = a.with_headers(amq_table(v));
    }
    if let Some(v) = p.delivery_mode {
        a = a.with_delivery_mode(v);
    }
    if let Some(v) = p.priority {
        a = a.with_priority(v);
    }
    if let Some(v) = &p.correlation_id {
        a = a.with_correlation_id(amq_short(v));
    }
    if let Some(v) = &p.reply_to {
        a = a.with_reply_to(amq_short(v));
    }
    if let Some(v) = &p.expiration {
        a = a.with_expiration(amq_short(v));
    }
    if let Some(v) = &p.message_id {
        a = a.with_message_id(amq_short(v));
    }
    if let Some(v) = p.timestamp {
        a = a.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        a = a.with_type(amq_short(v));
    }
    if let Some(v) = &p.user_id {
        a = a.with_user_id(amq_short(v));
    }
    if let Some(v) = &p.app_id {
        a = a.with_app_id(amq_short(v));
    }
    if let Some(v) = &p.cluster_id {
        a = a.with_cluster_id(amq_short(v));
    }
    a
}

// ---- amq-protocol -> ours ----

pub fn our_short(s: &amqt::ShortString) -> ShortStr {
    ShortStr::try_from(s.as_str()).expect("amq-protocol short string within 255 bytes")
}

pub fn our_long(s: &amqt::LongString) -> LongStr {
    LongStr::from(s.as_bytes().to_vec())
}

pub fn our_value(v: &amqt::AMQPValue) -> FieldValue {
    use amqt::AMQPValue as A;
    match v {
        A::Boolean(b) => FieldValue::Bool(*b),
        A::ShortShortInt(x) => FieldValue::I8(*x),
        A::ShortShortUInt(x) => FieldValue::U8(*x),
        A::ShortInt(x) => FieldValue::I16(*x),
        A::ShortUInt(x) => FieldValue::U16(*x),
        A::LongInt(x) => FieldValue::I32(*x),
        A::LongUInt(x) => FieldValue::U32(*x),
        A::LongLongInt(x) => FieldValue::I64(*x),
        A::Float(x) => FieldValue::F32(*x),
        A::Double(x) => FieldValue::F64(*x),
        A::DecimalValue(d) => FieldValue::Decimal(Decimal {
            scale: d.scale,
            value: d.value,
        }),
        A::LongString(s) => FieldValue::LongStr(our_long(s)),
        A::ByteArray(b) => FieldValue::ByteArray(Bytes::copy_from_slice(b.as_slice())),
        A::FieldArray(a) => FieldValue::Array(a.as_slice().iter().map(our_value).collect()),
        A::Timestamp(t) => FieldValue::Timestamp(*t),
        A::FieldTable(t) => FieldValue::Table(our_table(t)),
        A::Void => FieldValue::Void,
        A::ShortString(s) => panic!("amq-protocol short string value {s}: not in the errata"),
    }
}

pub fn our_table(t: &amqt::FieldTable) -> FieldTable {
    FieldTable(
        t.inner()
            .iter()
            .map(|(k, v)| (our_short(k), our_value(v)))
            .collect(),
    )
}

pub fn our_properties(a: &AMQPProperties) -> BasicProperties {
    let s = |v: &Option<amqt::ShortString>| v.as_ref().map(our_short);
    BasicProperties {
        content_type: s(a.content_type()),
        content_encoding: s(a.content_encoding()),
        headers: a.headers().as_ref().map(our_table),
        delivery_mode: *a.delivery_mode(),
        priority: *a.priority(),
        correlation_id: s(a.correlation_id()),
        reply_to: s(a.reply_to()),
        expiration: s(a.expiration()),
        message_id: s(a.message_id()),
        timestamp: *a.timestamp(),
        kind: s(a.kind()),
        user_id: s(a.user_id()),
        app_id: s(a.app_id()),
        cluster_id: s(a.cluster_id()),
    }
}

/// A content header as amq-protocol's value.
pub fn amq_header(class_id: u16, body_size: u64, p: &BasicProperties) -> AMQPContentHeader {
    AMQPContentHeader {
        class_id,
        body_size,
        properties: amq_properties(p),
    }
}

// ---- amq-protocol's codec ----

/// The bytes amq-protocol writes for `frame`.
pub fn amq_encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new()))
        .expect("amq-protocol encodes")
        .write
}

/// amq-protocol's reading of one whole frame (which must be all of `bytes`).
pub fn amq_decode(bytes: &[u8]) -> AMQPFrame {
    let (rest, frame) = parse_frame(bytes).expect("amq-protocol decodes");
    assert!(rest.is_empty(), "amq-protocol left {} bytes", rest.len());
    frame
}
