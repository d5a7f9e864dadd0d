//! The headers exchange's matcher: binding arguments against a message's `headers` table.
//!
//! Owns the `x-match` rules and how header values compare; knows no queues and no wire beyond the
//! shared field-table types. The broker parses a binding's arguments once
//! ([`HeadersBinding::parse`], which is also its validation) and calls
//! [`HeadersBinding::matches`] per message.
//!
//! # Rules (RabbitMQ 4.x's `rabbit_exchange_type_headers` with `mc_amqpl:routing_headers`)
//! - `x-match` is `all` (the default when absent), `any`, `all-with-x` or `any-with-x`. Anything
//!   else fails the binding with RabbitMQ's 406 text, see [`HeadersBinding::parse`].
//! - Every other binding argument is a condition on the header of the same name, except that
//!   arguments whose name starts with `x-` are ignored unless the mode is a `-with-x` one.
//!   `x-match` itself is never a condition.
//! - A condition whose value is void (`V`) only asks for the header to be present, with any value.
//! - `all` needs every condition to hold (so no conditions matches every message); `any` needs one
//!   (so no conditions matches nothing). A message without headers has no header present.
//! - If a message repeats a header name, the last occurrence counts (RabbitMQ folds the table into
//!   a map). Names compare byte for byte.
//!
//! # How values compare
//! RabbitMQ strips the field types and compares the bare Erlang terms with `=:=`, so:
//! - every integer type compares by numeric value (`b 1` equals `l 1`), but never equals a float;
//! - `f` and `d` floats compare by value with each other (exactly, bit for bit);
//! - long strings and byte arrays compare by bytes, with each other too;
//! - booleans, decimals (scale and value) compare with their own kind only;
//! - arrays and tables compare exactly, element types included, in order (an empty array equals
//!   an empty table: both are the empty list in Erlang);
//! - **timestamps in message headers count in milliseconds**: RabbitMQ 4.x multiplies a `T` header
//!   by 1000 before matching (`mc_amqpl:routing_value`), while the binding's value is taken as is.
//!   So a `T 5` header matches a binding value `l 5000`, not `T 5`. We follow RabbitMQ here so that
//!   routing is identical; nested timestamps (inside arrays and tables) are not scaled.

use crate::protocol::types::{FieldTable, FieldValue, ShortStr};
use std::fmt::Write as _;

/// The binding argument that selects the mode.
const X_MATCH: &str = "x-match";

/// How a headers binding combines its conditions (the `x-match` binding argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XMatch {
    /// `all`: every condition must hold; `x-` arguments are ignored. The default.
    All,
    /// `any`: at least one condition must hold; `x-` arguments are ignored.
    Any,
    /// `all-with-x`: like `all`, but `x-` arguments are conditions too.
    AllWithX,
    /// `any-with-x`: like `any`, but `x-` arguments are conditions too.
    AnyWithX,
}

impl XMatch {
    /// The mode named by an `x-match` value, byte for byte (case-sensitive, as RabbitMQ).
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        match value {
            b"all" => Some(XMatch::All),
            b"any" => Some(XMatch::Any),
            b"all-with-x" => Some(XMatch::AllWithX),
            b"any-with-x" => Some(XMatch::AnyWithX),
            _ => None,
        }
    }

    /// The mode's `x-match` value.
    pub fn as_str(self) -> &'static str {
        match self {
            XMatch::All => "all",
            XMatch::Any => "any",
            XMatch::AllWithX => "all-with-x",
            XMatch::AnyWithX => "any-with-x",
        }
    }

    /// True when one holding condition is enough.
    pub fn is_any(self) -> bool {
        matches!(self, XMatch::Any | XMatch::AnyWithX)
    }

    /// True when arguments named `x-…` are conditions too.
    pub fn with_x(self) -> bool {
        matches!(self, XMatch::AllWithX | XMatch::AnyWithX)
    }
}

