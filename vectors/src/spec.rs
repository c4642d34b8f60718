//! What a collection's vectors are: dimensions, element type and metric, and the checks every
//! vector passes before it is stored or searched with.

use kvault::{Error, Result};

/// The largest number of dimensions a collection may have.
pub const MAX_DIMENSIONS: usize = 65_536;

/// How distances are measured. Smaller is nearer for every metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `1 - cos(a, b)`: 0 for the same direction, 2 for opposite ones.
    Cosine,
    /// Euclidean distance `|a - b|`.
    L2,
    /// `1 - a·b` (inner product; for normalized vectors the same order as cosine).
    Dot,
    /// Number of differing bits (bit vectors only).
    Hamming,
}

impl Metric {
    /// Parses `"cosine"`, `"l2"`, `"dot"` or `"hamming"` (also `"euclidean"`, `"ip"`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other name.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Self::Cosine,
            "l2" | "euclidean" => Self::L2,
            "dot" | "ip" | "inner_product" => Self::Dot,
            "hamming" => Self::Hamming,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown metric {text:?}: use 'cosine', 'l2', 'dot' or 'hamming'"
                )))
            }
        })
    }

    /// The canonical name stored in the file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::Dot => "dot",
            Self::Hamming => "hamming",
        }
    }
}

/// The element type of stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorType {
    /// 32-bit floats (4 bytes per dimension).
    F32,
    /// IEEE half floats (2 bytes per dimension).
    F16,
    /// Signed 8-bit integers (1 byte per dimension).
    I8,
    /// Packed bits, 8 dimensions per byte (most significant bit first, as numpy's `packbits`).
    Bit,
}

impl VectorType {
    /// Parses `"f32"`, `"f16"`, `"i8"` or `"bit"` (also `"float32"`, `"float16"`, `"int8"`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other name.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Self::F32,
            "f16" | "float16" | "half" => Self::F16,
            "i8" | "int8" => Self::I8,
            "bit" | "bits" | "binary" => Self::Bit,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown vector_type {text:?}: use 'f32', 'f16', 'i8' or 'bit'"
                )))
            }
        })
    }

    /// The canonical name stored in the file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::I8 => "i8",
            Self::Bit => "bit",
        }
    }
}

/// The shape of a collection's vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spec {
    /// Number of dimensions.
    pub dimensions: usize,
    /// Element type.
    pub vector_type: VectorType,
    /// The collection's metric.
    pub metric: Metric,
}

impl Spec {
    /// A checked spec.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero or too many dimensions, bit vectors whose dimensions
    /// are not a multiple of 8, hamming on non-bit vectors, or bit vectors with another metric.
    pub fn new(dimensions: usize, vector_type: VectorType, metric: Metric) -> Result<Self> {
        if dimensions == 0 || dimensions > MAX_DIMENSIONS {
            return Err(Error::InvalidArgument(format!(
                "dimensions must be between 1 and {MAX_DIMENSIONS}, not {dimensions}"
            )));
        }
        match (vector_type, metric) {
            (VectorType::Bit, Metric::Hamming) if !dimensions.is_multiple_of(8) => {
                return Err(Error::InvalidArgument(format!(
                    "bit vectors need dimensions divisible by 8, not {dimensions}"
                )));
            }
            (VectorType::Bit, Metric::Hamming) => {}
            (VectorType::Bit, other) => {
                return Err(Error::InvalidArgument(format!(
                    "bit vectors are compared by 'hamming' distance, not {:?}",
                    other.name()
                )))
            }
            (_, Metric::Hamming) => {
                return Err(Error::InvalidArgument(
                    "'hamming' distance needs vector_type='bit'".into(),
                ))
            }
            _ => {}
        }
        Ok(Self {
            dimensions,
            vector_type,
            metric,
        })
    }

