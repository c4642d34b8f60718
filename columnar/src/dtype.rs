//! Element types. A column's dtype string is stored in its metadata; elements are stored
//! little-endian at fixed width, or as variable-length byte strings.

use crate::error::{Error, Result};

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
    "i8, i16, i32, i64, u8, u16, u32, u64, f16, f32, f64, bool, bytes:N (N >= 1), bytes, str (alias str:utf8), str:utf16 (alias str:utf16le), str:latin1, str:ascii, msgpack, json, cbor, \
     vec:<elem>:<d1>[:<d2>...] (elem i8..u64, f16, f32 or f64; up to 8 dims >= 1)";

/// Largest width of a `bytes:N` element (and of a `vec:` tensor).
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
            Self::Vector(shape) => Some(shape.width()),
            Self::Bytes | Self::Str | Self::Text(_) | Self::MsgPack | Self::Json | Self::Cbor => {
                None
            }
        }
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
}
