//! Data parallelism over both cores for the O(candidates) scans and the
//! proof checks. Results are combined in input order, so they never depend
//! on the number of threads.

/// `f(offset, chunk)` over at most `available_parallelism` (≤ 8) chunks of at
/// least `min_chunk` items each, results in chunk order.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunks = (items.len() / min_chunk.max(1)).clamp(1, threads);
    if chunks == 1 {
        return vec![f(0, items)];
    }
    let size = items.len().div_ceil(chunks);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> =
            items.chunks(size).enumerate().skip(1).map(|(i, c)| s.spawn(move || f(i * size, c))).collect();
        let mut out = Vec::with_capacity(chunks);
        out.push(f(0, &items[..size]));
        for h in handles {
            out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_cover_the_input_in_order() {
        let v: Vec<u32> = (0..10_000).collect();
        for min in [1, 7, 1000, 20_000] {
            let parts = super::map_chunks(&v, min, |off, c| (off, c.to_vec()));
            let mut joined = Vec::new();
            for (off, c) in parts {
                assert_eq!(off, joined.len());
                joined.extend(c);
            }
            assert_eq!(joined, v);
        }
        assert_eq!(super::map_chunks(&[] as &[u8], 4, |_, c| c.len()), vec![0]);
    }
}
