//! How many threads the engines split parallel work into.

use std::sync::OnceLock;

/// The cores this process may use, at most 8; read once, since
/// `std::thread::available_parallelism` reads cgroup files on every call (on Linux, about a
/// tenth of a one-query search's time when it was called per search).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 8)
    })
}