/// A headers-exchange binding's parsed arguments: the mode and the conditions on headers.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadersBinding {
    x_match: XMatch,
    conditions: Vec<Condition>,
}

/// One condition: the header named `key` is present and, unless `expect` is `None` (a void
/// binding value), equal to `expect` in the sense of the module docs.
#[derive(Clone, Debug, PartialEq)]
struct Condition {
    key: ShortStr,
    expect: Option<FieldValue>,
}

impl HeadersBinding {
    /// Parses binding arguments; Err(text) for an invalid x-match, text as RabbitMQ words it
    /// (without the "PRECONDITION_FAILED - " prefix), e.g.
    /// `Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x`
    /// or `Invalid x-match field type byte (value 1); expected longstr`. The broker answers it with
    /// 406 PRECONDITION_FAILED on the channel.
    pub fn parse(args: &FieldTable) -> Result<Self, String> {
        // RabbitMQ looks up the first `x-match`, as `FieldTable::get` does.
        let x_match = match args.get(X_MATCH) {
            None => XMatch::All,
            Some(FieldValue::LongStr(value)) => {
                XMatch::from_bytes(value.as_bytes()).ok_or_else(|| {
                    let mut text = String::from("Invalid x-match field value ");
                    erl_binary(value.as_bytes(), &mut text);
                    text.push_str("; expected all, any, all-with-x, or any-with-x");
                    text
                })?
            }
            Some(other) => {
                let mut text = format!("Invalid x-match field type {} (value ", erl_type(other));
                erl_term(other, &mut text);
                text.push_str("); expected longstr");
                return Err(text);
            }
        };
        let conditions = args
            .iter()
            .filter(|(key, _)| {
                let key = key.as_bytes();
                key != X_MATCH.as_bytes() && (x_match.with_x() || !key.starts_with(b"x-"))
            })
            .map(|(key, value)| Condition {
                key: key.clone(),
                expect: match value {
                    FieldValue::Void => None,
                    other => Some(other.clone()),
                },
            })
            .collect();
        Ok(HeadersBinding {
            x_match,
            conditions,
        })
    }

    /// The binding's mode.
    pub fn x_match(&self) -> XMatch {
        self.x_match
    }

    /// Whether a message with these `headers` (None when the message has none) matches the
    /// binding. Allocates nothing.
    pub fn matches(&self, headers: Option<&FieldTable>) -> bool {
        let headers: &[(ShortStr, FieldValue)] = headers.map_or(&[], |table| &table.0);
        let holds = |condition: &Condition| {
            // The last occurrence of a repeated header name wins, as in RabbitMQ's map.
            let found = headers
                .iter()
                .rev()
                .find(|(name, _)| name.as_bytes() == condition.key.as_bytes());
            match (found, &condition.expect) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some((_, value)), Some(expect)) => routing_eq(expect, value),
            }
        };
        if self.x_match.is_any() {
            self.conditions.iter().any(holds)
        } else {
            self.conditions.iter().all(holds)
        }
    }
}

/// Any integer type as its value (Erlang has one integer type).
fn integer(value: &FieldValue) -> Option<i128> {
    Some(match *value {
        FieldValue::I8(v) => v.into(),
        FieldValue::U8(v) => v.into(),
        FieldValue::I16(v) => v.into(),
        FieldValue::U16(v) => v.into(),
        FieldValue::I32(v) => v.into(),
        FieldValue::U32(v) => v.into(),
        FieldValue::I64(v) => v.into(),
        FieldValue::Timestamp(v) => v.into(),
        _ => return None,
    })
}

/// Either float type as an `f64` (RabbitMQ widens `f` to a double when decoding).
fn float(value: &FieldValue) -> Option<f64> {
    match *value {
        FieldValue::F32(v) => Some(v.into()),
        FieldValue::F64(v) => Some(v),
        _ => None,
    }
}

