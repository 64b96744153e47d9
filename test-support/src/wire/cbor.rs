//! A CBOR document (RFC 8949) decoded for the rules: the request bodies of the Smithy RPC v2 CBOR
//! protocol, which the AWS SDK for Rust speaks to CloudWatch. Decoding goes through `minicbor`
//! (the SDK's own CBOR crate, `aws-smithy-cbor`, is built on it), into a tree the rules can walk.

use minicbor::data::Type;
use minicbor::Decoder;

/// Nesting deeper than this is refused rather than followed (no API document comes close).
const DEPTH_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    Integer(i128),
    Float(f64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    /// Pairs in the order sent (keys may be of any type, and may repeat).
    Map(Vec<(Cbor, Cbor)>),
    Tag(u64, Box<Cbor>),
    Bool(bool),
    Null,
    Undefined,
    Simple(u8),
}

impl Cbor {
    /// The value of a map's text key (the first, if it repeats).
    pub fn get(&self, key: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Cbor::Text(text) if text == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cbor::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Cbor]> {
        match self {
            Cbor::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i128> {
        match self {
            Cbor::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Cbor::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An epoch timestamp as the RPC v2 CBOR protocol writes one: tag 1 around an integer or a
    /// float of seconds.
    pub fn as_timestamp(&self) -> Option<f64> {
        match self {
            Cbor::Tag(1, value) => match **value {
                Cbor::Integer(n) => Some(n as f64),
                Cbor::Float(f) if f.is_finite() => Some(f),
                _ => None,
            },
            _ => None,
        }
    }

    /// The text keys of a map, in order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Cbor::Map(pairs) => pairs.iter().filter_map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// A short description of the value, for a violation's message.
    pub fn kind(&self) -> &'static str {
        match self {
            Cbor::Integer(_) => "an integer",
            Cbor::Float(_) => "a float",
            Cbor::Bytes(_) => "a byte string",
            Cbor::Text(_) => "a text string",
            Cbor::Array(_) => "an array",
            Cbor::Map(_) => "a map",
            Cbor::Tag(..) => "a tagged value",
            Cbor::Bool(_) => "a boolean",
            Cbor::Null => "null",
            Cbor::Undefined => "undefined",
            Cbor::Simple(_) => "a simple value",
        }
    }
}

/// Decodes one whole CBOR data item: bytes left after it are an error.
pub fn decode(bytes: &[u8]) -> Result<Cbor, String> {
    let mut decoder = Decoder::new(bytes);
    let value = item(&mut decoder, 0)?;
    if decoder.position() != bytes.len() {
        return Err(format!(
            "{} bytes after the CBOR data item",
            bytes.len() - decoder.position()
        ));
    }
    Ok(value)
}

fn item(d: &mut Decoder, depth: usize) -> Result<Cbor, String> {
    if depth > DEPTH_MAX {
        return Err(format!("nested deeper than {DEPTH_MAX}"));
    }
    let at = d.position();
    let failed = |err: minicbor::decode::Error| format!("at byte {at}: {err}");
    let value = match d.datatype().map_err(failed)? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Cbor::Integer(i128::from(d.int().map_err(failed)?)),
        Type::F16 => Cbor::Float(f64::from(d.f16().map_err(failed)?)),
        Type::F32 => Cbor::Float(f64::from(d.f32().map_err(failed)?)),
        Type::F64 => Cbor::Float(d.f64().map_err(failed)?),
        Type::Bytes | Type::BytesIndef => {
            let mut bytes = Vec::new();
            for piece in d.bytes_iter().map_err(failed)? {
                bytes.extend_from_slice(piece.map_err(failed)?);
            }
            Cbor::Bytes(bytes)
        }
        Type::String | Type::StringIndef => {
            let mut text = String::new();
            for piece in d.str_iter().map_err(failed)? {
                text.push_str(piece.map_err(failed)?);
            }
            Cbor::Text(text)
        }
        Type::Array | Type::ArrayIndef => {
            let length = d.array().map_err(failed)?;
            let mut items = Vec::new();
            while more(d, items.len(), length)? {
                items.push(item(d, depth + 1)?);
            }
            Cbor::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let length = d.map().map_err(failed)?;
            let mut pairs = Vec::new();
            while more(d, pairs.len(), length)? {
                let key = item(d, depth + 1)?;
                pairs.push((key, item(d, depth + 1)?));
            }
            Cbor::Map(pairs)
        }
        Type::Tag => {
            let tag = d.tag().map_err(failed)?.as_u64();
            Cbor::Tag(tag, Box::new(item(d, depth + 1)?))
        }
        Type::Bool => Cbor::Bool(d.bool().map_err(failed)?),
        Type::Null => {
            d.null().map_err(failed)?;
            Cbor::Null
        }
        Type::Undefined => {
            d.undefined().map_err(failed)?;
            Cbor::Undefined
        }
        Type::Simple => Cbor::Simple(d.simple().map_err(failed)?),
        Type::Break => return Err(format!("at byte {at}: a break outside an indefinite item")),
        Type::Unknown(byte) => {
            return Err(format!("at byte {at}: unknown initial byte {byte:#04x}"))
        }
    };
    Ok(value)
}

/// Whether an array or map has another element: `length` of them, or until the break of an
/// indefinite one (consumed here).
fn more(d: &mut Decoder, count: usize, length: Option<u64>) -> Result<bool, String> {
    match length {
        Some(length) => Ok((count as u64) < length),
        None => match d.datatype() {
            Ok(Type::Break) => {
                d.set_position(d.position() + 1);
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(err) => Err(format!("at byte {}: {err}", d.position())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minicbor::Encoder;

    #[test]
    fn definite_and_indefinite_items_decode_alike() {
        let mut definite = Encoder::new(Vec::new());
        definite
            .map(3)
            .unwrap()
            .str("Id")
            .unwrap()
            .str("q0")
            .unwrap()
            .str("Period")
            .unwrap()
            .u32(86_400)
            .unwrap()
            .str("StartTime")
            .unwrap()
            .tag(minicbor::data::Tag::new(1))
            .unwrap()
            .f64(1.5)
            .unwrap();
        let mut indefinite = Encoder::new(Vec::new());
        indefinite
            .begin_map()
            .unwrap()
            .str("Id")
            .unwrap()
            .str("q0")
            .unwrap()
            .str("Period")
            .unwrap()
            .u32(86_400)
            .unwrap()
            .str("StartTime")
            .unwrap()
            .tag(minicbor::data::Tag::new(1))
            .unwrap()
            .f64(1.5)
            .unwrap()
            .end()
            .unwrap();
        for bytes in [definite.into_writer(), indefinite.into_writer()] {
            let doc = decode(&bytes).unwrap();
            assert_eq!(doc.get("Id").and_then(Cbor::as_str), Some("q0"));
            assert_eq!(doc.get("Period").and_then(Cbor::as_integer), Some(86_400));
            assert_eq!(doc.get("StartTime").and_then(Cbor::as_timestamp), Some(1.5));
            assert_eq!(doc.keys(), ["Id", "Period", "StartTime"]);
        }
    }

    #[test]
    fn negative_integers_half_floats_and_chunked_strings() {
        // -500, half-precision 1.5, and "ab" as an indefinite string of two chunks.
        let doc = decode(&[
            0x83, 0x39, 0x01, 0xf3, 0xf9, 0x3e, 0x00, 0x7f, 0x61, b'a', 0x61, b'b', 0xff,
        ])
        .unwrap();
        assert_eq!(
            doc,
            Cbor::Array(vec![
                Cbor::Integer(-500),
                Cbor::Float(1.5),
                Cbor::Text("ab".into())
            ])
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        for (bytes, problem) in [
            (&[0xa1, 0x61, b'a'][..], "end of input"),
            (&[0xa0, 0x00], "after the CBOR data item"),
            (&[0xff], "break outside"),
            (&[0x9f, 0x01], "end of input"),
        ] {
            let error = decode(bytes).unwrap_err();
            assert!(error.contains(problem), "{error:?} for {bytes:?}");
        }
    }
}