    /// Bytes of one stored vector.
    #[must_use]
    pub fn vector_bytes(&self) -> usize {
        match self.vector_type {
            VectorType::F32 => self.dimensions * 4,
            VectorType::F16 => self.dimensions * 2,
            VectorType::I8 => self.dimensions,
            VectorType::Bit => self.dimensions / 8,
        }
    }

    /// Checks `count` vectors packed in `bytes` (little-endian elements): the length, finite
    /// values, and (for cosine) no all-zero vector, whose direction is undefined.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad vector.
    pub fn check_vectors(&self, bytes: &[u8], metric: Metric) -> Result<usize> {
        let width = self.vector_bytes();
        if !bytes.len().is_multiple_of(width) {
            return Err(Error::InvalidArgument(format!(
                "vector data is {} bytes, not a multiple of {width} ({} {} dimensions)",
                bytes.len(),
                self.dimensions,
                self.vector_type.name()
            )));
        }
        for (row, vector) in bytes.chunks_exact(width).enumerate() {
            let (finite, zero) = match self.vector_type {
                VectorType::F32 => {
                    let mut finite = true;
                    let mut zero = true;
                    for c in vector.chunks_exact(4) {
                        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        finite &= v.is_finite();
                        zero &= v == 0.0;
                    }
                    (finite, zero)
                }
                VectorType::F16 => {
                    let mut finite = true;
                    let mut zero = true;
                    for c in vector.chunks_exact(2) {
                        let v = half::f16::from_le_bytes([c[0], c[1]]);
                        finite &= v.is_finite();
                        zero &= v == half::f16::ZERO;
                    }
                    (finite, zero)
                }
                VectorType::I8 | VectorType::Bit => (true, vector.iter().all(|&b| b == 0)),
            };
            if !finite {
                return Err(Error::InvalidArgument(format!(
                    "vector {row} has a NaN or infinite element"
                )));
            }
            if zero && metric == Metric::Cosine {
                return Err(Error::InvalidArgument(format!(
                    "vector {row} is all zeros: its cosine distance is undefined"
                )));
            }
        }
        Ok(bytes.len() / width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for m in [Metric::Cosine, Metric::L2, Metric::Dot, Metric::Hamming] {
            assert_eq!(Metric::parse(m.name()).unwrap(), m);
        }
        for t in [
            VectorType::F32,
            VectorType::F16,
            VectorType::I8,
            VectorType::Bit,
        ] {
            assert_eq!(VectorType::parse(t.name()).unwrap(), t);
        }
        assert!(Metric::parse("manhattan").is_err());
        assert!(VectorType::parse("f64").is_err());
    }

    #[test]
    fn specs_refuse_impossible_combinations() {
        assert!(Spec::new(0, VectorType::F32, Metric::L2).is_err());
        assert!(Spec::new(MAX_DIMENSIONS + 1, VectorType::F32, Metric::L2).is_err());
        assert!(Spec::new(12, VectorType::Bit, Metric::Hamming).is_err());
        assert!(Spec::new(16, VectorType::Bit, Metric::Cosine).is_err());
        assert!(Spec::new(16, VectorType::F32, Metric::Hamming).is_err());
        assert_eq!(
            Spec::new(16, VectorType::Bit, Metric::Hamming)
                .unwrap()
                .vector_bytes(),
            2
        );
    }

    #[test]
    fn vector_checks_name_the_bad_row() {
        let spec = Spec::new(2, VectorType::F32, Metric::Cosine).unwrap();
        let mut bytes: Vec<u8> = [1.0f32, 2.0, 0.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let err = spec.check_vectors(&bytes, Metric::Cosine).unwrap_err();
        assert!(err.to_string().contains("vector 1 is all zeros"), "{err}");
        assert_eq!(spec.check_vectors(&bytes, Metric::L2).unwrap(), 2);
        bytes[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        let err = spec.check_vectors(&bytes, Metric::L2).unwrap_err();
        assert!(err.to_string().contains("vector 0 has a NaN"), "{err}");
        assert!(spec.check_vectors(&bytes[..7], Metric::L2).is_err());
    }
}
