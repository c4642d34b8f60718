//! Chunk compression: the codecs a table or column may use, and the code stored beside each
//! compressed chunk.
//!
//! Compression is per chunk, so a seek decompresses only the chunk it lands in. A chunk that
//! does not shrink by at least the setting's `min_saving` is stored as it is (already
//! compressed media pays one trial per chunk and nothing on reads). The code stored with a
//! chunk says how to read it, whatever the table's setting is now:
//!
//! | bits | meaning |
//! |---|---|
//! | 0-7 | codec: 0 none, 1 zstd, 2 lz4 (block format), 3 pco |
//! | 8-15 | zstd and lz4: byte-shuffle width `w` (0: none): the chunk's bytes were regrouped, byte `j` of every `w`-byte element together, before compressing. pco: the type of the numbers ([`Numbers`]) |
//! | 16 | zstd and lz4: the chunk's little-endian `u64` were replaced by their differences (each minus the one before; the first kept) before the shuffle |
//!
//! zstd comes from the reference C library (`zstd` crate), lz4 from `lz4_flex` (pure Rust), pco
//! (Pcodec, numbers only) from the `pco` crate (pure Rust).

use crate::error::{Error, Result};

/// Code of a chunk stored as it is.
pub const CODEC_NONE: i64 = 0;
const CODEC_ZSTD: i64 = 1;
const CODEC_LZ4: i64 = 2;
const CODEC_PCO: i64 = 3;
/// Bit 16 of a code: the chunk's `u64` were stored as differences.
const DELTA_FLAG: i64 = 1 << 16;
/// Default minimum saving: a chunk is stored compressed only if it shrinks by at least 5%.
pub const DEFAULT_MIN_SAVING: f64 = 0.05;
/// zstd's default level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// pco's default level (its own default: "very good compression").
pub const DEFAULT_PCO_LEVEL: usize = 8;

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Zstandard at a level from -7 (fastest) to 22 (smallest).
    Zstd(i32),
    /// LZ4 block compression (one speed: lz4_flex has no levels).
    Lz4,
    /// Pcodec at a level from 0 to 12, for numbers only: it models the numbers themselves
    /// (their distribution, deltas, common multiples such as a sensor's 0.01 resolution), where
    /// zstd and lz4 see bytes.
    Pco(usize),
}

/// The type of the little-endian numbers a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// IEEE 754 half.
    F16,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl Numbers {
    const ALL: [Numbers; 11] = [
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::F16,
        Self::F32,
        Self::F64,
    ];

    /// Bytes per number.
    #[must_use]
    pub fn width(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 | Self::F16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// The number stored in bits 8-15 of a pco chunk's code (1 to 11).
    fn id(self) -> i64 {
        Self::ALL
            .iter()
            .position(|n| *n == self)
            .map_or(0, |i| i as i64 + 1)
    }

    fn from_id(id: i64) -> Option<Self> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// What a chunk's bytes are, which decides what compression may try on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Opaque bytes (values, text).
    Bytes,
    /// Numbers of one type, one after the other (a chunk may end inside one).
    Numbers(Numbers),
    /// Ascending little-endian `u64` (the end offsets of a variable-width column): stored as
    /// their differences, which are small.
    Offsets,
}

/// A table's or column's compression setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compression {
    /// The algorithm.
    pub codec: Codec,
    /// The fraction of its size a chunk must lose to be stored compressed (0 to 1).
    pub min_saving: f64,
}

