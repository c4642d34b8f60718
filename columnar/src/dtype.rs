//! Element types. A column's dtype string is stored in its metadata; elements are stored
//! little-endian at fixed width, or as variable-length byte strings.

use crate::error::{Error, Result};
use kvault::codec::{Layout, Numbers};

/// The element type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// IEEE 754 half precision (binary16).
    F16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// One byte, 0 or 1.
    Bool,
    /// Exactly `n` bytes (shorter input is zero-padded).
    FixedBytes(u32),
    /// Byte strings of any length.
    Bytes,
    /// UTF-8 text of any length.
    Str,
    /// Text of any length stored in another encoding (`str:utf16`, `str:latin1`, `str:ascii`);
    /// `str:utf8` is [`DType::Str`].
    Text(TextEncoding),
    /// Text of at most `N` encoded bytes stored in exactly `N` bytes (`str:N`, UTF-8, or
    /// `str:N:<encoding>`), zero-padded; see [`FixedText`].
    FixedStr(FixedText),
    /// Python values packed as MessagePack (with ambervault's extension types), one packed
    /// value per element. Stored exactly like [`DType::Bytes`]: the Python layer packs and
    /// unpacks; the name is kept so a reopened column decodes the same way.
    MsgPack,
    /// JSON values as UTF-8 JSON text, one document per element; stored like [`DType::Bytes`].
    Json,
    /// Python values packed as CBOR, one item per element; stored like [`DType::Bytes`].
    Cbor,
    /// A fixed-shape tensor of numeric elements (`vec:<elem>:<d1>[:<d2>...]`), stored as its
    /// elements little-endian in row-major order. To this crate and the native binding it is
    /// an opaque fixed-width element (like [`DType::FixedBytes`]); the Python layer turns the
    /// bytes into numpy arrays of the shape.
    Vector(VecShape),
}

/// The encoding of a [`DType::Text`] column's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-16, little-endian, no byte order mark.
    Utf16,
    /// ISO 8859-1: one byte per character, code points up to U+00FF.
    Latin1,
    /// ASCII: one byte per character, code points up to U+007F.
    Ascii,
}

impl TextEncoding {
    /// The name after `str:` (also Python's codec name for it).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf16 => "utf16",
            Self::Latin1 => "latin1",
            Self::Ascii => "ascii",
        }
    }
}

/// The width and encoding of a [`DType::FixedStr`] column (`str:N[:<encoding>]`).
///
/// An element is the text's encoded bytes followed by zero bytes up to the width. The padding
/// is a zero code unit (one byte, two for UTF-16), so text that is too long, or that itself
/// ends with U+0000 (which could not be told apart from the padding), is refused rather than
/// truncated or changed. Reading strips the trailing zero units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedText {
    width: u32,
    encoding: Option<TextEncoding>,
}

impl FixedText {
    /// Bytes per element.
    #[must_use]
    pub fn width(&self) -> usize {
        self.width as usize
    }

    /// The encoding: `None` for UTF-8.
    #[must_use]
    pub fn encoding(&self) -> Option<TextEncoding> {
        self.encoding
    }

    /// The dtype string: `str:N` (UTF-8) or `str:N:<encoding>`.
    #[must_use]
    pub fn name(&self) -> String {
        match self.encoding {
            None => format!("str:{}", self.width),
            Some(encoding) => format!("str:{}:{}", self.width, encoding.name()),
        }
    }

    /// Bytes per code unit (the padding unit): 2 for UTF-16, else 1.
    fn unit(&self) -> usize {
        if self.encoding == Some(TextEncoding::Utf16) {
            2
        } else {
            1
        }
    }

