//! Tuple keys: composite keys (`("org#acme", "user#123")`) encoded so that bytewise order of
//! the encodings is the order of the tuples. Items compare by type first, then by value: bytes
//! before text, text before nested tuples, nested tuples before integers; integers numerically
//! (negatives first), bytes and text bytewise, and a tuple before every tuple it is a prefix of.
//! Because an encoding is the concatenation of its items' encodings, the keys that extend a
//! tuple are exactly the keys starting with its encoding: prefix scans select partitions.
//!
//! The layout follows the idea of FoundationDB's tuple layer (a type byte per item, strings
//! terminated by a zero byte with zero bytes inside escaped, integers with a length in the type
//! byte); the codes are listed in `docs/format.md`.

use crate::error::{Error, Result};

/// One item of a tuple key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleItem {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Text.
    Str(String),
    /// An integer of any size: its sign and its magnitude, big-endian without leading zero
    /// bytes (zero has an empty magnitude; at most [`MAX_INT_BYTES`] bytes).
    Int {
        /// Whether the integer is below zero.
        negative: bool,
        /// The absolute value, big-endian, minimal.
        magnitude: Vec<u8>,
    },
    /// A nested tuple.
    Tuple(Vec<TupleItem>),
}

/// Largest integer magnitude in a tuple key, in bytes (2040 bits).
pub const MAX_INT_BYTES: usize = 255;
/// Deepest nesting of tuples inside a key.
pub const MAX_TUPLE_DEPTH: usize = 64;

const BYTES: u8 = 0x01;
const STR: u8 = 0x02;
const NESTED: u8 = 0x05;
/// Integers: `INT_ZERO` is zero; `INT_ZERO ± n` an integer of `n` (1..=8) magnitude bytes;
/// `INT_NEG_BIG` / `INT_POS_BIG` longer ones, with a length byte.
const INT_NEG_BIG: u8 = 0x0B;
const INT_ZERO: u8 = 0x14;
const INT_POS_BIG: u8 = 0x1D;
const END: u8 = 0x00;
const ESCAPE: u8 = 0xFF;

impl TupleItem {
    /// An integer item from an `i64`.
    #[must_use]
    pub fn int(value: i64) -> Self {
        // Big-endian on purpose (the workspace denies it elsewhere): the magnitude's bytes must
        // compare bytewise in numeric order, which is what makes tuple keys order-preserving.
        #[allow(clippy::big_endian_bytes)]
        let magnitude = value.unsigned_abs().to_be_bytes();
        let first = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        Self::Int {
            negative: value < 0,
            magnitude: magnitude[first..].to_vec(),
        }
    }
}

/// Encodes a tuple key; `[]` is refused (it would be the empty key).
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty tuple, a non-minimal or too long integer magnitude,
/// or nesting deeper than [`MAX_TUPLE_DEPTH`].
pub fn encode_tuple(items: &[TupleItem]) -> Result<Vec<u8>> {
    if items.is_empty() {
        return Err(Error::InvalidArgument(
            "a tuple key needs at least one item".into(),
        ));
    }
    let mut out = Vec::new();
    for item in items {
        encode_item(item, &mut out, 0)?;
    }
    Ok(out)
}

fn encode_item(item: &TupleItem, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    match item {
        TupleItem::Bytes(bytes) => {
            out.push(BYTES);
            escape_into(bytes, out);
        }
        TupleItem::Str(text) => {
            out.push(STR);
            escape_into(text.as_bytes(), out);
        }
        TupleItem::Int {
            negative,
            magnitude,
        } => encode_int(*negative, magnitude, out)?,
        TupleItem::Tuple(items) => {
            if depth + 1 >= MAX_TUPLE_DEPTH {
                return Err(Error::InvalidArgument(format!(
                    "tuple keys nest at most {MAX_TUPLE_DEPTH} levels deep"
                )));
            }
            out.push(NESTED);
            for inner in items {
                encode_item(inner, out, depth + 1)?;
            }
            out.push(END);
        }
    }
    Ok(())
}

