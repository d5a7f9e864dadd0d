//! Sender-selected distribution: the `CC` and `BCC` headers of a published message name extra
//! routing keys, routed through the same exchange as the message's own key (RabbitMQ's
//! `rabbit_basic:header_routes`). Each header must be an array; its long-string items are the
//! keys (other items are ignored); any other header type refuses the message with RabbitMQ's
//! `invalid message: {unacceptable_type_in_header,"CC",longstr}` (406). `BCC` is removed from
//! the message before it is queued, so no consumer sees it; `CC` stays.

use crate::broker::queue::args::type_name;
use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, FieldValue, ShortStr};

/// The two routing headers, in RabbitMQ's order (`?ROUTING_HEADERS`).
const ROUTING_HEADERS: [&str; 2] = ["CC", "BCC"];

/// The extra routing keys of a message, and its properties with `BCC` removed.
#[derive(Debug, Default)]
pub struct SenderSelected {
    /// The `CC` keys, then the `BCC` keys.
    pub keys: Vec<ShortStr>,
    /// The properties to queue the message with, when `BCC` had to be removed.
    pub stripped: Option<Properties>,
}

/// Cheap test on the encoded properties: could they hold a `CC` or `BCC` header? (A false
/// positive only costs a headers decode.)
fn may_have_routing_headers(raw: &[u8]) -> bool {
    raw.windows(3).any(|w| w == b"\x02CC" || w == b"\x03BCC")
}

/// Reads `CC` and `BCC` from `props`. `Err` carries the 406 text.
pub fn sender_selected(props: &Properties) -> Result<SenderSelected, String> {
    if !may_have_routing_headers(props.as_bytes()) {
        return Ok(SenderSelected::default());
    }
    let Some(mut headers) = props.headers() else {
        return Ok(SenderSelected::default());
    };
    let mut out = SenderSelected::default();
    for name in ROUTING_HEADERS {
        match headers.get(name) {
            None => {}
            Some(FieldValue::Array(items)) => {
                out.keys.extend(items.iter().filter_map(|v| match v {
                    FieldValue::LongStr(s) => ShortStr::try_from(s.to_str()?).ok(),
                    _ => None,
                }))
            }
            Some(other) => {
                return Err(format!(
                    "invalid message: {{unacceptable_type_in_header,\"{name}\",{}}}",
                    type_name(other)
                ));
            }
        }
    }
    if headers.remove("BCC").is_some() {
        out.stripped = Some(with_headers(props, headers));
    }
    Ok(out)
}

/// `props` with its headers table replaced.
fn with_headers(props: &Properties, headers: FieldTable) -> Properties {
    let mut p = props.decode();
    p.headers = Some(headers);
    Properties::from(&p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties::BasicProperties;
    use crate::protocol::types::LongStr;

    fn props(h: Vec<(&'static str, FieldValue)>) -> Properties {
        Properties::from(&BasicProperties {
            headers: Some(FieldTable(
                h.into_iter()
                    .map(|(k, v)| (ShortStr::from_static(k), v))
                    .collect(),
            )),
            ..Default::default()
        })
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(LongStr::from(v))
    }

    #[test]
    fn keys_come_from_cc_then_bcc_and_bcc_is_stripped() {
        let p = props(vec![
            ("BCC", FieldValue::Array(vec![s("b1")])),
            (
                "CC",
                FieldValue::Array(vec![s("c1"), FieldValue::I32(3), s("c2")]),
            ),
            ("other", s("x")),
        ]);
        let got = sender_selected(&p).expect("ok");
        let keys: Vec<&str> = got.keys.iter().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["c1", "c2", "b1"]);
        let h = got.stripped.expect("stripped").headers().expect("headers");
        assert!(h.get("BCC").is_none());
        assert!(h.get("CC").is_some() && h.get("other").is_some());
    }

    #[test]
    fn no_routing_headers_costs_nothing_and_cc_alone_is_not_rewritten() {
        assert!(
            sender_selected(&Properties::EMPTY)
                .expect("ok")
                .keys
                .is_empty()
        );
        let got =
            sender_selected(&props(vec![("CC", FieldValue::Array(vec![s("c")]))])).expect("ok");
        assert_eq!(got.keys.len(), 1);
        assert!(got.stripped.is_none());
    }

    #[test]
    fn a_non_array_header_is_refused_with_rabbitmq_text() {
        let e = sender_selected(&props(vec![("CC", s("k"))])).expect_err("refused");
        assert_eq!(
            e,
            "invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
        );
    }
}