    /// Parses `<N>[:<encoding>]` (the part after `str:`): `N` at least 1 (and even for UTF-16,
    /// whose code units are two bytes) and at most [`MAX_FIXED_BYTES`].
    fn parse(text: &str) -> Option<Self> {
        let (n, encoding) = match text.split_once(':') {
            Some((n, name)) => (n, Some(name)),
            None => (text, None),
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let width = n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_FIXED_BYTES).contains(n))?;
        let encoding = match encoding {
            None | Some("utf8") => None,
            Some("utf16" | "utf16le") => Some(TextEncoding::Utf16),
            Some("latin1") => Some(TextEncoding::Latin1),
            Some("ascii") => Some(TextEncoding::Ascii),
            Some(_) => return None,
        };
        let fixed = Self { width, encoding };
        fixed.width().is_multiple_of(fixed.unit()).then_some(fixed)
    }

    /// Appends the element for `encoded` (the text already in this column's encoding) to
    /// `out`: the bytes, then zero padding up to the width.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `encoded` is longer than the width or ends with a zero
    /// code unit (text ending in U+0000); `out` is left unchanged.
    pub fn pad_into(&self, encoded: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let width = self.width();
        if encoded.len() > width {
            return Err(Error::InvalidArgument(format!(
                "text of {} encoded bytes is longer than the {} column's fixed width of {width} bytes",
                encoded.len(),
                self.name()
            )));
        }
        let unit = self.unit();
        if encoded.len() >= unit && encoded[encoded.len() - unit..].iter().all(|b| *b == 0) {
            return Err(Error::InvalidArgument(format!(
                "text ending in U+0000 cannot be stored in a {} column: trailing zero bytes are its padding",
                self.name()
            )));
        }
        out.extend_from_slice(encoded);
        out.resize(out.len() + (width - encoded.len()), 0);
        Ok(())
    }

    /// The encoded text of a stored element: `raw` without its trailing zero code units.
    #[must_use]
    pub fn unpad<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        let unit = self.unit();
        let mut end = raw.len() - raw.len() % unit;
        while end >= unit && raw[end - unit..end].iter().all(|b| *b == 0) {
            end -= unit;
        }
        &raw[..end]
    }
}

/// Most dimensions a `vec:` dtype may have. A small bound keeps [`DType`] `Copy` (the shape is
/// stored inline) and is far beyond the 1-3 dimensions embeddings and images use.
pub const MAX_VEC_DIMS: usize = 8;

/// The element type and shape of a [`DType::Vector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VecShape {
    elem: VecElem,
    ndim: u8,
    dims: [u32; MAX_VEC_DIMS],
}

/// The numeric element types a `vec:` tensor may hold (a closed set, so a shape cannot nest
/// another vector or a variable-width type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum VecElem {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
}

impl VecElem {
    const ALL: [(&'static str, Self, DType); 11] = [
        ("i8", Self::I8, DType::I8),
        ("i16", Self::I16, DType::I16),
        ("i32", Self::I32, DType::I32),
        ("i64", Self::I64, DType::I64),
        ("u8", Self::U8, DType::U8),
        ("u16", Self::U16, DType::U16),
        ("u32", Self::U32, DType::U32),
        ("u64", Self::U64, DType::U64),
        ("f16", Self::F16, DType::F16),
        ("f32", Self::F32, DType::F32),
        ("f64", Self::F64, DType::F64),
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|e| e.0 == text).map(|e| e.1)
    }

    fn dtype(self) -> DType {
        Self::ALL
            .iter()
            .find(|e| e.1 == self)
            .map(|e| e.2)
            .expect("every element type is listed")
    }
}