/// Zero bytes inside a string become `00 FF`, and `00` ends it: a string sorts before its
/// extensions, and the end is unambiguous.
fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == END {
            out.push(ESCAPE);
        }
    }
    out.push(END);
}

fn encode_int(negative: bool, magnitude: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if magnitude.first() == Some(&0) {
        return Err(Error::InvalidArgument(
            "integer magnitude must have no leading zero bytes".into(),
        ));
    }
    let n = magnitude.len();
    if n > MAX_INT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "integers in tuple keys are limited to {MAX_INT_BYTES} bytes"
        )));
    }
    let n8 = u8::try_from(n).expect("checked above");
    match (negative, n) {
        (_, 0) => out.push(INT_ZERO),
        (false, 1..=8) => {
            out.push(INT_ZERO + n8);
            out.extend_from_slice(magnitude);
        }
        (false, _) => {
            out.extend_from_slice(&[INT_POS_BIG, n8]);
            out.extend_from_slice(magnitude);
        }
        // Negatives: a longer magnitude is a smaller number, so a smaller type (or length) byte;
        // the magnitude's one's complement reverses the order within one length.
        (true, 1..=8) => {
            out.push(INT_ZERO - n8);
            out.extend(magnitude.iter().map(|b| !b));
        }
        (true, _) => {
            out.extend_from_slice(&[INT_NEG_BIG, !n8]);
            out.extend(magnitude.iter().map(|b| !b));
        }
    }
    Ok(())
}

/// Decodes a tuple key written by [`encode_tuple`].
///
/// # Errors
/// [`Error::Corrupted`] when the bytes are not a tuple encoding.
pub fn decode_tuple(bytes: &[u8]) -> Result<Vec<TupleItem>> {
    let mut reader = Reader { bytes, at: 0 };
    let mut items = Vec::new();
    while reader.at < bytes.len() {
        items.push(reader.item(0)?);
    }
    if items.is_empty() {
        return Err(corrupt("an empty tuple key"));
    }
    Ok(items)
}

fn corrupt(what: &str) -> Error {
    Error::Corrupted(format!("tuple key: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| corrupt("ends in the middle of an item"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| corrupt("ends in the middle of an integer"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn item(&mut self, depth: usize) -> Result<TupleItem> {
        let code = self.byte()?;
        match code {
            BYTES => Ok(TupleItem::Bytes(self.escaped()?)),
            STR => String::from_utf8(self.escaped()?)
                .map(TupleItem::Str)
                .map_err(|_| corrupt("text that is not UTF-8")),
            NESTED => {
                if depth + 1 >= MAX_TUPLE_DEPTH {
                    return Err(corrupt("nested too deep"));
                }
                let mut items = Vec::new();
                loop {
                    if self.bytes.get(self.at) == Some(&END) {
                        self.at += 1;
                        return Ok(TupleItem::Tuple(items));
                    }
                    items.push(self.item(depth + 1)?);
                }
            }
            INT_ZERO => Ok(TupleItem::Int {
                negative: false,
                magnitude: Vec::new(),
            }),
            c if (INT_ZERO + 1..=INT_ZERO + 8).contains(&c) => {
                let magnitude = self.take(usize::from(c - INT_ZERO))?.to_vec();
                minimal(false, magnitude)
            }
            c if (INT_ZERO - 8..INT_ZERO).contains(&c) => {
                let n = usize::from(INT_ZERO - c);
                let magnitude = self.take(n)?.iter().map(|b| !b).collect();
                minimal(true, magnitude)
            }
            INT_POS_BIG => {
                let n = usize::from(self.byte()?);
                let magnitude = self.take(n)?.to_vec();
                minimal(false, magnitude)
            }
            INT_NEG_BIG => {
                let n = usize::from(!self.byte()?);
                let magnitude = self.take(n)?.iter().map(|b| !b).collect();
                minimal(true, magnitude)
            }
            other => Err(corrupt(&format!("unknown item type {other:#04x}"))),
        }
    }

    fn escaped(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let b = self.byte()?;
            if b != END {
                out.push(b);
                continue;
            }
            if self.bytes.get(self.at) == Some(&ESCAPE) {
                self.at += 1;
                out.push(END);
            } else {
                return Ok(out);
            }
        }
    }
}

