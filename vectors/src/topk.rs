//! A bounded max-heap keeping the `k` nearest (smallest distance) of what it is offered.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result: an item id and its distance to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The item's id.
    pub id: i64,
    /// Its distance to the query (smaller is nearer).
    pub distance: f32,
}

impl Eq for Hit {}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        // Ties are broken by id so results are deterministic.
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` smallest hits offered so far.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    /// An empty selection of at most `k` hits.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// Offers one hit.
    #[inline]
    pub fn offer(&mut self, id: i64, distance: f32) {
        if self.k == 0 {
            return;
        }
        let hit = Hit { id, distance };
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if hit < *worst {
                *worst = hit;
            }
        }
    }

    /// Adds every hit of another selection.
    pub fn merge(&mut self, other: TopK) {
        for hit in other.heap {
            self.offer(hit.id, hit.distance);
        }
    }

    /// The hits, nearest first.
    #[must_use]
    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_in_order_with_ties_by_id() {
        let mut top = TopK::new(3);
        for (id, d) in [(1, 5.0), (2, 1.0), (3, 3.0), (4, 1.0), (5, 9.0), (6, 0.5)] {
            top.offer(id, d);
        }
        let got: Vec<(i64, f32)> = top
            .into_sorted()
            .iter()
            .map(|h| (h.id, h.distance))
            .collect();
        assert_eq!(got, vec![(6, 0.5), (2, 1.0), (4, 1.0)]);
        let mut none = TopK::new(0);
        none.offer(1, 0.0);
        assert!(none.into_sorted().is_empty());
    }
}
