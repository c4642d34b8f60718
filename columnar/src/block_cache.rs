//! The block store behind the point-read cache: fixed-size blocks of column data in one
//! arena, two-way set associative.
//!
//! A hit costs a hash, one cache line of slot tags and the block's bytes. The LRU map it
//! replaces (a hash map plus a linked list of boxed blocks) touched four or five cache lines
//! per hit, and on a 64 MiB working set each of those was a miss to memory: 16% of a point
//! read's time in the profile. Clearing is O(1): slots carry the generation they were filled
//! in. Tags and arena are allocated on the first insert, the arena zeroed, so the kernel only
//! backs the pages that blocks are written to.

/// Tag of one slot: what it holds and when it was filled.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    stream: i64,
    block: u64,
    len: u32,
    /// Valid only while equal to the cache's generation (0 = never filled).
    generation: u32,
}

/// Two slots share one 64-byte line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Set {
    ways: [Slot; 2],
}

/// Blocks of `block_bytes` keyed by `(stream, block index)`.
pub struct BlockCache {
    block_bytes: usize,
    /// Number of sets, a power of two (the vectors below are allocated on the first insert,
    /// so an unused cache, e.g. a placeholder, costs nothing).
    set_count: usize,
    sets: Vec<Set>,
    /// Way used last in each set (the other one is replaced first).
    recent: Vec<u8>,
    arena: Vec<u8>,
    generation: u32,
}

impl BlockCache {
    /// A cache of `capacity_bytes` (rounded down to a power-of-two number of two-block sets).
    #[must_use]
    pub fn new(block_bytes: usize, capacity_bytes: usize) -> Self {
        let pairs = (capacity_bytes / block_bytes / 2).max(1);
        let sets = if pairs.is_power_of_two() {
            pairs
        } else {
            pairs.next_power_of_two() / 2
        };
        Self {
            block_bytes,
            set_count: sets,
            sets: Vec::new(),
            recent: Vec::new(),
            arena: Vec::new(),
            generation: 1,
        }
    }

    fn set_of(&self, stream: i64, block: u64) -> usize {
        // Multiplicative hashing; consecutive blocks of a stream land in consecutive sets.
        let mixed = block.wrapping_add((stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (mixed as usize) & (self.set_count - 1)
    }

    /// The bytes of a cached block, or `None`.
    #[must_use]
    pub fn get(&mut self, stream: i64, block: u64) -> Option<&[u8]> {
        let (set, way) = self.find(stream, block)?;
        self.recent[set] = way as u8;
        let len = self.sets[set].ways[way].len as usize;
        let start = (set * 2 + way) * self.block_bytes;
        Some(&self.arena[start..start + len])
    }

    /// Whether a block is cached (without marking it used).
    #[must_use]
    pub fn contains(&self, stream: i64, block: u64) -> bool {
        self.find(stream, block).is_some()
    }

    /// `(set, way)` of a cached block.
    fn find(&self, stream: i64, block: u64) -> Option<(usize, usize)> {
        if self.sets.is_empty() {
            return None;
        }
        let set = self.set_of(stream, block);
        let way = self.sets[set].ways.iter().position(|slot| {
            slot.generation == self.generation && slot.block == block && slot.stream == stream
        })?;
        Some((set, way))
    }

    /// Fills a slot for `(stream, block)` with `len` bytes written by `fill`, replacing the
    /// set's less recently used block. If `fill` fails the slot stays empty.
    ///
    /// # Errors
    /// Whatever `fill` returns.
    pub fn insert_with<E>(
        &mut self,
        stream: i64,
        block: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<&[u8], E> {
        assert!(
            len <= self.block_bytes,
            "block longer than the cache's blocks"
        );
        if self.sets.is_empty() {
            self.sets = vec![Set::default(); self.set_count];
            self.recent = vec![0; self.set_count];
            self.arena = vec![0u8; self.set_count * 2 * self.block_bytes];
        }
        let set = self.set_of(stream, block);
        let ways = &mut self.sets[set].ways;
        let way = match ways
            .iter()
            .position(|slot| slot.generation != self.generation)
        {
            Some(empty) => empty,
            None => 1 - usize::from(self.recent[set]),
        };
        ways[way].generation = 0;
        let start = (set * 2 + way) * self.block_bytes;
        fill(&mut self.arena[start..start + len])?;
        self.sets[set].ways[way] = Slot {
            stream,
            block,
            len: u32::try_from(len).expect("block length fits u32"),
            generation: self.generation,
        };
        self.recent[set] = way as u8;
        Ok(&self.arena[start..start + len])
    }

    /// Forgets every block (the memory stays, for reuse).
    pub fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 clears, stale tags could match again: wipe them once.
            self.sets.fill(Set::default());
            self.generation = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BlockCache;

    fn filled(byte: u8) -> impl FnOnce(&mut [u8]) -> Result<(), ()> {
        move |out| {
            out.fill(byte);
            Ok(())
        }
    }

    #[test]
    fn hits_misses_replacement_and_clear() {
        let mut cache = BlockCache::new(16, 16 * 8); // 4 sets of 2
        assert!(cache.get(1, 0).is_none());
        cache.insert_with(1, 0, 16, filled(7)).unwrap();
        cache.insert_with(1, 1, 5, filled(8)).unwrap();
        assert_eq!(cache.get(1, 0), Some(&[7u8; 16][..]));
        assert_eq!(
            cache.get(1, 1),
            Some(&[8u8; 5][..]),
            "short tail blocks keep their length"
        );
        assert!(cache.get(2, 0).is_none(), "streams are told apart");
        // Blocks 0, 4 and 8 of stream 1 share a set: the least recently used one goes.
        cache.insert_with(1, 4, 16, filled(9)).unwrap();
        assert!(cache.get(1, 0).is_some());
        cache.insert_with(1, 8, 16, filled(10)).unwrap();
        assert!(cache.contains(1, 0) && cache.contains(1, 8) && !cache.contains(1, 4));
        cache.clear();
        assert!(!cache.contains(1, 0) && cache.get(1, 8).is_none());
        assert_eq!(
            cache.insert_with(1, 0, 3, filled(1)).unwrap(),
            &[1u8; 3][..]
        );
    }

    #[test]
    fn a_failed_fill_leaves_nothing() {
        let mut cache = BlockCache::new(16, 64);
        cache.insert_with(3, 1, 16, filled(1)).unwrap();
        let failed: Result<&[u8], &str> = cache.insert_with(3, 0, 16, |_| Err("io"));
        assert!(failed.is_err());
        assert!(cache.get(3, 0).is_none());
        assert_eq!(cache.get(3, 1), Some(&[1u8; 16][..]), "other blocks stay");
    }
}