impl VecShape {
    /// Parses `<elem>:<d1>[:<d2>...]` (the part after `vec:`): every dimension at least 1, at
    /// most [`MAX_VEC_DIMS`] of them, and a total width within [`MAX_FIXED_BYTES`].
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let elem = VecElem::parse(parts.next()?)?;
        let mut dims = [0u32; MAX_VEC_DIMS];
        let mut ndim = 0usize;
        let mut width = elem.dtype().fixed_width()? as u64;
        for part in parts {
            if ndim == MAX_VEC_DIMS || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let d = part.parse::<u32>().ok().filter(|d| *d >= 1)?;
            // Checked at every step, so a product that would overflow is refused too.
            width = width
                .checked_mul(u64::from(d))
                .filter(|w| *w <= u64::from(MAX_FIXED_BYTES))?;
            dims[ndim] = d;
            ndim += 1;
        }
        (ndim > 0).then(|| Self {
            elem,
            ndim: u8::try_from(ndim).expect("at most MAX_VEC_DIMS"),
            dims,
        })
    }

    /// The element dtype (one of the fixed-width numeric dtypes).
    #[must_use]
    pub fn elem(&self) -> DType {
        self.elem.dtype()
    }

    /// The dimensions, outermost first.
    #[must_use]
    pub fn dims(&self) -> &[u32] {
        &self.dims[..usize::from(self.ndim)]
    }

    /// Bytes per tensor (checked against [`MAX_FIXED_BYTES`] when parsed).
    #[must_use]
    pub fn width(&self) -> usize {
        let elem = self
            .elem()
            .fixed_width()
            .expect("numeric elements are fixed width");
        self.dims().iter().fold(elem, |w, d| w * *d as usize)
    }
}

/// The dtype strings accepted by [`DType::parse`], for error messages and docs.
pub const ACCEPTED_DTYPES: &str =
    "i8, i16, i32, i64, u8, u16, u32, u64, f16, f32, f64, bool, bytes:N (N >= 1), bytes, str (alias str:utf8), str:utf16 (alias str:utf16le), str:latin1, str:ascii, str:N[:<encoding>] (fixed-width text, N >= 1 bytes, zero-padded; encoding utf8 (default), utf16 (N even), latin1 or ascii), msgpack, json, cbor, \
     vec:<elem>:<d1>[:<d2>...] (elem i8..u64, f16, f32 or f64; up to 8 dims >= 1)";

/// Largest width of a `bytes:N` or `str:N` element (and of a `vec:` tensor).
pub const MAX_FIXED_BYTES: u32 = 16 << 20;

