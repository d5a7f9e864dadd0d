//! The generator of `src/protocol/method.rs`, run as a test.
//!
//! It reads `amqp-spec/amqp0-9-1.extended.xml` and `amqp-spec/rabbitmq-extensions.xml` with
//! roxmltree and writes one struct per method, the `Method` enum, nom decoders and `BufMut`
//! encoders, formatted by rustfmt. Like rust-analyzer's `ensure_file_contents`, the test
//! rewrites the committed file when it is stale and then fails, so a changed spec or generator
//! cannot go unnoticed: run `cargo test --test codegen` twice and commit the result.
//!
//! It also checks the hand-written `ReplyCode` table against the XML's reply-code constants.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A method argument, with its domain resolved to a primitive type.
struct Field {
    /// XML name, e.g. `routing-key`.
    name: String,
    /// The domain it was declared with, when that differs from `ty`.
    domain: Option<String>,
    /// Primitive: octet, short, long, longlong, timestamp, bit, shortstr, longstr, table.
    ty: String,
    reserved: bool,
}

struct Method {
    class: String,
    class_id: u16,
    name: String,
    id: u16,
    content: bool,
    synchronous: bool,
    /// Which peers implement (receive) it: "server", "client".
    chassis: Vec<String>,
    responses: Vec<String>,
    fields: Vec<Field>,
}

struct Class {
    name: String,
    id: u16,
    methods: Vec<Method>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const SPEC_FILES: [&str; 2] = [
    "amqp-spec/amqp0-9-1.extended.xml",
    "amqp-spec/rabbitmq-extensions.xml",
];

fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> without {name}", n.tag_name().name()))
}

fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    tag: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(move |c| c.has_tag_name(tag))
}

/// Reads both spec files: domains from both, classes merged by name, methods sorted by index.
fn load() -> Vec<Class> {
    let texts: Vec<String> = SPEC_FILES
        .iter()
        .map(|f| std::fs::read_to_string(root().join(f)).expect("read spec"))
        .collect();
    let docs: Vec<roxmltree::Document<'_>> = texts
        .iter()
        .map(|t| roxmltree::Document::parse(t).expect("parse spec"))
        .collect();

    let mut domains: HashMap<String, String> = HashMap::new();
    for d in &docs {
        for dom in children(d.root_element(), "domain") {
            domains.insert(attr(dom, "name").into(), attr(dom, "type").into());
        }
    }
    let resolve = |mut name: String| {
        // A domain names a type or another domain; primitives map to themselves.
        for _ in 0..8 {
            match domains.get(&name) {
                Some(t) if *t != name => name = t.clone(),
                _ => return name,
            }
        }
        panic!("domain cycle at {name}")
    };

    let mut classes: Vec<Class> = Vec::new();
    for d in &docs {
        for c in children(d.root_element(), "class") {
            let name = attr(c, "name").to_string();
            let id: u16 = attr(c, "index").parse().expect("class index");
            let pos = match classes.iter().position(|k| k.name == name) {
                Some(p) => {
                    assert_eq!(
                        classes[p].id, id,
                        "class {name} index differs between files"
                    );
                    p
                }
                None => {
                    classes.push(Class {
                        name: name.clone(),
                        id,
                        methods: Vec::new(),
                    });
                    classes.len() - 1
                }
            };
            for m in children(c, "method") {
                let fields = children(m, "field")
                    .map(|f| {
                        let (ty, domain) = match f.attribute("type") {
                            Some(t) => (t.to_string(), None),
                            None => {
                                let dom = attr(f, "domain").to_string();
                                let ty = resolve(dom.clone());
                                let domain = (dom != ty).then_some(dom);
                                (ty, domain)
                            }
                        };
                        Field {
                            name: attr(f, "name").into(),
                            domain,
                            ty,
                            reserved: f.attribute("reserved") == Some("1"),
                        }
                    })
                    .collect();
                let method = Method {
                    class: name.clone(),
                    class_id: id,
                    name: attr(m, "name").into(),
                    id: attr(m, "index").parse().expect("method index"),
                    content: m.attribute("content") == Some("1"),
                    synchronous: m.attribute("synchronous") == Some("1"),
                    chassis: children(m, "chassis")
                        .map(|c| attr(c, "name").to_string())
                        .collect(),
                    responses: children(m, "response")
                        .map(|r| attr(r, "name").to_string())
                        .collect(),
                    fields,
                };
                let methods = &mut classes[pos].methods;
                assert!(
                    methods.iter().all(|x| x.id != method.id),
                    "duplicate method id {}.{}",
                    name,
                    method.id
                );
                methods.push(method);
            }
        }
    }
    for c in &mut classes {
        c.methods.sort_by_key(|m| m.id);
    }
    classes
}