fn minimal(negative: bool, magnitude: Vec<u8>) -> Result<TupleItem> {
    if magnitude.is_empty() || magnitude[0] == 0 {
        return Err(corrupt("an integer with leading zero bytes"));
    }
    Ok(TupleItem::Int {
        negative,
        magnitude,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(items: &[TupleItem]) -> Vec<u8> {
        encode_tuple(items).unwrap()
    }

    fn big(negative: bool, bytes: usize) -> TupleItem {
        TupleItem::Int {
            negative,
            magnitude: vec![0x7F; bytes],
        }
    }

    #[test]
    fn integers_sort_numerically_across_lengths() {
        let mut values: Vec<i64> = vec![
            i64::MIN,
            -(1 << 40),
            -65536,
            -256,
            -255,
            -1,
            0,
            1,
            255,
            256,
            1 << 40,
            i64::MAX,
        ];
        values.sort_unstable();
        let encoded: Vec<Vec<u8>> = values.iter().map(|&v| enc(&[TupleItem::int(v)])).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        // Beyond 64 bits too, on both sides.
        let order = [
            big(true, 20),
            big(true, 9),
            TupleItem::int(i64::MIN),
            TupleItem::int(i64::MAX),
            big(false, 9),
            big(false, 20),
        ];
        let encoded: Vec<Vec<u8>> = order.iter().map(|i| enc(std::slice::from_ref(i))).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_tuple_sorts_before_its_extensions_and_is_their_prefix() {
        let org = TupleItem::Str("org#acme".into());
        let user = TupleItem::Str("user#1".into());
        let short = enc(std::slice::from_ref(&org));
        let long = enc(&[org.clone(), user]);
        assert!(long.starts_with(&short));
        assert!(short < long);
        // A zero byte inside text is escaped, so "a\0" sorts after "a" and before "a\x01".
        let a = enc(&[TupleItem::Str("a".into())]);
        let a0 = enc(&[TupleItem::Str("a\0".into())]);
        let a1 = enc(&[TupleItem::Str("a\x01".into())]);
        assert!(a < a0 && a0 < a1);
        let nested_short = enc(&[TupleItem::Tuple(vec![TupleItem::int(1)])]);
        let nested_long = enc(&[TupleItem::Tuple(vec![TupleItem::int(1), TupleItem::int(2)])]);
        assert!(nested_short < nested_long);
    }

    #[test]
    fn every_item_kind_round_trips() {
        let items = vec![
            TupleItem::Bytes(vec![0, 1, 0, 0xFF]),
            TupleItem::Str("é\0x".into()),
            TupleItem::int(-3),
            TupleItem::int(0),
            big(false, 30),
            big(true, 30),
            TupleItem::Tuple(vec![
                TupleItem::Str(String::new()),
                TupleItem::Tuple(vec![]),
            ]),
        ];
        assert_eq!(decode_tuple(&enc(&items)).unwrap(), items);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(encode_tuple(&[]).is_err());
        let padded = TupleItem::Int {
            negative: false,
            magnitude: vec![0, 1],
        };
        assert!(encode_tuple(&[padded]).is_err());
        let mut deep = TupleItem::int(1);
        for _ in 0..MAX_TUPLE_DEPTH {
            deep = TupleItem::Tuple(vec![deep]);
        }
        assert!(encode_tuple(&[deep]).is_err());
        for bad in [
            &b""[..],
            b"\x02abc",
            b"\x16\x01",
            b"\x99",
            b"\x15\x00",
            b"\x05\x02a\x00",
        ] {
            assert!(decode_tuple(bad).is_err(), "{bad:?}");
        }
    }
}