impl DType {
    /// Parses a dtype string (see [`ACCEPTED_DTYPES`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] listing the accepted forms.
    pub fn parse(text: &str) -> Result<Self> {
        let parsed = match text {
            "i8" => Some(Self::I8),
            "i16" => Some(Self::I16),
            "i32" => Some(Self::I32),
            "i64" => Some(Self::I64),
            "u8" => Some(Self::U8),
            "u16" => Some(Self::U16),
            "u32" => Some(Self::U32),
            "u64" => Some(Self::U64),
            "f16" => Some(Self::F16),
            "f32" => Some(Self::F32),
            "f64" => Some(Self::F64),
            "bool" => Some(Self::Bool),
            "bytes" => Some(Self::Bytes),
            "str" | "str:utf8" => Some(Self::Str),
            // kohakuvault spells the little-endian form out.
            "str:utf16" | "str:utf16le" => Some(Self::Text(TextEncoding::Utf16)),
            "str:latin1" => Some(Self::Text(TextEncoding::Latin1)),
            "str:ascii" => Some(Self::Text(TextEncoding::Ascii)),
            "msgpack" => Some(Self::MsgPack),
            "json" => Some(Self::Json),
            "cbor" => Some(Self::Cbor),
            _ if text.starts_with("str:") => text
                .strip_prefix("str:")
                .and_then(FixedText::parse)
                .map(Self::FixedStr),
            _ if text.starts_with("vec:") => text
                .strip_prefix("vec:")
                .and_then(VecShape::parse)
                .map(Self::Vector),
            _ => text
                .strip_prefix("bytes:")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=MAX_FIXED_BYTES).contains(n))
                .map(Self::FixedBytes),
        };
        parsed.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown dtype {text:?}; accepted dtypes: {ACCEPTED_DTYPES}"
            ))
        })
    }

    /// The canonical dtype string (`str:utf8` is stored as `str`).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::I8 => "i8".into(),
            Self::I16 => "i16".into(),
            Self::I32 => "i32".into(),
            Self::I64 => "i64".into(),
            Self::U8 => "u8".into(),
            Self::U16 => "u16".into(),
            Self::U32 => "u32".into(),
            Self::U64 => "u64".into(),
            Self::F16 => "f16".into(),
            Self::F32 => "f32".into(),
            Self::F64 => "f64".into(),
            Self::Bool => "bool".into(),
            Self::FixedBytes(n) => format!("bytes:{n}"),
            Self::Bytes => "bytes".into(),
            Self::Str => "str".into(),
            Self::Text(encoding) => format!("str:{}", encoding.name()),
            Self::FixedStr(fixed) => fixed.name(),
            Self::MsgPack => "msgpack".into(),
            Self::Json => "json".into(),
            Self::Cbor => "cbor".into(),
            Self::Vector(shape) => {
                let dims: Vec<String> = shape.dims().iter().map(u32::to_string).collect();
                format!("vec:{}:{}", shape.elem().name(), dims.join(":"))
            }
        }
    }

    /// Bytes per element for fixed-width dtypes, `None` for variable-width ones.
    #[must_use]
    pub fn fixed_width(&self) -> Option<usize> {
        match self {
            Self::I8 | Self::U8 | Self::Bool => Some(1),
            Self::I16 | Self::U16 | Self::F16 => Some(2),
            Self::I32 | Self::U32 | Self::F32 => Some(4),
            Self::I64 | Self::U64 | Self::F64 => Some(8),
            Self::FixedBytes(n) => Some(*n as usize),
            Self::FixedStr(fixed) => Some(fixed.width()),
            Self::Vector(shape) => Some(shape.width()),
            Self::Bytes | Self::Str | Self::Text(_) | Self::MsgPack | Self::Json | Self::Cbor => {
                None
            }
        }
    }

    /// What compression sees in this type's bytes (see `kvault::codec`): the numbers of
    /// numeric and `vec:` types, opaque bytes for the others (bool, bytes, text).
    #[must_use]
    pub fn layout(&self) -> Layout {
        let scalar = match self {
            Self::Vector(shape) => shape.elem(),
            other => *other,
        };
        let numbers = match scalar {
            Self::I8 => Numbers::I8,
            Self::I16 => Numbers::I16,
            Self::I32 => Numbers::I32,
            Self::I64 => Numbers::I64,
            Self::U8 => Numbers::U8,
            Self::U16 => Numbers::U16,
            Self::U32 => Numbers::U32,
            Self::U64 => Numbers::U64,
            Self::F16 => Numbers::F16,
            Self::F32 => Numbers::F32,
            Self::F64 => Numbers::F64,
            _ => return Layout::Bytes,
        };
        Layout::Numbers(numbers)
    }

    /// Whether elements are packed Python values (`msgpack`, `json`, `cbor`): to this crate
    /// and the native binding they are byte strings, which the Python layer encodes and decodes.
    #[must_use]
    pub fn is_packed(&self) -> bool {
        matches!(self, Self::MsgPack | Self::Json | Self::Cbor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_dtypes_parse_name_and_width() {
        for (text, width, dims) in [
            ("vec:f32:384", 1536, &[384u32][..]),
            ("vec:u8:28:28", 784, &[28, 28][..]),
            ("vec:i64:2:3:4", 192, &[2, 3, 4][..]),
            ("vec:f64:1", 8, &[1][..]),
            ("vec:f16:3:5", 30, &[3, 5][..]),
            ("vec:u8:16777216", 16 << 20, &[16 << 20][..]),
            ("vec:u8:1:1:1:1:1:1:1:1", 1, &[1; 8][..]),
        ] {
            let dtype = DType::parse(text).unwrap();
            assert_eq!(dtype.fixed_width(), Some(width), "{text}");
            assert_eq!(dtype.name(), text, "{text} round-trips");
            let DType::Vector(shape) = dtype else {
                panic!("{text} is a vector")
            };
            assert_eq!(shape.dims(), dims);
            assert!(!dtype.is_packed());
        }
        assert_eq!(DType::parse("vec:f32:0384").unwrap().name(), "vec:f32:384");
        for bad in [
            "vec:",
            "vec:f32",
            "vec:f32:",
            "vec:f32:0",
            "vec:f32:3:0",
            "vec:f32::3",
            "vec:f32:-3",
            "vec:f32:+3",
            "vec:f32:3 ",
            "vec:bool:3",
            "vec:str:3",
            "vec:bytes:3:3",
            "vec:vec:f32:3",
            "vec:f32:4194305",                 // one element over the width limit
            "vec:u8:65536:65536",              // product over the limit
            "vec:u64:4294967295:4294967295:9", // product overflows u64 on the way
            "vec:f32:99999999999",             // dimension overflows u32
            "vec:u8:1:1:1:1:1:1:1:1:1",        // nine dimensions
            "VEC:f32:3",
        ] {
            let err = DType::parse(bad).unwrap_err().to_string();
            assert!(err.contains("accepted dtypes"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_every_accepted_form_and_rejects_others() {
        for (text, width) in [
            ("i8", Some(1)),
            ("u64", Some(8)),
            ("f32", Some(4)),
            ("f16", Some(2)),
            ("bool", Some(1)),
            ("bytes:32", Some(32)),
            ("bytes", None),
            ("str", None),
        ] {
            assert_eq!(DType::parse(text).unwrap().fixed_width(), width, "{text}");
        }
        assert_eq!(DType::parse("str:utf8").unwrap().name(), "str");
        for bad in [
            "", "i65", "bytes:0", "bytes:-1", "bytes:", "bytes:x", "MsgPack", "I64", "bytes: 4",
            "pickle", "json ", "F16", "f16 ",
        ] {
            let err = DType::parse(bad).unwrap_err().to_string();
            assert!(err.contains("accepted dtypes"), "{bad}: {err}");
        }
    }

    #[test]
    fn text_encodings_parse_name_and_are_variable_width() {
        for (text, dtype) in [
            ("str:utf16", DType::Text(TextEncoding::Utf16)),
            ("str:latin1", DType::Text(TextEncoding::Latin1)),
            ("str:ascii", DType::Text(TextEncoding::Ascii)),
        ] {
            let parsed = DType::parse(text).unwrap();
            assert_eq!(parsed, dtype);
            assert_eq!(parsed.name(), text);
            assert_eq!(parsed.fixed_width(), None);
            assert!(!parsed.is_packed());
            assert!(ACCEPTED_DTYPES.contains(text));
        }
        assert_eq!(DType::parse("str:utf8").unwrap(), DType::Str);
        for bad in [
            "str:",
            "str:utf-16",
            "str:UTF16",
            "str:utf32",
            "str:latin-1",
            "str:ascii ",
        ] {
            assert!(DType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packed_dtypes_parse_name_and_are_variable_width() {
        for (text, dtype) in [
            ("msgpack", DType::MsgPack),
            ("json", DType::Json),
            ("cbor", DType::Cbor),
        ] {
            let parsed = DType::parse(text).unwrap();
            assert_eq!(parsed, dtype);
            assert_eq!(parsed.name(), text, "the stored name round-trips");
            assert_eq!(parsed.fixed_width(), None, "{text} is variable width");
            assert!(parsed.is_packed(), "{text}");
            assert!(ACCEPTED_DTYPES.contains(text), "{text} listed as accepted");
        }
        for plain in ["bytes", "str", "bytes:4", "i64"] {
            assert!(!DType::parse(plain).unwrap().is_packed(), "{plain}");
        }
    }

    #[test]
    fn fixed_text_dtypes_parse_name_and_width() {
        for (text, name, width, encoding) in [
            ("str:32", "str:32", 32, None),
            ("str:1", "str:1", 1, None),
            ("str:32:utf8", "str:32", 32, None),
            ("str:007", "str:7", 7, None),
            ("str:8:utf16", "str:8:utf16", 8, Some(TextEncoding::Utf16)),
            ("str:8:utf16le", "str:8:utf16", 8, Some(TextEncoding::Utf16)),
            (
                "str:5:latin1",
                "str:5:latin1",
                5,
                Some(TextEncoding::Latin1),
            ),
            ("str:5:ascii", "str:5:ascii", 5, Some(TextEncoding::Ascii)),
            ("str:16777216", "str:16777216", 16 << 20, None),
        ] {
            let dtype = DType::parse(text).unwrap();
            assert_eq!(dtype.name(), name, "{text}");
            assert_eq!(dtype.fixed_width(), Some(width), "{text}");
            assert!(!dtype.is_packed());
            let DType::FixedStr(fixed) = dtype else {
                panic!("{text} is fixed-width text")
            };
            assert_eq!(fixed.encoding(), encoding, "{text}");
            assert_eq!(DType::parse(name).unwrap(), dtype, "{name} parses back");
        }
        for bad in [
            "str:0",
            "str:-1",
            "str:+4",
            "str: 4",
            "str:4 ",
            "str:16777217",
            "str:99999999999",
            "str:4:",
            "str:4:utf-8",
            "str:4:UTF8",
            "str:4:utf32",
            "str:4:utf8:x",
            "str:3:utf16", // UTF-16 units are two bytes
            "str::utf8",
            "STR:4",
        ] {
            let err = DType::parse(bad).unwrap_err().to_string();
            assert!(err.contains("accepted dtypes"), "{bad}: {err}");
        }
        assert!(ACCEPTED_DTYPES.contains("str:N[:<encoding>]"));
    }

    fn fixed(text: &str) -> FixedText {
        match DType::parse(text).unwrap() {
            DType::FixedStr(fixed) => fixed,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn fixed_text_pads_with_zeros_and_unpads_exactly() {
        let f = fixed("str:6");
        for text in ["", "a", "héllo", "abcdef", "a\0b"] {
            let mut out = vec![9];
            f.pad_into(text.as_bytes(), &mut out).unwrap();
            assert_eq!(out.len(), 7, "{text:?}");
            assert_eq!(&out[1..=text.len()], text.as_bytes());
            assert!(out[1 + text.len()..].iter().all(|b| *b == 0));
            assert_eq!(f.unpad(&out[1..]), text.as_bytes(), "{text:?} round-trips");
        }
        // UTF-16: the padding unit is two bytes, so a code unit with a zero low or high byte
        // is not mistaken for padding.
        let f = fixed("str:6:utf16");
        for units in [
            &[][..],
            &[0x0100u16][..],
            &[0x0041, 0x0100][..],
            &[1, 2, 3][..],
        ] {
            let encoded: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
            let mut out = Vec::new();
            f.pad_into(&encoded, &mut out).unwrap();
            assert_eq!(out.len(), 6);
            assert_eq!(f.unpad(&out), &encoded[..]);
        }
    }

    #[test]
    fn fixed_text_refuses_too_long_and_trailing_nul_and_writes_nothing() {
        let f = fixed("str:4");
        let mut out = vec![1, 2];
        let err = f.pad_into(b"hello", &mut out).unwrap_err().to_string();
        assert!(
            err.contains("5 encoded bytes") && err.contains("fixed width of 4"),
            "{err}"
        );
        let err = f.pad_into(b"ab\0", &mut out).unwrap_err().to_string();
        assert!(err.contains("U+0000"), "{err}");
        assert!(f.pad_into(b"\0", &mut out).is_err());
        assert_eq!(out, [1, 2], "nothing appended by a refused element");
        let f = fixed("str:4:utf16");
        let err = f
            .pad_into(&[0x41, 0, 0, 0], &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("U+0000") && err.contains("str:4:utf16"),
            "{err}"
        );
        assert!(f.pad_into(&[0x41, 0, 0x42, 0, 0x43, 0], &mut out).is_err());
        f.pad_into(&[0, 1], &mut out).unwrap(); // U+0100 ends with a zero byte, not a zero unit
        assert_eq!(out, [1, 2, 0, 1, 0, 0]);
    }
}
