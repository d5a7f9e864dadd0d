//! The hot path of reading: a scanner for the three frames that make up nearly all the
//! traffic (basic.deliver / basic.publish, content header, content body), which reads them in
//! place, without building a `Frame` (about 400 bytes, moved several times) or splitting the
//! buffer per frame. Every other frame, and any hot frame that does not look exactly as
//! expected, is reported as [`Scanned::Other`] and goes through `frame::decode`, the codec.
//!
//! The scanner checks what the codec checks first (frame type, size against frame_max, the end
//! octet, field lengths) but not what it does not need: the UTF-8 of the short strings it
//! skips and the content-header properties. Tests check it against the codec on frames the
//! codec encodes and on arbitrary bytes.

use std::ops::Range;

use lagomorph::protocol::frame::{
    FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_OVERHEAD,
};
use lagomorph::protocol::{FrameError, Octets};

/// basic class id.
const BASIC: u16 = 60;
/// basic.publish method id.
const PUBLISH: u16 = 40;
/// basic.deliver method id.
const DELIVER: u16 = 60;

/// What starts at the scanned position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// Not a whole frame yet.
    Incomplete,
    /// A basic.deliver method frame.
    Deliver {
        /// Its delivery tag.
        delivery_tag: u64,
        /// Bytes the frame takes.
        len: usize,
    },
    /// A basic.publish method frame.
    Publish {
        /// Its channel.
        channel: u16,
        /// Bytes the frame takes.
        len: usize,
    },
    /// A basic content header.
    Header {
        /// The body size it announces.
        body_size: u64,
        /// Bytes the frame takes.
        len: usize,
    },
    /// A content body frame.
    Body {
        /// Where the payload is, relative to the scanned position.
        payload: Range<usize>,
        /// Bytes the frame takes.
        len: usize,
    },
    /// Some other frame (or an odd hot frame): decode it with the codec.
    Other,
}

/// Scans the frame at the start of `buf`. Errors are the codec's, for what the scanner checks
/// before the codec would (frame type, size, end octet).
pub(crate) fn scan(buf: &[u8], frame_max: u32) -> Result<Scanned, FrameError> {
    let Some(head) = buf.first_chunk::<7>() else {
        return Ok(Scanned::Incomplete);
    };
    let kind = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownFrameType(kind));
    }
    // The codec's limit: a payload of up to frame_max bytes (RabbitMQ's slack of 8).
    if frame_max != 0 && size as u64 > u64::from(frame_max) {
        return Err(FrameError::TooLarge {
            kind,
            size: size as u64,
            max: frame_max,
        });
    }
    let len = size + FRAME_OVERHEAD;
    if buf.len() < len {
        return Ok(Scanned::Incomplete);
    }
    if buf[len - 1] != FRAME_END {
        return Err(FrameError::BadFrameEnd {
            kind,
            octets: Octets::of(&buf[7..len - 1]),
            end: buf[len - 1],
        });
    }
    let payload = &buf[7..7 + size];
    if channel == 0 && kind != FRAME_METHOD {
        // Content on channel 0 is a protocol error the codec reports.
        return Ok(Scanned::Other);
    }
    Ok(match kind {
        FRAME_METHOD => method(payload, channel, len),
        FRAME_HEADER => match payload.first_chunk::<12>() {
            Some(h) if u16::from_be_bytes([h[0], h[1]]) == BASIC && h[2] == 0 && h[3] == 0 => {
                Scanned::Header {
                    body_size: u64::from_be_bytes([
                        h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11],
                    ]),
                    len,
                }
            }
            _ => Scanned::Other,
        },
        FRAME_BODY => Scanned::Body {
            payload: 7..7 + size,
            len,
        },
        _ => Scanned::Other,
    })
}

