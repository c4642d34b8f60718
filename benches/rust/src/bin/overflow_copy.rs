//! What copying a 100 KB value costs as SQLite stores it, against one contiguous copy.
//!
//! A value larger than a page lives in a chain of overflow pages: each 4 KiB page holds the
//! next page's number in its first 4 bytes and 4,092 bytes of the value after them, so a read
//! copies 25 pieces of 4,092 bytes, each starting 4 bytes into a page. lmdb (and a plain file)
//! copy the same 100 KB in one piece. This program copies 10,000 such values at random from a
//! 1 GiB buffer both ways and prints the time per value, so the bound on 100 KB gets in
//! `docs/performance.md` can be measured again:
//!
//! ```text
//! cargo run --release -p ambervault-bench --bin overflow_copy
//! ```

use std::hint::black_box;
use std::time::Instant;

const PAGE: usize = 4096;
const PAGES_PER_VALUE: usize = 25;
const PAYLOAD_PER_PAGE: usize = PAGE - 4;
const VALUES: usize = 10_000;
// One spare page between values, as the chunk's B-tree pages sit between chains in a file.
const STRIDE: usize = (PAGES_PER_VALUE + 1) * PAGE;
const PASSES: usize = 5;

fn main() {
    let buffer: Vec<u8> = (0..VALUES * STRIDE).map(|i| (i * 7 + 1) as u8).collect();
    let mut order: Vec<usize> = (0..VALUES).collect();
    shuffle(&mut order, 7);
    let mut out = vec![0u8; PAGES_PER_VALUE * PAYLOAD_PER_PAGE];
    let mut per_value = |times: &mut Vec<f64>, copy: &dyn Fn(&[u8], &mut [u8])| {
        let start = Instant::now();
        for &value in &order {
            let from = &buffer[value * STRIDE..(value + 1) * STRIDE];
            copy(from, &mut out);
            black_box(&mut out);
        }
        times.push(start.elapsed().as_secs_f64() * 1e6 / VALUES as f64);
    };
    let (mut contiguous, mut chained) = (Vec::new(), Vec::new());
    let whole = |from: &[u8], to: &mut [u8]| to.copy_from_slice(&from[..to.len()]);
    let by_page = |from: &[u8], to: &mut [u8]| {
        for (page, piece) in to.chunks_mut(PAYLOAD_PER_PAGE).enumerate() {
            let at = page * PAGE + 4;
            piece.copy_from_slice(&from[at..at + piece.len()]);
        }
    };
    // Alternated, so both see the same state of the machine.
    for _ in 0..PASSES {
        per_value(&mut contiguous, &whole);
        per_value(&mut chained, &by_page);
    }
    println!(
        "{VALUES} values of {} bytes at random in {} MiB, {PASSES} passes each",
        out.len(),
        buffer.len() >> 20
    );
    println!("one contiguous copy:      {}", summary(&mut contiguous));
    println!("25 x 4,092 from offset 4: {}", summary(&mut chained));
}

/// Median and range of the per-value times, in µs.
fn summary(times: &mut [f64]) -> String {
    times.sort_by(f64::total_cmp);
    format!(
        "median {:.2} µs per value (min {:.2}, max {:.2})",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    )
}

/// Fisher-Yates with a fixed xorshift generator: the same order on every run.
fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