/// Long strings and byte arrays as bytes (both are Erlang binaries).
fn binary(value: &FieldValue) -> Option<&[u8]> {
    match value {
        FieldValue::LongStr(v) => Some(v.as_bytes()),
        FieldValue::ByteArray(v) => Some(v),
        _ => None,
    }
}

/// Does a message header value equal a binding value, as RabbitMQ routes (see the module docs)?
fn routing_eq(bound: &FieldValue, header: &FieldValue) -> bool {
    if let Some(bound) = integer(bound) {
        let header = match *header {
            // `mc_amqpl:routing_value(timestamp, V) -> V * 1000`.
            FieldValue::Timestamp(seconds) => Some(i128::from(seconds) * 1000),
            ref other => integer(other),
        };
        return header == Some(bound);
    }
    if let Some(bound) = float(bound) {
        return float(header).is_some_and(|header| header.to_bits() == bound.to_bits());
    }
    if let Some(bound) = binary(bound) {
        return binary(header) == Some(bound);
    }
    exact_eq(bound, header)
}

/// Erlang `=:=` on the decoded terms including their type tags: how values inside arrays and
/// tables compare, and booleans, decimals, lists and void at the top level.
fn exact_eq(a: &FieldValue, b: &FieldValue) -> bool {
    use FieldValue::{Array, F32, F64, Table};
    match (a, b) {
        (F32(x), F32(y)) => x.to_bits() == y.to_bits(),
        (F64(x), F64(y)) => x.to_bits() == y.to_bits(),
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| exact_eq(x, y)),
        (Table(x), Table(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx.as_bytes() == ky.as_bytes() && exact_eq(vx, vy))
        }
        // Both are Erlang lists: equal only when both are empty.
        (Array(x), Table(y)) | (Table(y), Array(x)) => x.is_empty() && y.is_empty(),
        // The remaining variants hold no floats or lists, so derived equality is exact.
        (x, y) => x == y,
    }
}

/// RabbitMQ's name for a field's type (`rabbit_binary_parser`'s atoms).
fn erl_type(value: &FieldValue) -> &'static str {
    match value {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal(_) => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::ByteArray(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

/// Appends a field's decoded Erlang term as `io_lib:format("~tp")` prints it on one line (long
/// nested values, which Erlang would wrap over several lines, stay on one here).
fn erl_term(value: &FieldValue, out: &mut String) {
    // `write!` to a String cannot fail.
    match value {
        FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
        FieldValue::F32(v) => erl_float(f64::from(*v), out),
        FieldValue::F64(v) => erl_float(*v, out),
        FieldValue::Decimal(d) => {
            let _ = write!(out, "{{{},{}}}", d.scale, d.value);
        }
        FieldValue::LongStr(v) => erl_binary(v.as_bytes(), out),
        FieldValue::ByteArray(v) => erl_binary(v, out),
        FieldValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{{},", erl_type(item));
                erl_term(item, out);
                out.push('}');
            }
            out.push(']');
        }
        FieldValue::Table(table) => {
            out.push('[');
            for (i, (key, item)) in table.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                erl_binary(key.as_bytes(), out);
                let _ = write!(out, ",{},", erl_type(item));
                erl_term(item, out);
                out.push('}');
            }
            out.push(']');
        }
        FieldValue::Void => out.push_str("undefined"),
        other => {
            if let Some(v) = integer(other) {
                let _ = write!(out, "{v}");
            }
        }
    }
}

/// Appends a float the way Erlang prints it: shortest round-trip digits, always with a `.` in the
/// mantissa (`1.0`, `1.0e20`). Erlang's switch to exponent notation may differ for some magnitudes.
fn erl_float(v: f64, out: &mut String) {
    let text = format!("{v:?}");
    match text.split_once('e') {
        Some((mantissa, exp)) if !mantissa.contains('.') => {
            let _ = write!(out, "{mantissa}.0e{exp}");
        }
        _ => out.push_str(&text),
    }
}