impl Compression {
    /// Parses a setting: `"zstd"`, `"zstd:<level>"`, `"lz4"`, `"pco"` or `"pco:<level>"`,
    /// optionally followed by
    /// `":<min_saving>"` (`"zstd:9:0.1"`; `"lz4::0.1"` keeps lz4's only level); `"none"` or the
    /// empty string mean no compression (`None`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Option<Self>> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let level = parts.next().filter(|p| !p.is_empty());
        let saving = parts.next();
        if parts.next().is_some() {
            return Err(bad_setting(text));
        }
        let codec = match (name.as_str(), level) {
            ("zstd", None) => Codec::Zstd(DEFAULT_ZSTD_LEVEL),
            ("zstd", Some(level)) => {
                let level: i32 = level.parse().map_err(|_| bad_setting(text))?;
                Codec::Zstd(level)
            }
            ("lz4", None) => Codec::Lz4,
            ("lz4", Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "lz4 has no compression levels (lz4_flex has one speed); got {text:?}"
                )))
            }
            ("pco", None) => Codec::Pco(DEFAULT_PCO_LEVEL),
            ("pco", Some(level)) => Codec::Pco(level.parse().map_err(|_| bad_setting(text))?),
            _ => return Err(bad_setting(text)),
        };
        let min_saving = match saving {
            None => DEFAULT_MIN_SAVING,
            Some(s) => s.parse().map_err(|_| bad_setting(text))?,
        };
        let setting = Self { codec, min_saving };
        setting.validate()?;
        Ok(Some(setting))
    }

    /// Checks the level and the minimum saving.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zstd level outside -7..=22 (or 0), a pco level above
    /// 12 or a minimum saving outside 0..1.
    pub fn validate(&self) -> Result<()> {
        if let Codec::Pco(level) = self.codec {
            if level > 12 {
                return Err(Error::InvalidArgument(format!(
                    "pco level must be between 0 and 12, not {level}"
                )));
            }
        }
        if let Codec::Zstd(level) = self.codec {
            if !(-7..=22).contains(&level) || level == 0 {
                return Err(Error::InvalidArgument(format!(
                    "zstd level must be between -7 and 22 and not 0, not {level}"
                )));
            }
        }
        if !(self.min_saving.is_finite() && (0.0..1.0).contains(&self.min_saving)) {
            return Err(Error::InvalidArgument(format!(
                "min_saving must be at least 0 and below 1, not {}",
                self.min_saving
            )));
        }
        Ok(())
    }

    /// The setting as [`Compression::parse`] reads it back (every part spelled out).
    #[must_use]
    pub fn to_setting(&self) -> String {
        match self.codec {
            Codec::Zstd(level) => format!("zstd:{level}:{}", self.min_saving),
            Codec::Lz4 => format!("lz4::{}", self.min_saving),
            Codec::Pco(level) => format!("pco:{level}:{}", self.min_saving),
        }
    }

    /// Whether the codec compresses only numbers (pco): a setting for a table of values or a
    /// column of text or bytes must not use it.
    #[must_use]
    pub fn numbers_only(&self) -> bool {
        matches!(self.codec, Codec::Pco(_))
    }

    /// Checks that this setting can compress chunks of `layout`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for pco on bytes.
    pub fn check_layout(&self, layout: Layout) -> Result<()> {
        if self.numbers_only() && layout == Layout::Bytes {
            return Err(Error::InvalidArgument(
                "pco compresses numbers only: use it on columns of integers, floats or vec: \
                 elements, and zstd or lz4 for values, text and bytes"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Compresses one chunk of `layout`. For numbers, zstd and lz4 compress the chunk both as
    /// it is and byte-shuffled, and the smaller is kept (shuffled bytes win on noisy
    /// measurements; values that repeat exactly, such as readings rounded to a resolution,
    /// compress far better unshuffled); offsets are compressed as shuffled differences; pco
    /// compresses the numbers themselves. Returns the stored code and bytes, or `None` when the
    /// chunk does not shrink by at least `min_saving` (it is then stored as it is, with
    /// [`CODEC_NONE`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for pco on bytes, or if the compressor fails (it does not for
    /// valid settings).
    pub fn compress(&self, raw: &[u8], layout: Layout) -> Result<Option<(i64, Vec<u8>)>> {
        self.check_layout(layout)?;
        let best = match (self.codec, layout) {
            (Codec::Pco(level), Layout::Numbers(numbers)) => pco_compress(raw, numbers, level)?,
            (Codec::Pco(level), _) => pco_compress(raw, Numbers::U64, level)?,
            (_, Layout::Offsets) if raw.len() >= 16 => {
                let (code, out) = self.compress_plain(&shuffle_bytes(&differences(raw), 8))?;
                (code | (8 << 8) | DELTA_FLAG, out)
            }
            (_, Layout::Numbers(numbers))
                if numbers.width() > 1 && raw.len() >= 2 * numbers.width() =>
            {
                let width = numbers.width();
                let plain = self.compress_plain(raw)?;
                let (code, out) = self.compress_plain(&shuffle_bytes(raw, width))?;
                if out.len() < plain.1.len() {
                    (code | ((width as i64) << 8), out)
                } else {
                    plain
                }
            }
            _ => self.compress_plain(raw)?,
        };
        // Stored compressed only if it saves at least min_saving of the chunk.
        let limit = (raw.len() as f64 * (1.0 - self.min_saving)).floor();
        if best.1.len() as f64 > limit || best.1.len() >= raw.len() {
            return Ok(None);
        }
        Ok(Some(best))
    }

    /// The codec's code and output for `input`, without the shuffle.
    fn compress_plain(&self, input: &[u8]) -> Result<(i64, Vec<u8>)> {
        match self.codec {
            Codec::Zstd(level) => ZSTD_COMPRESSOR.with(|slot| {
                let mut slot = slot.borrow_mut();
                let fresh = match slot.take() {
                    Some((at, compressor)) if at == level => Ok(compressor),
                    Some((_, mut compressor)) => {
                        compressor.set_compression_level(level).map(|()| compressor)
                    }
                    None => zstd::bulk::Compressor::new(level),
                };
                let mut compressor =
                    fresh.map_err(|e| Error::InvalidArgument(format!("zstd failed: {e}")))?;
                let out = compressor
                    .compress(input)
                    .map_err(|e| Error::InvalidArgument(format!("zstd failed: {e}")));
                *slot = Some((level, compressor));
                Ok((CODEC_ZSTD, out?))
            }),
            Codec::Lz4 => Ok((CODEC_LZ4, lz4_flex::block::compress(input))),
            // pco compresses numbers, never plain bytes (`compress` routes it by layout).
            Codec::Pco(_) => Err(Error::InvalidArgument(
                "pco compresses numbers only".to_string(),
            )),
        }
    }
}

thread_local! {
    /// A zstd compression context per thread, kept between chunks (creating one costs more
    /// than compressing a small chunk), with the level it is set to.
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// A zstd decompression context per thread, kept between chunks.
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn bad_setting(text: &str) -> Error {
    Error::InvalidArgument(format!(
        "compression must be 'zstd', 'zstd:<level>', 'lz4', 'pco', 'pco:<level>' or 'none' \
         (optionally followed by ':<min_saving>'), not {text:?}"
    ))
}

/// The file format version a chunk stored under `code` needs: 3 for pco and stored
/// differences, 2 for the rest (see [`crate::COMPRESSION_FORMAT_VERSION`]).
#[must_use]
pub fn format_version_of(code: i64) -> i64 {
    if code & 0xff == CODEC_PCO || code & DELTA_FLAG != 0 {
        crate::store::NUMERIC_CODECS_FORMAT_VERSION
    } else {
        crate::store::COMPRESSION_FORMAT_VERSION
    }
}

/// Whether `code` is one this build reads.
#[must_use]
pub fn known_code(code: i64) -> bool {
    let codec = code & 0xff;
    let width = (code >> 8) & 0xff;
    let delta = code & DELTA_FLAG != 0;
    if code >> 17 != 0 {
        return false;
    }
    match codec {
        CODEC_NONE => width == 0 && !delta,
        CODEC_ZSTD | CODEC_LZ4 => !delta || width == 8,
        CODEC_PCO => !delta && Numbers::from_id(width).is_some(),
        _ => false,
    }
}

/// Decompresses a chunk stored under `code` into `out`, which must be exactly the chunk's
/// length.
///
/// # Errors
/// [`Error::Corrupted`] for an unknown code, or bytes that do not decompress to exactly
/// `out.len()` bytes.
pub fn decompress_into(code: i64, stored: &[u8], out: &mut [u8]) -> Result<()> {
    if code == CODEC_NONE {
        if stored.len() != out.len() {
            return Err(Error::Corrupted(format!(
                "a stored chunk has {} bytes, expected {}",
                stored.len(),
                out.len()
            )));
        }
        out.copy_from_slice(stored);
        return Ok(());
    }
    if !known_code(code) {
        return Err(Error::Corrupted(format!(
            "a chunk is stored with compression code {code}, which this version does not know \
             (written by a newer version?)"
        )));
    }
    if code & 0xff == CODEC_PCO {
        let numbers = Numbers::from_id((code >> 8) & 0xff).unwrap_or(Numbers::U64);
        return pco_decompress(stored, numbers, out);
    }
    let width = usize::try_from((code >> 8) & 0xff).unwrap_or(0);
    let mut shuffled = Vec::new();
    let target: &mut [u8] = if width > 1 {
        shuffled.resize(out.len(), 0);
        &mut shuffled
    } else {
        out
    };
    let expected = target.len();
    let got = match code & 0xff {
        CODEC_ZSTD => ZSTD_DECOMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            let mut decompressor = match slot.take() {
                Some(d) => d,
                None => zstd::bulk::Decompressor::new()
                    .map_err(|e| Error::Corrupted(format!("zstd failed: {e}")))?,
            };
            let got = decompressor
                .decompress_to_buffer(stored, &mut *target)
                .map_err(|e| Error::Corrupted(format!("a zstd chunk does not decompress: {e}")));
            *slot = Some(decompressor);
            got
        })?,
        _ => lz4_flex::block::decompress_into(stored, target)
            .map_err(|e| Error::Corrupted(format!("an lz4 chunk does not decompress: {e}")))?,
    };
    if got != expected {
        return Err(Error::Corrupted(format!(
            "a compressed chunk holds {got} bytes, expected {expected}"
        )));
    }
    if width > 1 {
        unshuffle_bytes(&shuffled, width, out);
    }
    if code & DELTA_FLAG != 0 {
        undo_differences(out);
    }
    Ok(())
}

/// Each little-endian `u64` of `raw` minus the one before (wrapping; the first kept, bytes past
/// the last whole number kept as they are).
fn differences(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut previous = 0u64;
    let mut numbers = raw.chunks_exact(8);
    for bytes in &mut numbers {
        let value = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        out.extend_from_slice(&value.wrapping_sub(previous).to_le_bytes());
        previous = value;
    }
    out.extend_from_slice(numbers.remainder());
    out
}

/// The inverse of [`differences`], in place.
fn undo_differences(bytes: &mut [u8]) {
    let mut running = 0u64;
    for number in bytes.chunks_exact_mut(8) {
        running = running.wrapping_add(u64::from_le_bytes(
            (&*number).try_into().unwrap_or_default(),
        ));
        number.copy_from_slice(&running.to_le_bytes());
    }
}

/// Numbers pco compresses, read from and written to little-endian bytes.
trait PcoNumber: pco::data_types::Number {
    const WIDTH: usize;
    // Used on big-endian machines only (little-endian ones copy the bytes as they are).
    #[cfg_attr(target_endian = "little", allow(dead_code))]
    fn read_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut [u8]);
}

macro_rules! pco_number {
    ($($t:ty),*) => {$(
        impl PcoNumber for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().unwrap_or_default())
            }
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
pco_number!(i8, i16, i32, i64, u8, u16, u32, u64, half::f16, f32, f64);

/// Runs `$body` with `$t` bound to the Rust type of `$numbers`.
macro_rules! with_number_type {
    ($numbers:expr, $t:ident => $body:expr) => {
        match $numbers {
            Numbers::I8 => {
                type $t = i8;
                $body
            }
            Numbers::I16 => {
                type $t = i16;
                $body
            }
            Numbers::I32 => {
                type $t = i32;
                $body
            }
            Numbers::I64 => {
                type $t = i64;
                $body
            }
            Numbers::U8 => {
                type $t = u8;
                $body
            }
            Numbers::U16 => {
                type $t = u16;
                $body
            }
            Numbers::U32 => {
                type $t = u32;
                $body
            }
            Numbers::U64 => {
                type $t = u64;
                $body
            }
            Numbers::F16 => {
                type $t = half::f16;
                $body
            }
            Numbers::F32 => {
                type $t = f32;
                $body
            }
            Numbers::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}

/// pco's code and output for `raw` read as `numbers`. Bytes past the last whole number (a
/// chunk may end inside one) are stored first, as they are; the reader knows how many from the
/// chunk's length.
fn pco_compress(raw: &[u8], numbers: Numbers, level: usize) -> Result<(i64, Vec<u8>)> {
    let config = pco::ChunkConfig::default()
        .with_compression_level(level)
        .with_enable_8_bit(true);
    let width = numbers.width();
    let whole = raw.len() / width * width;
    let mut out = raw[whole..].to_vec();
    with_number_type!(numbers, T => {
        let values: Vec<T> = read_numbers::<T>(&raw[..whole]);
        pco::standalone::simple_compress_into(&values, &config, &mut out)
            .map_err(|e| Error::InvalidArgument(format!("pco failed: {e}")))?;
    });
    Ok((CODEC_PCO | (numbers.id() << 8), out))
}

/// Errors unless pco decoded exactly `expected` numbers and reached the end of its data.
fn check_pco_progress(progress: &pco::Progress, expected: usize) -> Result<()> {
    if progress.n_processed != expected || !progress.finished {
        return Err(Error::Corrupted(format!(
            "a pco chunk does not hold {expected} numbers"
        )));
    }
    Ok(())
}

/// The little-endian numbers of `raw` (a whole count of them).
fn read_numbers<T: PcoNumber>(raw: &[u8]) -> Vec<T> {
    #[cfg(target_endian = "little")]
    {
        let n = raw.len() / T::WIDTH;
        let mut values: Vec<T> = Vec::with_capacity(n);
        // SAFETY: the numbers' bytes on a little-endian machine are these bytes; every bit
        // pattern is a valid integer, float or half, and `n` of them fit the capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.as_ptr(),
                values.as_mut_ptr().cast::<u8>(),
                n * T::WIDTH,
            );
            values.set_len(n);
        }
        values
    }
    #[cfg(not(target_endian = "little"))]
    {
        raw.chunks_exact(T::WIDTH).map(T::read_le).collect()
    }
}

/// The inverse of [`pco_compress`], into `out` (exactly the chunk's length).
fn pco_decompress(stored: &[u8], numbers: Numbers, out: &mut [u8]) -> Result<()> {
    let width = numbers.width();
    let whole = out.len() / width * width;
    let ragged = out.len() - whole;
    if stored.len() < ragged {
        return Err(Error::Corrupted("a pco chunk is too short".to_string()));
    }
    let (tail, encoded) = stored.split_at(ragged);
    with_number_type!(numbers, T => {
        #[cfg(target_endian = "little")]
        if out.as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
            // Straight into `out`: on a little-endian machine its bytes are the numbers.
            // SAFETY: `out` is aligned for T and holds `whole / width` of them; any bytes are
            // a valid MaybeUninit<T>, and pco only writes numbers.
            let slots = unsafe {
                std::slice::from_raw_parts_mut(
                    out.as_mut_ptr().cast::<std::mem::MaybeUninit<T>>(),
                    whole / width,
                )
            };
            let progress = pco::standalone::simple_decompress_into_uninit(encoded, slots)
                .map_err(|e| Error::Corrupted(format!("a pco chunk does not decompress: {e}")))?;
            check_pco_progress(&progress, whole / width)?;
            out[whole..].copy_from_slice(tail);
            return Ok(());
        }
        let mut values: Vec<T> = Vec::with_capacity(whole / width);
        let progress =
            pco::standalone::simple_decompress_into_uninit(encoded, values.spare_capacity_mut())
                .map_err(|e| Error::Corrupted(format!("a pco chunk does not decompress: {e}")))?;
        check_pco_progress(&progress, whole / width)?;
        // SAFETY: pco initialised the first `n_processed` numbers, checked above to be all of
        // them.
        unsafe { values.set_len(whole / width) };
        for (value, bytes) in values.into_iter().zip(out.chunks_exact_mut(width)) {
            value.write_le(bytes);
        }
    });
    out[whole..].copy_from_slice(tail);
    Ok(())
}

/// Regroups `raw` so that byte `j` of every `width`-byte element comes together (bytes past
/// the last whole element stay at the end, in order). Numbers that change slowly then give
/// long runs of equal high bytes, which compress far better.
fn shuffle_bytes(raw: &[u8], width: usize) -> Vec<u8> {
    let mut out = vec![0u8; raw.len()];
    match width {
        2 => shuffle_fixed::<2>(raw, &mut out),
        4 => shuffle_fixed::<4>(raw, &mut out),
        8 => shuffle_fixed::<8>(raw, &mut out),
        _ => {
            let n = raw.len() / width;
            for (i, element) in raw.chunks_exact(width).enumerate() {
                for (j, &byte) in element.iter().enumerate() {
                    out[j * n + i] = byte;
                }
            }
        }
    }
    let whole = raw.len() / width * width;
    out[whole..].copy_from_slice(&raw[whole..]);
    out
}

/// [`shuffle_bytes`] for a width known at compile time (the loops then unroll).
fn shuffle_fixed<const W: usize>(raw: &[u8], out: &mut [u8]) {
    let n = raw.len() / W;
    let (lanes, _) = out.split_at_mut(n * W);
    let mut lanes: Vec<&mut [u8]> = lanes.chunks_exact_mut(n.max(1)).take(W).collect();
    for (i, element) in raw.chunks_exact(W).enumerate() {
        for (lane, &byte) in lanes.iter_mut().zip(element) {
            lane[i] = byte;
        }
    }
}

/// The inverse of [`shuffle_bytes`].
fn unshuffle_bytes(shuffled: &[u8], width: usize, out: &mut [u8]) {
    match width {
        2 => unshuffle_fixed::<2>(shuffled, out),
        4 => unshuffle_fixed::<4>(shuffled, out),
        8 => unshuffle_fixed::<8>(shuffled, out),
        _ => {
            let n = out.len() / width;
            for (i, element) in out.chunks_exact_mut(width).enumerate() {
                for (j, byte) in element.iter_mut().enumerate() {
                    *byte = shuffled[j * n + i];
                }
            }
        }
    }
    let whole = out.len() / width * width;
    out[whole..].copy_from_slice(&shuffled[whole..]);
}

/// [`unshuffle_bytes`] for a width known at compile time.
fn unshuffle_fixed<const W: usize>(shuffled: &[u8], out: &mut [u8]) {
    let n = out.len() / W;
    if n == 0 {
        return;
    }
    let lanes: [&[u8]; W] = std::array::from_fn(|j| &shuffled[j * n..(j + 1) * n]);
    for (i, element) in out.chunks_exact_mut(W).enumerate() {
        for (byte, lane) in element.iter_mut().zip(lanes) {
            *byte = lane[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((i as f64 * 0.01).sin() * 100.0).round().to_le_bytes())
            .collect()
    }

    #[test]
    fn settings_parse_and_print_back() {
        let zstd = Compression::parse("zstd").unwrap().unwrap();
        assert_eq!(zstd.codec, Codec::Zstd(DEFAULT_ZSTD_LEVEL));
        assert_eq!(Compression::parse(&zstd.to_setting()).unwrap(), Some(zstd));
        let lz4 = Compression::parse("LZ4::0.2").unwrap().unwrap();
        assert_eq!((lz4.codec, lz4.min_saving), (Codec::Lz4, 0.2));
        assert_eq!(Compression::parse(&lz4.to_setting()).unwrap(), Some(lz4));
        assert_eq!(Compression::parse("none").unwrap(), None);
        let pco = Compression::parse("pco").unwrap().unwrap();
        assert_eq!(pco.codec, Codec::Pco(DEFAULT_PCO_LEVEL));
        assert_eq!(Compression::parse(&pco.to_setting()).unwrap(), Some(pco));
        assert_eq!(
            Compression::parse("pco:3:0.2").unwrap().unwrap().codec,
            Codec::Pco(3)
        );
        for bad in [
            "pco:13",
            "pco:-1",
            "pco:x",
            "gzip",
            "zstd:x",
            "zstd:0",
            "zstd:23",
            "lz4:3",
            "zstd:3:1.5",
            "zstd:3:0.1:x",
        ] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunks_round_trip_with_and_without_shuffle() {
        let raw = signal(8000);
        for setting in ["zstd", "zstd:19", "zstd:-3", "lz4"] {
            let c = Compression::parse(setting).unwrap().unwrap();
            for layout in [Layout::Bytes, Layout::Numbers(Numbers::F64)] {
                let (code, stored) = c.compress(&raw, layout).unwrap().expect("compressible");
                assert!(stored.len() < raw.len() / 2, "{setting} {layout:?}");
                let mut back = vec![0u8; raw.len()];
                decompress_into(code, &stored, &mut back).unwrap();
                assert_eq!(back, raw);
            }
        }
    }

    #[test]
    fn the_smaller_of_shuffled_and_plain_is_kept() {
        let c = Compression::parse("zstd").unwrap().unwrap();
        // Few distinct values that repeat exactly: plain bytes compress better.
        let repeated: Vec<u8> = (0..8192)
            .flat_map(|i| (20.0 + f64::from(i % 7) / 100.0).to_le_bytes())
            .collect();
        let (code, _) = c
            .compress(&repeated, Layout::Numbers(Numbers::F64))
            .unwrap()
            .unwrap();
        assert_eq!(code >> 8, 0);
        // Smooth full-precision values: the shuffled exponent and high bytes win.
        let smooth: Vec<u8> = (0..8192)
            .flat_map(|i| (f64::from(i) * 0.001).sin().to_le_bytes())
            .collect();
        let (code, stored) = c
            .compress(&smooth, Layout::Numbers(Numbers::F64))
            .unwrap()
            .unwrap();
        assert_eq!(code >> 8, 8);
        let mut back = vec![0u8; smooth.len()];
        decompress_into(code, &stored, &mut back).unwrap();
        assert_eq!(back, smooth);
    }

    /// Readings to a 0.01 resolution, as a sensor reports them.
    fn readings(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let t = i as f64;
                ((20.0 + 4.0 * (t / 8640.0).sin() + 0.3 * (t * 0.7).sin()) * 100.0).round() / 100.0
            })
            .collect()
    }

    #[test]
    fn pco_round_trips_every_number_type_and_beats_zstd_on_readings() {
        let pco = Compression::parse("pco").unwrap().unwrap();
        let zstd = Compression::parse("zstd").unwrap().unwrap();
        let values = readings(8192);
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (code, stored) = pco
            .compress(&raw, Layout::Numbers(Numbers::F64))
            .unwrap()
            .unwrap();
        let (_, by_zstd) = zstd
            .compress(&raw, Layout::Numbers(Numbers::F64))
            .unwrap()
            .unwrap();
        assert!(
            stored.len() * 2 < by_zstd.len(),
            "{} vs {}",
            stored.len(),
            by_zstd.len()
        );
        let mut back = vec![0u8; raw.len()];
        decompress_into(code, &stored, &mut back).unwrap();
        assert_eq!(back, raw);
        // Into a buffer not aligned for f64 (decoded aside, then copied).
        let mut shifted = vec![0u8; raw.len() + 1];
        decompress_into(code, &stored, &mut shifted[1..]).unwrap();
        assert_eq!(&shifted[1..], &raw[..]);
        // Every type, with a chunk that ends inside a number (the ragged bytes come back too).
        let bytes: Vec<u8> = (0..4099u32).map(|i| (i / 7 + i % 3) as u8).collect();
        for numbers in Numbers::ALL {
            let (code, stored) = pco
                .compress(&bytes, Layout::Numbers(numbers))
                .unwrap()
                .unwrap_or_else(|| panic!("{numbers:?} did not shrink"));
            assert!(known_code(code), "{numbers:?}");
            let mut back = vec![0u8; bytes.len()];
            decompress_into(code, &stored, &mut back).unwrap();
            assert_eq!(back, bytes, "{numbers:?}");
            // A reader expecting another length, or damaged bytes, gets an error.
            assert!(decompress_into(code, &stored, &mut vec![0u8; bytes.len() + 64]).is_err());
            assert!(decompress_into(code, &stored[..stored.len() / 2], &mut back).is_err());
        }
    }

    #[test]
    fn pco_refuses_bytes() {
        let pco = Compression::parse("pco").unwrap().unwrap();
        assert!(matches!(
            pco.compress(b"some text, not numbers", Layout::Bytes),
            Err(Error::InvalidArgument(_))
        ));
        assert!(pco.check_layout(Layout::Numbers(Numbers::I32)).is_ok());
        assert!(pco.check_layout(Layout::Offsets).is_ok());
    }

    #[test]
    fn offsets_are_stored_as_differences() {
        let mut end = 0u64;
        let raw: Vec<u8> = (0..8192u64)
            .flat_map(|i| {
                end += 60 + (i * 37) % 61;
                end.to_le_bytes()
            })
            .collect();
        for setting in ["zstd", "lz4", "pco"] {
            let c = Compression::parse(setting).unwrap().unwrap();
            let (code, stored) = c.compress(&raw, Layout::Offsets).unwrap().unwrap();
            let (_, shuffled) = c
                .compress(&raw, Layout::Numbers(Numbers::U64))
                .unwrap()
                .unwrap();
            assert!(stored.len() <= shuffled.len(), "{setting}");
            if setting != "pco" {
                assert_ne!(code & DELTA_FLAG, 0, "{setting}");
                assert!(stored.len() < shuffled.len(), "{setting}");
            }
            let mut back = vec![0u8; raw.len()];
            decompress_into(code, &stored, &mut back).unwrap();
            assert_eq!(back, raw, "{setting}");
        }
        // Codes this build does not write are refused.
        assert!(!known_code(CODEC_PCO | DELTA_FLAG | (4 << 8)));
        assert!(!known_code(CODEC_ZSTD | DELTA_FLAG | (4 << 8)));
        assert!(!known_code(CODEC_PCO | (12 << 8)));
        assert!(!known_code(1 << 17 | CODEC_ZSTD));
    }

    #[test]
    fn shuffle_keeps_a_ragged_end() {
        let raw: Vec<u8> = (0..=250u8).collect();
        for width in [2, 3, 4, 8] {
            let s = shuffle_bytes(&raw, width);
            assert_eq!(s[1], raw[width], "width {width}");
            let mut back = vec![0u8; raw.len()];
            unshuffle_bytes(&s, width, &mut back);
            assert_eq!(back, raw, "width {width}");
        }
    }

    #[test]
    fn incompressible_chunks_are_left_alone() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let c = Compression::parse("zstd").unwrap().unwrap();
        assert!(c.compress(&noise, Layout::Bytes).unwrap().is_none());
    }

    #[test]
    fn damaged_and_unknown_chunks_are_errors() {
        let raw = signal(1000);
        let c = Compression::parse("zstd").unwrap().unwrap();
        let (code, mut stored) = c.compress(&raw, Layout::Bytes).unwrap().unwrap();
        let mut out = vec![0u8; raw.len()];
        assert!(matches!(
            decompress_into(code, &stored, &mut out[..10]),
            Err(Error::Corrupted(_))
        ));
        stored.truncate(stored.len() / 2);
        assert!(matches!(
            decompress_into(code, &stored, &mut out),
            Err(Error::Corrupted(_))
        ));
        assert!(matches!(
            decompress_into(7, &stored, &mut out),
            Err(Error::Corrupted(_))
        ));
        let lz4 = Compression::parse("lz4").unwrap().unwrap();
        let (code, stored) = lz4.compress(&raw, Layout::Bytes).unwrap().unwrap();
        assert!(decompress_into(code, &stored[..stored.len() - 3], &mut out).is_err());
    }
}