fn pascal(s: &str) -> String {
    s.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn field_ident(name: &str) -> String {
    match name {
        "type" => "kind".into(),
        n => n.replace('-', "_"),
    }
}

fn rust_type(ty: &str) -> &'static str {
    match ty {
        "octet" => "u8",
        "short" => "u16",
        "long" => "u32",
        "longlong" | "timestamp" => "u64",
        "bit" => "bool",
        "shortstr" => "ShortStr",
        "longstr" => "LongStr",
        "table" => "FieldTable",
        other => panic!("unknown field type {other}"),
    }
}

/// Octets of a fixed-size type, or None for variable-size ones.
fn fixed_size(ty: &str) -> Option<usize> {
    match ty {
        "octet" => Some(1),
        "short" => Some(2),
        "long" => Some(4),
        "longlong" | "timestamp" => Some(8),
        _ => None,
    }
}

/// A method's arguments as the wire lays them out.
enum Segment<'a> {
    /// Consecutive fixed-size fields and bit octets, read with one bounds check.
    Fixed(Vec<FixedItem<'a>>),
    /// A string or table.
    Var(&'a Field),
}

enum FixedItem<'a> {
    /// A number at `offset` within the run.
    Scalar(&'a Field, usize),
    /// Up to 8 consecutive bits packed into the octet at `offset`, lowest bit first.
    Bits(Vec<&'a Field>, usize),
}

fn run_len(items: &[FixedItem<'_>]) -> usize {
    items
        .iter()
        .map(|it| match it {
            FixedItem::Scalar(f, _) => fixed_size(&f.ty).unwrap_or(0),
            FixedItem::Bits(..) => 1,
        })
        .sum()
}

fn segments(fields: &[Field]) -> Vec<Segment<'_>> {
    let mut out: Vec<Segment<'_>> = Vec::new();
    let mut prev_bit = false;
    for f in fields {
        let is_bit = f.ty == "bit";
        if is_bit || fixed_size(&f.ty).is_some() {
            if !matches!(out.last(), Some(Segment::Fixed(_))) {
                out.push(Segment::Fixed(Vec::new()));
            }
            let Some(Segment::Fixed(items)) = out.last_mut() else {
                unreachable!()
            };
            let offset = run_len(items);
            match items.last_mut() {
                // The spec packs consecutive bits into one octet, a new octet after eight.
                Some(FixedItem::Bits(bits, _)) if is_bit && prev_bit && bits.len() < 8 => {
                    bits.push(f)
                }
                _ if is_bit => items.push(FixedItem::Bits(vec![f], offset)),
                _ => items.push(FixedItem::Scalar(f, offset)),
            }
        } else {
            out.push(Segment::Var(f));
        }
        prev_bit = is_bit;
    }
    out
}

fn struct_name(m: &Method) -> String {
    pascal(&m.class) + &pascal(&m.name)
}

fn wire_name(m: &Method) -> String {
    format!("{}.{}", m.class, m.name)
}

fn method_doc(m: &Method) -> String {
    let sender = match (
        m.chassis.iter().any(|c| c == "server"),
        m.chassis.iter().any(|c| c == "client"),
    ) {
        (true, true) => "Sent by either peer",
        (true, false) => "Sent by the client",
        (false, true) => "Sent by the server",
        (false, false) => "Sent by neither peer (no chassis in the spec)",
    };
    let mut doc = format!(
        "`{}` (class {}, method {}). {sender}",
        wire_name(m),
        m.class_id,
        m.id
    );
    if m.content {
        doc.push_str("; followed by a content header and body frames");
    }
    doc.push('.');
    if m.synchronous && !m.responses.is_empty() {
        let replies: Vec<String> = m
            .responses
            .iter()
            .map(|r| format!("`{}.{r}`", m.class))
            .collect();
        let _ = write!(doc, " Answered with {}.", replies.join(" or "));
    }
    doc
}

fn field_doc(f: &Field) -> String {
    let mut doc = format!("`{}`: {}", f.name, f.ty);
    if let Some(d) = &f.domain {
        let _ = write!(doc, " (domain `{d}`)");
    }
    doc.push('.');
    if f.reserved {
        doc.push_str(" Reserved: send zero or empty, ignore on receipt.");
    }
    doc
}

fn gen_struct(out: &mut String, m: &Method) {
    let name = struct_name(m);
    let _ = writeln!(out, "/// {}", method_doc(m));
    let _ = writeln!(out, "#[derive(Clone, Debug, Default, PartialEq)]");
    if m.fields.is_empty() {
        let _ = writeln!(out, "pub struct {name};\n");
    } else {
        let _ = writeln!(out, "pub struct {name} {{");
        for f in &m.fields {
            let _ = writeln!(out, "/// {}", field_doc(f));
            let _ = writeln!(out, "pub {}: {},", field_ident(&f.name), rust_type(&f.ty));
        }
        let _ = writeln!(out, "}}\n");
    }

    let _ = writeln!(out, "impl {name} {{");
    let _ = writeln!(out, "/// The class id, {}.", m.class_id);
    let _ = writeln!(out, "pub const CLASS_ID: u16 = {};", m.class_id);
    let _ = writeln!(out, "/// The method id, {}.", m.id);
    let _ = writeln!(out, "pub const METHOD_ID: u16 = {};", m.id);
    let _ = writeln!(out, "/// The spec's name, `{}`.", wire_name(m));
    let _ = writeln!(
        out,
        "pub const NAME: &'static str = \"{}\";\n",
        wire_name(m)
    );
    gen_decode(out, m);
    gen_len(out, m);
    gen_encode(out, m);
    let _ = writeln!(out, "}}\n");

    let _ = writeln!(out, "impl From<{name}> for Method {{");
    let _ = writeln!(out, "fn from(m: {name}) -> Method {{ Method::{name}(m) }}");
    let _ = writeln!(out, "}}\n");
}

fn gen_decode(out: &mut String, m: &Method) {
    let segs = segments(&m.fields);
    let p = if segs.iter().any(|s| matches!(s, Segment::Var(_))) {
        "p"
    } else {
        "_p"
    };
    let _ = writeln!(
        out,
        "/// Parses the arguments (after class and method id) into `self`, overwriting every\n\
         /// field; long strings are slices of `p`. Returns the input left over."
    );
    // Filled in place and inlined into its arm of `Method::decode_into`: each field is
    // written once, where it stays, instead of being built here and moved out through each
    // `Result` layer (a short string is 40 bytes; moving them cost more than parsing them).
    let _ = writeln!(out, "#[inline(always)]");
    let _ = writeln!(
        out,
        "fn decode_fields<'a>(&mut self, {p}: &Bytes, i: &'a [u8]) -> wire::Rest<'a> {{"
    );
    for (n, seg) in segs.iter().enumerate() {
        match seg {
            Segment::Var(f) => {
                let id = field_ident(&f.name);
                let _ = match f.ty.as_str() {
                    "shortstr" => {
                        writeln!(out, "let i = wire::short_str_into(p, i, &mut self.{id})?;")
                    }
                    "longstr" => {
                        writeln!(out, "let (i, v) = wire::long_str(p, i)?;\nself.{id} = v;")
                    }
                    "table" => {
                        writeln!(
                            out,
                            "let (i, v) = types::parse_table(p, i, 1)?;\nself.{id} = v;"
                        )
                    }
                    t => panic!("not variable: {t}"),
                };
            }
            Segment::Fixed(items) => {
                let len = run_len(items);
                let _ = writeln!(out, "let (i, f{n}) = wire::fixed::<{len}>(i)?;");
                for it in items {
                    match it {
                        FixedItem::Scalar(f, off) => {
                            let size = fixed_size(&f.ty).unwrap_or(0);
                            let bytes: Vec<String> =
                                (0..size).map(|k| format!("f{n}[{}]", off + k)).collect();
                            let _ = writeln!(
                                out,
                                "self.{} = {}::from_be_bytes([{}]);",
                                field_ident(&f.name),
                                rust_type(&f.ty),
                                bytes.join(", ")
                            );
                        }
                        FixedItem::Bits(bits, off) => {
                            for (k, f) in bits.iter().enumerate() {
                                let _ = writeln!(
                                    out,
                                    "self.{} = f{n}[{off}] & 0x{:02x} != 0;",
                                    field_ident(&f.name),
                                    1u8 << k
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "Ok(i)");
    let _ = writeln!(out, "}}\n");
}

fn gen_len(out: &mut String, m: &Method) {
    let mut constant = 0;
    let mut parts: Vec<String> = Vec::new();
    for seg in segments(&m.fields) {
        match seg {
            Segment::Fixed(items) => constant += run_len(&items),
            Segment::Var(f) => {
                let id = field_ident(&f.name);
                match f.ty.as_str() {
                    "shortstr" => {
                        constant += 1;
                        parts.push(format!("self.{id}.len()"));
                    }
                    "longstr" => {
                        constant += 4;
                        parts.push(format!("self.{id}.len()"));
                    }
                    "table" => parts.push(format!("self.{id}.encoded_len()")),
                    t => panic!("not variable: {t}"),
                }
            }
        }
    }
    if constant != 0 || parts.is_empty() {
        parts.insert(0, constant.to_string());
    }
    let _ = writeln!(out, "/// Bytes the arguments take on the wire.");
    let _ = writeln!(
        out,
        "fn encoded_len(&self) -> usize {{ {} }}\n",
        parts.join(" + ")
    );
}

fn gen_encode(out: &mut String, m: &Method) {
    let buf = if m.fields.is_empty() { "_buf" } else { "buf" };
    let _ = writeln!(out, "/// Writes the arguments (after class and method id).");
    let _ = writeln!(out, "fn encode_fields(&self, {buf}: &mut BytesMut) {{");
    for seg in segments(&m.fields) {
        match seg {
            Segment::Var(f) => {
                let id = field_ident(&f.name);
                let _ = match f.ty.as_str() {
                    "shortstr" => writeln!(out, "wire::put_short_str(buf, &self.{id});"),
                    "longstr" => writeln!(out, "wire::put_long_str(buf, &self.{id});"),
                    "table" => writeln!(out, "types::put_table(&self.{id}, buf);"),
                    t => panic!("not variable: {t}"),
                };
            }
            Segment::Fixed(items) => {
                for it in items {
                    match it {
                        FixedItem::Scalar(f, _) => {
                            let put = match f.ty.as_str() {
                                "octet" => "put_u8",
                                "short" => "put_u16",
                                "long" => "put_u32",
                                _ => "put_u64",
                            };
                            let _ = writeln!(out, "buf.{put}(self.{});", field_ident(&f.name));
                        }
                        FixedItem::Bits(bits, _) => {
                            let parts: Vec<String> = bits
                                .iter()
                                .enumerate()
                                .map(|(k, f)| match k {
                                    0 => format!("u8::from(self.{})", field_ident(&f.name)),
                                    _ => {
                                        format!("(u8::from(self.{}) << {k})", field_ident(&f.name))
                                    }
                                })
                                .collect();
                            let _ = writeln!(out, "buf.put_u8({});", parts.join(" | "));
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "}}\n");
}

fn gen_enum(out: &mut String, methods: &[&Method]) {
    let _ = writeln!(
        out,
        "/// Every method's class id, method id and name, in [`Method`] order."
    );
    let _ = writeln!(out, "pub const METHODS: &[(u16, u16, &str)] = &[");
    for m in methods {
        let _ = writeln!(out, "({}, {}, \"{}\"),", m.class_id, m.id, wire_name(m));
    }
    let _ = writeln!(out, "];\n");
    let needs_bytes: Vec<String> = methods
        .iter()
        .filter(|m| {
            m.fields
                .iter()
                .any(|f| f.ty == "longstr" || f.ty == "table")
        })
        .map(|m| format!("({}, {})", m.class_id, m.id))
        .collect();
    let _ = writeln!(
        out,
        "/// True for the methods with a long string or a table, which are slices of a `Bytes` of\n\
         /// the frame; the others (numbers, bits, short strings: publish, ack, qos...) can be\n\
         /// decoded from a plain `&[u8]`, their short strings copied inline.\n\
         pub(super) fn needs_bytes(class_id: u16, method_id: u16) -> bool {{\n\
         matches!((class_id, method_id), {})\n}}\n",
        needs_bytes.join(" | ")
    );
    let _ = writeln!(out, "/// Every method of the seven classes, by value.");
    let _ = writeln!(out, "#[derive(Clone, Debug, PartialEq)]");
    let _ = writeln!(out, "pub enum Method {{");
    for m in methods {
        let _ = writeln!(out, "/// `{}`.", wire_name(m));
        let _ = writeln!(out, "{0}({0}),", struct_name(m));
    }
    let _ = writeln!(out, "}}\n");

    let arms = |f: &dyn Fn(&Method) -> String| -> String {
        methods
            .iter()
            .map(|m| format!("Method::{}(_) => {},\n", struct_name(m), f(m)))
            .collect()
    };
    let _ = writeln!(out, "impl Method {{");
    let _ = writeln!(out, "/// The class id.");
    let _ = writeln!(
        out,
        "pub fn class_id(&self) -> u16 {{ match self {{ {} }} }}\n",
        arms(&|m| m.class_id.to_string())
    );
    let _ = writeln!(out, "/// The method id within its class.");
    let _ = writeln!(
        out,
        "pub fn method_id(&self) -> u16 {{ match self {{ {} }} }}\n",
        arms(&|m| m.id.to_string())
    );
    let _ = writeln!(out, "/// The spec's name, e.g. `\"basic.publish\"`.");
    let _ = writeln!(
        out,
        "pub fn name(&self) -> &'static str {{ match self {{ {} }} }}\n",
        arms(&|m| format!("\"{}\"", wire_name(m)))
    );
    let content: Vec<String> = methods
        .iter()
        .filter(|m| m.content)
        .map(|m| format!("Method::{}(_)", struct_name(m)))
        .collect();
    let _ = writeln!(
        out,
        "/// True for the methods followed by content: {}.",
        methods
            .iter()
            .filter(|m| m.content)
            .map(|m| format!("`{}`", wire_name(m)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "pub fn has_content(&self) -> bool {{ matches!(self, {}) }}\n",
        content.join(" | ")
    );

    let _ = writeln!(
        out,
        "/// Decodes a method frame's payload: class id, method id, then the arguments, which must\n\
         /// fill the payload exactly. Long strings are zero-copy slices of `payload`."
    );
    let _ = writeln!(
        out,
        "pub fn decode(payload: &Bytes) -> Result<Method, FrameError> {{ Self::decode_with(payload, payload, |m| m) }}\n"
    );
    let _ = writeln!(
        out,
        "/// [`Method::decode`] of `payload`, a slice of `p` that long strings are cut from, handing\n\
         /// the method to `f`: the frame decoder builds its `Frame` there, so the method is moved\n\
         /// once, into the value returned, and its fields are parsed in place (`decode_fields`).\n\
         ///\n\
         /// With an empty `p` the frame decoder parses in place, without a `Bytes` of the frame,\n\
         /// the methods that are not [`needs_bytes`] (their short strings are copied inline); a\n\
         /// short string too long to hold inline is then an error, and it decodes again with one."
    );
    let _ = writeln!(
        out,
        "#[inline]\npub(super) fn decode_with<R>(p: &Bytes, payload: &[u8], f: impl FnOnce(Method) -> R) -> Result<R, FrameError> {{"
    );
    let _ = writeln!(
        out,
        "let Some((head, args)) = payload.split_first_chunk::<4>() else {{ return Err(FrameError::Truncated(\"method frame\")); }};"
    );
    let _ = writeln!(
        out,
        "let class_id = u16::from_be_bytes([head[0], head[1]]);\nlet method_id = u16::from_be_bytes([head[2], head[3]]);"
    );
    let _ = writeln!(
        out,
        "let unknown = || FrameError::UnknownMethod {{ class_id, method_id }};"
    );
    // By class, then by method: two small dense matches dispatch faster than one over pairs.
    let _ = writeln!(out, "match class_id {{");
    let mut classes: Vec<u16> = methods.iter().map(|m| m.class_id).collect();
    classes.dedup();
    for c in classes {
        let _ = writeln!(out, "{c} => match method_id {{");
        for m in methods.iter().filter(|m| m.class_id == c) {
            let s = struct_name(m);
            // A unit struct is its own value (clippy: no `default()` for those).
            let blank = if m.fields.is_empty() {
                s.clone()
            } else {
                format!("{s}::default()")
            };
            let _ = writeln!(
                out,
                "{} => {{\n\
                 let mut m = {blank};\n\
                 match m.decode_fields(p, args) {{\n\
                 Ok([]) => Ok(f(Method::{s}(m))),\n\
                 r => Err(wire::failed({s}::NAME, r)),\n\
                 }}\n\
                 }}",
                m.id
            );
        }
        let _ = writeln!(out, "_ => Err(unknown()),\n}},");
    }
    let _ = writeln!(out, "_ => Err(unknown()),\n}}\n}}\n");

    let _ = writeln!(
        out,
        "/// Bytes [`Method::encode`] writes: class id, method id and arguments."
    );
    let _ = writeln!(
        out,
        "pub fn encoded_len(&self) -> usize {{ 4 + match self {{ {} }} }}\n",
        methods
            .iter()
            .map(|m| format!("Method::{}(m) => m.encoded_len(),\n", struct_name(m)))
            .collect::<String>()
    );
    let _ = writeln!(
        out,
        "/// Writes class id, method id and arguments (a method frame's payload), reserving the\n\
         /// exact space first."
    );
    let _ = writeln!(out, "pub fn encode(&self, buf: &mut BytesMut) {{");
    let _ = writeln!(out, "buf.reserve(self.encoded_len());");
    let _ = writeln!(
        out,
        "buf.put_u16(self.class_id());\nbuf.put_u16(self.method_id());"
    );
    let _ = writeln!(
        out,
        "match self {{ {} }}",
        methods
            .iter()
            .map(|m| format!("Method::{}(m) => m.encode_fields(buf),\n", struct_name(m)))
            .collect::<String>()
    );
    let _ = writeln!(out, "}}\n}}\n");
}

fn generate(classes: &[Class]) -> String {
    let mut out = String::new();
    out.push_str(
        "//! GENERATED by `cargo test --test codegen` (tests/codegen.rs) from\n\
         //! `amqp-spec/amqp0-9-1.extended.xml` and `amqp-spec/rabbitmq-extensions.xml`.\n\
         //! DO NOT EDIT: change the generator or the XML and run the test twice.\n\
         //!\n\
         //! One struct per method of the seven classes (connection, channel, exchange, queue,\n\
         //! basic, tx, confirm) plus RabbitMQ's connection.blocked/unblocked/update-secret, with\n\
         //! its class and method ids, a nom decoder and a `BufMut` encoder; consecutive bit\n\
         //! fields share one octet, lowest bit first. [`Method`] is the sum of them all.\n\n",
    );
    out.push_str(
        "use bytes::{BufMut, Bytes, BytesMut};\n\n\
         use super::error::FrameError;\n\
         use super::types::{self, FieldTable, LongStr, ShortStr};\n\
         use super::wire;\n\n",
    );
    let all: Vec<&Method> = classes.iter().flat_map(|c| c.methods.iter()).collect();
    for c in classes {
        let _ = writeln!(out, "// ---- class {} ({}) ----\n", c.name, c.id);
        for m in &c.methods {
            gen_struct(&mut out, m);
        }
    }
    gen_enum(&mut out, &all);
    out
}

fn rustfmt(src: &str) -> String {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rustfmt");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(src.as_bytes())
        .expect("write to rustfmt");
    let out = child.wait_with_output().expect("rustfmt output");
    assert!(
        out.status.success(),
        "rustfmt failed on generated code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("rustfmt output is UTF-8")
}

/// Writes `contents` to `path` if it differs, then fails so that CI catches a stale file.
fn ensure_file_contents(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    std::fs::write(path, contents).expect("write generated file");
    panic!(
        "{} was not up to date and has been regenerated; run the test again and commit it",
        path.display()
    );
}

#[test]
fn method_rs_is_fresh() {
    let classes = load();
    let names: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "connection",
            "channel",
            "exchange",
            "queue",
            "basic",
            "tx",
            "confirm"
        ]
    );
    let code = rustfmt(&generate(&classes));
    ensure_file_contents(&root().join("src/protocol/method.rs"), &code);
}

/// Fields that amq-protocol 10 leaves out of its structs and always writes as zero, though
/// the XML does not mark them reserved (RabbitMQ ignores basic.qos prefetch-size).
const AMQ_ALWAYS_ZERO: [(&str, &str, &str); 1] = [("basic", "qos", "prefetch-size")];

fn amq_absent(m: &Method, f: &Field) -> bool {
    f.reserved
        || AMQ_ALWAYS_ZERO
            .iter()
            .any(|&(c, n, x)| c == m.class && n == m.name && x == f.name)
}

/// amq-protocol names every no-wait field `nowait`.
fn amq_field(name: &str) -> String {
    match name {
        "no-wait" => "nowait".into(),
        n => field_ident(n),
    }
}

fn strategy(ty: &str) -> &'static str {
    match ty {
        "octet" => "any::<u8>()",
        "short" => "any::<u16>()",
        "long" => "any::<u32>()",
        "longlong" | "timestamp" => "any::<u64>()",
        "bit" => "any::<bool>()",
        "shortstr" => "short_str()",
        "longstr" => "long_str()",
        "table" => "field_table(canonical)",
        other => panic!("unknown field type {other}"),
    }
}

/// `tests/codec_support/methods.rs`: per-method proptest strategies and field-by-field
/// conversions to and from amq-protocol's structs, for `codec_props` and `codec_crosscheck`.
fn generate_support(classes: &[Class]) -> String {
    let mut out = String::new();
    out.push_str(
        "//! GENERATED by `cargo test --test codegen` (tests/codegen.rs) from `amqp-spec/`.\n\
         //! DO NOT EDIT. Per-method proptest strategies, and conversions to and from\n\
         //! amq-protocol's method structs (which omit reserved fields).\n\n\
         use amq_protocol::protocol as amq;\n\
         use lagomorph::protocol::method::*;\n\
         use proptest::prelude::*;\n\n\
         use super::*;\n\n",
    );
    let all: Vec<&Method> = classes.iter().flat_map(|c| c.methods.iter()).collect();

    let _ = writeln!(
        out,
        "/// One strategy per method, with its name. `canonical`: reserved fields (and fields\n\
         /// amq-protocol always writes as zero) are zero/empty and tables have sorted unique keys,\n\
         /// so that amq-protocol can represent the value exactly."
    );
    let _ = writeln!(
        out,
        "pub fn method_strategies(canonical: bool) -> Vec<(&'static str, BoxedStrategy<Method>)> {{"
    );
    let _ = writeln!(out, "vec![");
    for m in &all {
        let s = struct_name(m);
        if m.fields.is_empty() {
            let _ = writeln!(
                out,
                "(\"{}\", Just(Method::from({s})).boxed()),",
                wire_name(m)
            );
            continue;
        }
        let strategies: Vec<String> = m
            .fields
            .iter()
            .map(|f| {
                let st = strategy(&f.ty);
                if amq_absent(m, f) {
                    format!("zero_if(canonical, {st})")
                } else {
                    st.to_string()
                }
            })
            .collect();
        let names: Vec<String> = m.fields.iter().map(|f| field_ident(&f.name)).collect();
        let _ = writeln!(
            out,
            "(\"{}\", ({},).prop_map(|({},)| Method::from({s} {{ {} }})).boxed()),",
            wire_name(m),
            strategies.join(", "),
            names.join(", "),
            names.join(", ")
        );
    }
    let _ = writeln!(out, "]\n}}\n");

    let conv = |ty: &str, expr: &str, dir: &str| -> String {
        match ty {
            "shortstr" => format!("{dir}_short(&{expr})"),
            "longstr" => format!("{dir}_long(&{expr})"),
            "table" => format!("{dir}_table(&{expr})"),
            _ => expr.to_string(),
        }
    };

    let _ = writeln!(out, "/// The same method as amq-protocol's value.");
    let _ = writeln!(out, "pub fn to_amq(m: &Method) -> amq::AMQPClass {{");
    let _ = writeln!(out, "match m {{");
    for m in &all {
        let fields: Vec<String> = m
            .fields
            .iter()
            .filter(|f| !amq_absent(m, f))
            .map(|f| {
                format!(
                    "{}: {}",
                    amq_field(&f.name),
                    conv(&f.ty, &format!("x.{}", field_ident(&f.name)), "amq")
                )
            })
            .collect();
        let x = if fields.is_empty() { "_" } else { "x" };
        let _ = writeln!(
            out,
            "Method::{}({x}) => amq::AMQPClass::{}(amq::{}::AMQPMethod::{}(amq::{}::{} {{ {} }})),",
            struct_name(m),
            pascal(&m.class),
            m.class,
            pascal(&m.name),
            m.class,
            pascal(&m.name),
            fields.join(", ")
        );
    }
    let _ = writeln!(out, "}}\n}}\n");

    let _ = writeln!(
        out,
        "/// amq-protocol's method as ours (fields it omits are zero/empty)."
    );
    let _ = writeln!(out, "pub fn from_amq(c: &amq::AMQPClass) -> Method {{");
    let _ = writeln!(out, "match c {{");
    for m in &all {
        let fields: Vec<String> = m
            .fields
            .iter()
            .map(|f| {
                let ours = field_ident(&f.name);
                if amq_absent(m, f) {
                    format!("{ours}: Default::default()")
                } else {
                    format!(
                        "{ours}: {}",
                        conv(&f.ty, &format!("x.{}", amq_field(&f.name)), "our")
                    )
                }
            })
            .collect();
        let x = if m.fields.iter().any(|f| !amq_absent(m, f)) {
            "x"
        } else {
            "_"
        };
        let body = if m.fields.is_empty() {
            struct_name(m)
        } else {
            format!("{} {{ {} }}", struct_name(m), fields.join(", "))
        };
        let _ = writeln!(
            out,
            "amq::AMQPClass::{}(amq::{}::AMQPMethod::{}({x})) => Method::from({body}),",
            pascal(&m.class),
            m.class,
            pascal(&m.name),
        );
    }
    let _ = writeln!(
        out,
        "other => panic!(\"no such method in Lagomorph: {{other:?}}\"),\n}}\n}}"
    );
    out
}

#[test]
fn test_support_is_fresh() {
    let code = rustfmt(&generate_support(&load()));
    ensure_file_contents(&root().join("tests/codec_support/methods.rs"), &code);
}

#[test]
fn reply_codes_match_the_spec() {
    use lagomorph::protocol::ReplyCode;
    let text = std::fs::read_to_string(root().join(SPEC_FILES[0])).expect("read spec");
    let doc = roxmltree::Document::parse(&text).expect("parse spec");
    let mut seen = 0;
    for c in children(doc.root_element(), "constant") {
        let value: u16 = attr(c, "value").parse().expect("constant value");
        let class = c.attribute("class");
        let name = attr(c, "name");
        if !(name.starts_with("reply-") || class.is_some()) {
            continue; // frame types and sizes
        }
        let rc = ReplyCode::from_code(value).unwrap_or_else(|| panic!("no ReplyCode {value}"));
        assert_eq!(rc.name(), name.to_uppercase().replace('-', "_"), "{value}");
        assert_eq!(rc.is_hard(), class == Some("hard-error"), "{value}");
        seen += 1;
    }
    // Everything the XML lists, plus RabbitMQ's 312 no-route.
    assert_eq!(seen + 1, ReplyCode::ALL.len());
    assert!(!ReplyCode::NoRoute.is_hard());
}