/// Appends a binary as Erlang's `~tp` prints it: `<<"text">>` when every byte is printable ASCII
/// (or an escapable control character), `<<"text"/utf8>>` for printable UTF-8, else the bytes
/// (`<<0,255>>`).
fn erl_binary(bytes: &[u8], out: &mut String) {
    fn escape(c: char) -> Option<&'static str> {
        Some(match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{0b}' => "\\v",
            '\u{0c}' => "\\f",
            '\u{08}' => "\\b",
            '\u{1b}' => "\\e",
            _ => return None,
        })
    }
    fn printable(c: char) -> bool {
        escape(c).is_some() || !c.is_control()
    }
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| s.chars().all(printable));
    match text {
        Some("") => out.push_str("<<>>"),
        Some(text) => {
            out.push_str("<<\"");
            for c in text.chars() {
                match escape(c) {
                    Some(escaped) => out.push_str(escaped),
                    None => out.push(c),
                }
            }
            out.push('"');
            if !text.is_ascii() {
                out.push_str("/utf8");
            }
            out.push_str(">>");
        }
        None => {
            out.push_str("<<");
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push_str(">>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::{Decimal as Dec, LongStr};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(LongStr::from(v))
    }

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        FieldTable(
            entries
                .iter()
                .map(|(k, v)| (ShortStr::from_static(k), v.clone()))
                .collect(),
        )
    }

    fn binding(entries: &[(&'static str, FieldValue)]) -> HeadersBinding {
        HeadersBinding::parse(&table(entries)).expect("valid binding")
    }

    fn hits(b: &HeadersBinding, headers: &[(&'static str, FieldValue)]) -> bool {
        b.matches(Some(&table(headers)))
    }

    #[test]
    fn x_match_values_parse() {
        for mode in [XMatch::All, XMatch::Any, XMatch::AllWithX, XMatch::AnyWithX] {
            assert_eq!(XMatch::from_bytes(mode.as_str().as_bytes()), Some(mode));
            assert_eq!(binding(&[("x-match", s(mode.as_str()))]).x_match(), mode);
        }
        assert_eq!(
            binding(&[]).x_match(),
            XMatch::All,
            "missing x-match means all"
        );
        assert_eq!(binding(&[("a", s("1"))]).x_match(), XMatch::All);
        assert_eq!(XMatch::from_bytes(b"ALL"), None, "case-sensitive");
        assert_eq!(XMatch::from_bytes(b"all "), None);
    }

    #[test]
    fn all_needs_every_condition() {
        let b = binding(&[
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", FieldValue::I32(2)),
        ]);
        assert!(hits(&b, &[("a", s("1")), ("b", FieldValue::I32(2))]));
        assert!(
            hits(
                &b,
                &[("z", s("0")), ("b", FieldValue::I32(2)), ("a", s("1"))]
            ),
            "order, extras"
        );
        assert!(!hits(&b, &[("a", s("1"))]), "b missing");
        assert!(
            !hits(&b, &[("a", s("1")), ("b", FieldValue::I32(3))]),
            "b differs"
        );
        assert!(!b.matches(None));
        assert!(!hits(&b, &[]));
    }

    #[test]
    fn any_needs_one_condition() {
        let b = binding(&[
            ("x-match", s("any")),
            ("a", s("1")),
            ("b", FieldValue::I32(2)),
        ]);
        assert!(hits(&b, &[("a", s("1"))]));
        assert!(hits(&b, &[("a", s("0")), ("b", FieldValue::I32(2))]));
        assert!(!hits(&b, &[("a", s("0")), ("b", FieldValue::I32(0))]));
        assert!(!hits(&b, &[("c", s("1"))]));
        assert!(!b.matches(None));
    }

    #[test]
    fn no_conditions_all_matches_everything_any_nothing() {
        for args in [vec![], vec![("x-match", s("all"))], vec![("x-foo", s("1"))]] {
            let b = binding(&args);
            assert!(b.matches(None), "{args:?}");
            assert!(hits(&b, &[("a", s("1"))]));
        }
        for args in [
            vec![("x-match", s("any"))],
            vec![("x-match", s("any")), ("x-foo", s("1"))],
        ] {
            let b = binding(&args);
            assert!(!b.matches(None), "{args:?}");
            assert!(!hits(&b, &[("x-foo", s("1"))]));
        }
        assert!(binding(&[("x-match", s("all-with-x"))]).matches(None));
        assert!(!binding(&[("x-match", s("any-with-x"))]).matches(None));
    }

    #[test]
    fn x_arguments_are_ignored_unless_with_x() {
        let args = |mode: &str| {
            binding(&[
                ("x-match", s(mode)),
                ("x-tenant", s("t1")),
                ("kind", s("k")),
            ])
        };
        let (all, any, all_x, any_x) = (
            args("all"),
            args("any"),
            args("all-with-x"),
            args("any-with-x"),
        );
        let kind_only = [("kind", s("k"))];
        let tenant_only = [("x-tenant", s("t1"))];
        let both = [("kind", s("k")), ("x-tenant", s("t1"))];
        let wrong_tenant = [("kind", s("k")), ("x-tenant", s("t2"))];

        assert!(hits(&all, &kind_only));
        assert!(hits(&all, &wrong_tenant));
        assert!(
            !hits(&any, &tenant_only),
            "x- argument is no condition for any"
        );
        assert!(hits(&any, &kind_only));

        assert!(!hits(&all_x, &kind_only));
        assert!(!hits(&all_x, &wrong_tenant));
        assert!(hits(&all_x, &both));
        assert!(hits(&any_x, &tenant_only));
        assert!(hits(&any_x, &kind_only));
        assert!(!hits(&any_x, &[("x-tenant", s("t2"))]));
    }

    #[test]
    fn x_match_is_never_a_condition() {
        // Not even in the -with-x modes, and whatever the message's own x-match header says.
        let b = binding(&[("x-match", s("all-with-x")), ("a", s("1"))]);
        assert!(hits(&b, &[("a", s("1"))]));
        assert!(hits(&b, &[("a", s("1")), ("x-match", s("any"))]));
        let b = binding(&[("x-match", s("any-with-x"))]);
        assert!(!hits(&b, &[("x-match", s("any-with-x"))]));
    }

    #[test]
    fn void_binding_value_means_present() {
        let b = binding(&[("a", FieldValue::Void)]);
        assert!(hits(&b, &[("a", s("anything"))]));
        assert!(hits(&b, &[("a", FieldValue::Void)]));
        assert!(hits(&b, &[("a", FieldValue::Table(FieldTable::new()))]));
        assert!(!hits(&b, &[("b", s("x"))]));
        assert!(!b.matches(None));
        // A void header only satisfies a presence condition.
        let b = binding(&[("a", s(""))]);
        assert!(!hits(&b, &[("a", FieldValue::Void)]));
        let b = binding(&[
            ("x-match", s("any")),
            ("a", FieldValue::Void),
            ("b", s("2")),
        ]);
        assert!(hits(&b, &[("a", FieldValue::I8(0))]));
    }

    #[test]
    fn last_repeated_header_wins_and_names_are_exact() {
        let b = binding(&[("a", s("1"))]);
        assert!(hits(&b, &[("a", s("0")), ("a", s("1"))]));
        assert!(!hits(&b, &[("a", s("1")), ("a", s("0"))]));
        assert!(!hits(&b, &[("A", s("1"))]), "names are case-sensitive");
        // Each binding argument is its own condition, even when repeated.
        let b = binding(&[("a", s("1")), ("a", s("2"))]);
        assert!(!hits(&b, &[("a", s("1"))]));
        let b = binding(&[("x-match", s("any")), ("a", s("1")), ("a", s("2"))]);
        assert!(hits(&b, &[("a", s("2"))]));
    }

    /// Does a binding `a = bound` match a message header `a = header`?
    fn eq(bound: FieldValue, header: FieldValue) -> bool {
        hits(&binding(&[("a", bound)]), &[("a", header)])
    }

    #[test]
    fn integers_compare_by_value_across_widths() {
        use FieldValue::*;
        assert!(eq(I8(1), I64(1)));
        assert!(eq(U8(200), I16(200)));
        assert!(eq(U16(65535), U32(65535)));
        assert!(eq(I32(-5), I64(-5)));
        assert!(eq(U32(u32::MAX), I64(i64::from(u32::MAX))));
        assert!(!eq(I64(7), Timestamp(0)));
        assert!(!eq(I8(-1), U8(255)));
        assert!(!eq(I64(1), I64(2)));
    }

    #[test]
    fn numbers_of_different_kinds_never_match() {
        use FieldValue::*;
        assert!(!eq(I64(1), F64(1.0)), "=:= keeps integers and floats apart");
        assert!(!eq(F32(1.0), I8(1)));
        assert!(!eq(Bool(true), I8(1)));
        assert!(!eq(s("1"), I32(1)));
        assert!(!eq(I32(1), s("1")));
        assert!(!eq(Decimal(Dec { scale: 0, value: 1 }), I32(1)));
    }

    #[test]
    fn floats_compare_exactly_across_widths() {
        use FieldValue::*;
        assert!(eq(F32(1.5), F64(1.5)));
        assert!(eq(F64(0.25), F32(0.25)));
        assert!(
            !eq(F64(0.1), F32(0.1)),
            "0.1f32 widens to 0.10000000149011612"
        );
        assert!(eq(F32(0.1), F32(0.1)));
        assert!(!eq(F64(0.0), F64(-0.0)));
    }

    #[test]
    fn strings_and_byte_arrays_compare_as_bytes() {
        use FieldValue::*;
        assert!(eq(s("abc"), s("abc")));
        assert!(eq(s("abc"), ByteArray(Bytes::from_static(b"abc"))));
        assert!(eq(
            ByteArray(Bytes::from_static(b"\xff")),
            LongStr(crate::protocol::types::LongStr::from(vec![0xff]))
        ));
        assert!(!eq(s("abc"), s("ABC")));
        assert!(!eq(s(""), Void));
        assert!(eq(s(""), s("")));
    }

    #[test]
    fn booleans_and_decimals() {
        use FieldValue::*;
        let d = |scale, value| Decimal(Dec { scale, value });
        assert!(eq(Bool(true), Bool(true)));
        assert!(!eq(Bool(true), Bool(false)));
        assert!(eq(d(2, 150), d(2, 150)));
        assert!(
            !eq(d(2, 150), d(1, 15)),
            "decimals compare as {{scale, value}}"
        );
    }

    #[test]
    fn message_timestamps_count_in_milliseconds() {
        use FieldValue::*;
        assert!(
            !eq(Timestamp(5), Timestamp(5)),
            "RabbitMQ 4.x scales only the header"
        );
        assert!(eq(I64(5000), Timestamp(5)));
        assert!(eq(Timestamp(5000), Timestamp(5)));
        assert!(eq(Timestamp(0), Timestamp(0)));
        assert!(
            eq(Timestamp(5), I64(5)),
            "a binding timestamp is a plain integer"
        );
        // No overflow for the largest timestamps.
        assert!(!eq(I64(i64::MAX), Timestamp(u64::MAX)));
        // Nested timestamps are not scaled.
        assert!(eq(Array(vec![Timestamp(5)]), Array(vec![Timestamp(5)])));
    }

    #[test]
    fn arrays_and_tables_compare_exactly() {
        use FieldValue::*;
        assert!(eq(Array(vec![I32(1), s("x")]), Array(vec![I32(1), s("x")])));
        assert!(
            !eq(Array(vec![I32(1)]), Array(vec![I64(1)])),
            "element types count"
        );
        assert!(!eq(Array(vec![F32(1.5)]), Array(vec![F64(1.5)])));
        assert!(!eq(
            Array(vec![s("x")]),
            Array(vec![ByteArray(Bytes::from_static(b"x"))])
        ));
        assert!(!eq(
            Array(vec![I32(1), I32(2)]),
            Array(vec![I32(2), I32(1)])
        ));
        assert!(!eq(Array(vec![I32(1)]), Array(vec![I32(1), I32(1)])));
        let t = |e: &[(&'static str, FieldValue)]| Table(table(e));
        assert!(eq(t(&[("k", I8(1))]), t(&[("k", I8(1))])));
        assert!(!eq(t(&[("k", I8(1))]), t(&[("k", I16(1))])));
        assert!(
            !eq(
                t(&[("k", I8(1)), ("j", Void)]),
                t(&[("j", Void), ("k", I8(1))])
            ),
            "order counts"
        );
        assert!(eq(
            t(&[("k", Array(vec![Void]))]),
            t(&[("k", Array(vec![Void]))])
        ));
        assert!(eq(Array(vec![]), t(&[])), "both are []");
        assert!(eq(t(&[]), Array(vec![])));
        assert!(!eq(Array(vec![I8(1)]), t(&[("k", I8(1))])));
        assert!(!eq(Array(vec![]), s("")));
    }

    fn parse_err(args: &[(&'static str, FieldValue)]) -> String {
        HeadersBinding::parse(&table(args)).expect_err("invalid binding")
    }

    #[test]
    fn invalid_x_match_value_has_rabbitmqs_text() {
        assert_eq!(
            parse_err(&[("x-match", s("bogus"))]),
            r#"Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x"#
        );
        assert_eq!(
            parse_err(&[("x-match", s("ANY")), ("a", s("1"))]),
            r#"Invalid x-match field value <<"ANY">>; expected all, any, all-with-x, or any-with-x"#
        );
        assert_eq!(
            parse_err(&[("x-match", s(""))]),
            "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            parse_err(&[("x-match", s("a\"b\\c\n"))]),
            r#"Invalid x-match field value <<"a\"b\\c\n">>; expected all, any, all-with-x, or any-with-x"#
        );
        assert_eq!(
            parse_err(&[("x-match", s("tous-les-événements"))]),
            "Invalid x-match field value <<\"tous-les-événements\"/utf8>>; \
             expected all, any, all-with-x, or any-with-x"
        );
        assert_eq!(
            parse_err(&[("x-match", FieldValue::LongStr(LongStr::from(vec![0, 255])))]),
            "Invalid x-match field value <<0,255>>; expected all, any, all-with-x, or any-with-x"
        );
    }

    #[test]
    fn invalid_x_match_type_has_rabbitmqs_text() {
        use FieldValue::*;
        let cases = [
            (I8(1), "byte (value 1)"),
            (U8(1), "unsignedbyte (value 1)"),
            (I16(-2), "short (value -2)"),
            (U16(2), "unsignedshort (value 2)"),
            (I32(3), "signedint (value 3)"),
            (U32(3), "unsignedint (value 3)"),
            (I64(4), "long (value 4)"),
            (F32(1.5), "float (value 1.5)"),
            (F64(1.0), "double (value 1.0)"),
            (F64(1e20), "double (value 1.0e20)"),
            (
                Decimal(Dec {
                    scale: 2,
                    value: 150,
                }),
                "decimal (value {2,150})",
            ),
            (Bool(true), "bool (value true)"),
            (Timestamp(9), "timestamp (value 9)"),
            (Void, "void (value undefined)"),
            (
                ByteArray(Bytes::from_static(b"all")),
                r#"binary (value <<"all">>)"#,
            ),
            (
                Array(vec![I64(1), s("all")]),
                r#"array (value [{long,1},{longstr,<<"all">>}])"#,
            ),
            (
                Table(table(&[("k", Bool(false))])),
                r#"table (value [{<<"k">>,bool,false}])"#,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_err(&[("x-match", value)]),
                format!("Invalid x-match field type {expected}; expected longstr")
            );
        }
    }

    #[test]
    fn the_first_x_match_counts() {
        let b = binding(&[
            ("x-match", s("any")),
            ("x-match", s("bogus")),
            ("a", s("1")),
            ("b", s("2")),
        ]);
        assert_eq!(b.x_match(), XMatch::Any);
        assert!(hits(&b, &[("b", s("2"))]));
    }

    /// A small value space, so that bindings and headers collide often.
    fn value_strategy() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            Just(FieldValue::Void),
            (0..3i8).prop_map(FieldValue::I8),
            (0..3i64).prop_map(FieldValue::I64),
            (0..3u64).prop_map(FieldValue::Timestamp),
            prop::sample::select(vec!["", "0", "1"]).prop_map(s),
            any::<bool>().prop_map(FieldValue::Bool),
            prop::sample::select(vec![0.0, 1.0, 1.5]).prop_map(FieldValue::F64),
        ]
    }

    fn entries_strategy() -> impl Strategy<Value = Vec<(&'static str, FieldValue)>> {
        prop::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "x-c", "x-match"]),
                value_strategy(),
            ),
            0..5,
        )
    }

    proptest! {
        /// Parsing accepts exactly the four modes (or none), and never panics.
        #[test]
        fn parse_accepts_exactly_the_four_modes(
            args in entries_strategy(),
            mode in prop_oneof![
                Just(None),
                prop::sample::select(vec!["all", "any", "all-with-x", "any-with-x", "none", ""])
                    .prop_map(|m| Some(s(m))),
                value_strategy().prop_map(Some),
            ],
        ) {
            let mut args: Vec<_> = args.into_iter().filter(|(k, _)| *k != "x-match").collect();
            if let Some(mode) = &mode {
                args.insert(0, ("x-match", mode.clone()));
            }
            let valid = match &mode {
                None => true,
                Some(FieldValue::LongStr(v)) => XMatch::from_bytes(v.as_bytes()).is_some(),
                Some(_) => false,
            };
            prop_assert_eq!(HeadersBinding::parse(&table(&args)).is_ok(), valid);
        }

        /// `all` is the conjunction and `any` the disjunction of one-condition bindings, the order
        /// of binding arguments does not matter, and `all` implies `any` when there is a condition.
        #[test]
        fn modes_decompose_into_single_conditions(
            args in entries_strategy(),
            headers in prop::option::of(entries_strategy()),
            with_x in any::<bool>(),
        ) {
            let args: Vec<_> = args.into_iter().filter(|(k, _)| *k != "x-match").collect();
            let headers = headers.map(|h| table(&h));
            let (all, any_mode) = if with_x { ("all-with-x", "any-with-x") } else { ("all", "any") };
            let with_mode = |mode: &str, args: &[(&'static str, FieldValue)]| {
                let mut v = vec![("x-match", s(mode))];
                v.extend_from_slice(args);
                binding(&v).matches(headers.as_ref())
            };
            let singles: Vec<bool> = args
                .iter()
                .filter(|(k, _)| with_x || !k.starts_with("x-"))
                .map(|entry| with_mode(all, std::slice::from_ref(entry)))
                .collect();
            let all_result = with_mode(all, &args);
            let any_result = with_mode(any_mode, &args);
            prop_assert_eq!(all_result, singles.iter().all(|&b| b));
            prop_assert_eq!(any_result, singles.iter().any(|&b| b));
            let reversed: Vec<_> = args.iter().rev().cloned().collect();
            prop_assert_eq!(with_mode(all, &reversed), all_result);
            prop_assert_eq!(with_mode(any_mode, &reversed), any_result);
            if !singles.is_empty() && all_result {
                prop_assert!(any_result);
            }
        }
    }
}
