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
//! | 0-7 | codec: 0 none, 1 zstd, 2 lz4 (block format) |
//! | 8-15 | byte-shuffle width `w` (0: none): the chunk's bytes were regrouped, byte `j` of every `w`-byte element together, before compressing |
//!
//! zstd comes from the reference C library (`zstd` crate), lz4 from `lz4_flex` (pure Rust).

use crate::error::{Error, Result};

/// Code of a chunk stored as it is.
pub const CODEC_NONE: i64 = 0;
const CODEC_ZSTD: i64 = 1;
const CODEC_LZ4: i64 = 2;
/// Default minimum saving: a chunk is stored compressed only if it shrinks by at least 5%.
pub const DEFAULT_MIN_SAVING: f64 = 0.05;
/// zstd's default level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Zstandard at a level from -7 (fastest) to 22 (smallest).
    Zstd(i32),
    /// LZ4 block compression (one speed: lz4_flex has no levels).
    Lz4,
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
    /// Parses a setting: `"zstd"`, `"zstd:<level>"` or `"lz4"`, optionally followed by
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
    /// [`Error::InvalidArgument`] for a zstd level outside -7..=22 (or 0) or a minimum saving
    /// outside 0..1.
    pub fn validate(&self) -> Result<()> {
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
        }
    }

    /// Compresses one chunk. `shuffle` is the width of the numbers in it (0 or 1: none): the
    /// chunk is then compressed both as it is and byte-shuffled, and the smaller is kept
    /// (shuffled bytes win on noisy measurements; values that repeat exactly, such as readings
    /// rounded to a resolution, compress far better unshuffled). Returns the stored code and
    /// bytes, or `None` when the chunk does not shrink by at least `min_saving` (it is then
    /// stored as it is, with [`CODEC_NONE`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the compressor fails (it does not for valid settings).
    pub fn compress(&self, raw: &[u8], shuffle: usize) -> Result<Option<(i64, Vec<u8>)>> {
        let mut best = self.compress_plain(raw)?;
        if shuffle > 1 && shuffle < 256 && raw.len() >= 2 * shuffle {
            let shuffled = shuffle_bytes(raw, shuffle);
            let (code, out) = self.compress_plain(&shuffled)?;
            if out.len() < best.1.len() {
                best = (code | ((shuffle as i64) << 8), out);
            }
        }
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
        "compression must be 'zstd', 'zstd:<level>', 'lz4' or 'none' (optionally followed by \
         ':<min_saving>'), not {text:?}"
    ))
}

/// Whether `code` is one this build reads.
#[must_use]
pub fn known_code(code: i64) -> bool {
    let codec = code & 0xff;
    let width = (code >> 8) & 0xff;
    code >> 16 == 0 && (codec == CODEC_ZSTD || codec == CODEC_LZ4 || (codec == 0 && width == 0))
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
        for bad in [
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
            for width in [0, 8] {
                let (code, stored) = c.compress(&raw, width).unwrap().expect("compressible");
                assert!(stored.len() < raw.len() / 2, "{setting} {width}");
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
        let (code, _) = c.compress(&repeated, 8).unwrap().unwrap();
        assert_eq!(code >> 8, 0);
        // Smooth full-precision values: the shuffled exponent and high bytes win.
        let smooth: Vec<u8> = (0..8192)
            .flat_map(|i| (f64::from(i) * 0.001).sin().to_le_bytes())
            .collect();
        let (code, stored) = c.compress(&smooth, 8).unwrap().unwrap();
        assert_eq!(code >> 8, 8);
        let mut back = vec![0u8; smooth.len()];
        decompress_into(code, &stored, &mut back).unwrap();
        assert_eq!(back, smooth);
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
        assert!(c.compress(&noise, 0).unwrap().is_none());
    }

    #[test]
    fn damaged_and_unknown_chunks_are_errors() {
        let raw = signal(1000);
        let c = Compression::parse("zstd").unwrap().unwrap();
        let (code, mut stored) = c.compress(&raw, 0).unwrap().unwrap();
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
        let (code, stored) = lz4.compress(&raw, 0).unwrap().unwrap();
        assert!(decompress_into(code, &stored[..stored.len() - 3], &mut out).is_err());
    }
}
