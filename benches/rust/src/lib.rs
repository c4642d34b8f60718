//! Holds the criterion benchmarks in `benches/`; no library code.