/// basic.deliver and basic.publish, when their fields fill the payload exactly.
fn method(p: &[u8], channel: u16, len: usize) -> Scanned {
    let Some(ids) = p.first_chunk::<4>() else {
        return Scanned::Other;
    };
    let class = u16::from_be_bytes([ids[0], ids[1]]);
    let id = u16::from_be_bytes([ids[2], ids[3]]);
    if class != BASIC {
        return Scanned::Other;
    }
    let mut at = 4;
    // A short string: its length octet and bytes.
    let short = |at: &mut usize| -> Option<()> {
        let n = usize::from(*p.get(*at)?);
        *at += 1 + n;
        (*at <= p.len()).then_some(())
    };
    match id {
        DELIVER => {
            // consumer-tag, delivery-tag, redelivered, exchange, routing-key
            let fields = (|| {
                short(&mut at)?;
                let tag = p.get(at..at + 8)?;
                let delivery_tag = u64::from_be_bytes(tag.try_into().ok()?);
                at += 9;
                short(&mut at)?;
                short(&mut at)?;
                Some(delivery_tag)
            })();
            match fields {
                Some(delivery_tag) if at == p.len() => Scanned::Deliver { delivery_tag, len },
                _ => Scanned::Other,
            }
        }
        PUBLISH => {
            // reserved-1, exchange, routing-key, mandatory|immediate
            at += 2;
            let ok = short(&mut at).and_then(|_| short(&mut at)).is_some();
            if ok && at + 1 == p.len() {
                Scanned::Publish { channel, len }
            } else {
                Scanned::Other
            }
        }
        _ => Scanned::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use lagomorph::protocol::frame::{self, Frame};
    use lagomorph::protocol::method::{BasicDeliver, BasicPublish, Method};
    use lagomorph::protocol::properties::BasicProperties;
    use lagomorph::protocol::types::ShortStr;
    use proptest::prelude::*;

    fn short(s: &str) -> ShortStr {
        ShortStr::try_from(s).expect("short")
    }

    /// What the codec makes of the first frame of `bytes`, in the scanner's terms.
    fn codec_view(bytes: &[u8], frame_max: u32) -> Result<Scanned, FrameError> {
        let mut b = BytesMut::from(bytes);
        let before = b.len();
        let f = match frame::decode(&mut b, frame_max)? {
            None => return Ok(Scanned::Incomplete),
            Some(f) => f,
        };
        let len = before - b.len();
        Ok(match f {
            Frame::Method {
                method: Method::BasicDeliver(d),
                ..
            } => Scanned::Deliver {
                delivery_tag: d.delivery_tag,
                len,
            },
            Frame::Method {
                channel,
                method: Method::BasicPublish(_),
            } => Scanned::Publish { channel, len },
            Frame::Header { header, .. } => Scanned::Header {
                body_size: header.body_size,
                len,
            },
            Frame::Body { payload, .. } => Scanned::Body {
                payload: 7..7 + payload.len(),
                len,
            },
            _ => Scanned::Other,
        })
    }

    #[test]
    fn scans_a_delivery_like_the_codec() {
        let mut b = BytesMut::new();
        frame::encode_method(
            5,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: short("ctag"),
                delivery_tag: 77,
                redelivered: true,
                exchange: short("ex"),
                routing_key: short("rk"),
            }),
            &mut b,
        );
        let props = BasicProperties {
            delivery_mode: Some(2),
            ..BasicProperties::default()
        };
        frame::encode_content(5, 60, &props.into(), b"0123456789abcdef!", 4096, &mut b);
        let mut at = 0;
        let mut got = Vec::new();
        while at < b.len() {
            let s = scan(&b[at..], 4096).expect("scan");
            assert_eq!(Ok(s.clone()), codec_view(&b[at..], 4096));
            at += match s {
                Scanned::Deliver { len, .. }
                | Scanned::Header { len, .. }
                | Scanned::Body { len, .. } => len,
                other => panic!("unexpected {other:?}"),
            };
            got.push(s);
        }
        assert!(matches!(
            got[0],
            Scanned::Deliver {
                delivery_tag: 77,
                ..
            }
        ));
        assert!(matches!(got[1], Scanned::Header { body_size: 17, .. }));
        assert!(matches!(got[2], Scanned::Body { ref payload, .. } if payload.len() == 17));
        assert_eq!(scan(&b[..10], 4096), Ok(Scanned::Incomplete));
    }

    #[test]
    fn other_methods_go_to_the_codec() {
        let mut b = BytesMut::new();
        frame::encode_method(
            1,
            &Method::BasicQosOk(lagomorph::protocol::method::BasicQosOk),
            &mut b,
        );
        assert_eq!(scan(&b, 4096), Ok(Scanned::Other));
        let mut b = BytesMut::new();
        frame::encode_heartbeat(&mut b);
        assert_eq!(scan(&b, 4096), Ok(Scanned::Other));
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9.\\-]{0,40}"
    }

    proptest! {
        #[test]
        fn agrees_with_the_codec_on_encoded_frames(
            ctag in name(), ex in name(), rk in name(), tag in any::<u64>(),
            redelivered in any::<bool>(), mandatory in any::<bool>(), channel in 1..=u16::MAX,
            body in proptest::collection::vec(any::<u8>(), 0..300),
            mode in proptest::option::of(1u8..=2), app in proptest::option::of(name()),
        ) {
            let mut b = BytesMut::new();
            frame::encode_method(channel, &Method::BasicDeliver(BasicDeliver {
                consumer_tag: short(&ctag), delivery_tag: tag, redelivered,
                exchange: short(&ex), routing_key: short(&rk),
            }), &mut b);
            frame::encode_method(channel, &Method::BasicPublish(BasicPublish {
                reserved_1: 0, exchange: short(&ex), routing_key: short(&rk),
                mandatory, immediate: false,
            }), &mut b);
            let props = BasicProperties {
                delivery_mode: mode,
                app_id: app.as_deref().map(short),
                ..BasicProperties::default()
            };
            frame::encode_content(channel, 60, &props.into(), &body, 4096, &mut b);
            let mut at = 0;
            while at < b.len() {
                let s = scan(&b[at..], 4096).expect("scan");
                prop_assert_eq!(Ok(s.clone()), codec_view(&b[at..], 4096));
                at += match s {
                    Scanned::Deliver { len, .. } | Scanned::Publish { len, .. }
                    | Scanned::Header { len, .. } | Scanned::Body { len, .. } => len,
                    other => { prop_assert!(false, "unexpected {:?}", other); 0 }
                };
            }
        }

        #[test]
        fn never_panics_and_never_contradicts_the_codec(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            kind in 1u8..=3, class_ok in any::<bool>(),
        ) {
            // Mostly well-framed garbage, so the field checks get exercised.
            let mut b = vec![kind, 0, 1];
            let mut payload = bytes.clone();
            if class_ok && kind != 3 && payload.len() >= 4 {
                payload[0] = 0;
                payload[1] = 60;
            }
            b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            b.extend_from_slice(&payload);
            b.push(FRAME_END);
            let s = scan(&b, 4096);
            let _ = scan(&bytes, 4096);
            if let (Ok(s), Ok(c)) = (&s, codec_view(&b, 4096))
                && *s != Scanned::Other
            {
                prop_assert_eq!(s, &c);
            }
            if let Ok(Scanned::Body { payload: r, .. }) = &s {
                prop_assert_eq!(&b[r.clone()], &payload[..]);
            }
        }
    }
}
