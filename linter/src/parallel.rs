//! Work spread over the machine's cores with results in input order, so output stays
//! deterministic whatever the scheduling.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads a run may use: the cores this process may run on (which honours CPU
/// affinity such as `taskset` and, on Linux, cgroup CPU quotas), capped at `max`.
pub fn threads(max: usize) -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get).clamp(1, max.max(1))
}

/// `f` applied to every item, on up to `threads` threads (the calling one included), results
/// in the order of `items`. Items are handed out one at a time, so a few large ones do not
/// leave a thread idle. One thread, or one item, runs inline without spawning.
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(item)));
        }
        done
    };
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        for helper in helpers {
            match helper.join() {
                Ok(part) => parts.push(part),
                // A panic in `f` is a bug; let it surface as it would have inline.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        parts
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, result) in parts.iter_mut().flat_map(std::mem::take) {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(result);
        }
    }
    slots.into_iter().flatten().collect()
}

/// [`map`] taking the items by value, so each is dropped as soon as `f` is done with it (a
/// large input is never held whole next to what it turns into).
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if threads.min(items.len()) <= 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        items.into_iter().map(|item| std::sync::Mutex::new(Some(item))).collect();
    map(&slots, threads, |slot| {
        // Each slot is taken exactly once (`map` hands every index to one thread).
        let item = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        item.map(&f)
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order_on_any_number_of_threads() {
        let items: Vec<u64> = (0..1000).collect();
        let expected: Vec<u64> = items.iter().map(|i| i * i).collect();
        for threads in [0, 1, 2, 3, 8] {
            // Uneven work, so threads finish items out of order.
            let got = map(&items, threads, |&i| {
                if i % 7 == 0 {
                    std::hint::black_box((0..10_000).sum::<u64>());
                }
                i * i
            });
            assert_eq!(got, expected, "{threads} threads");
        }
    }

    #[test]
    fn owned_items_keep_the_input_order_too() {
        let items: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        let expected: Vec<usize> = items.iter().map(String::len).collect();
        for threads in [1, 2, 5] {
            assert_eq!(map_owned(items.clone(), threads, |s| s.len()), expected, "{threads} threads");
        }
    }

    #[test]
    fn no_items_no_results() {
        assert!(map(&[] as &[u8], 4, |&b| b).is_empty());
    }

    #[test]
    fn threads_are_at_least_one_and_at_most_the_cap() {
        assert_eq!(threads(0), 1);
        assert_eq!(threads(1), 1);
        assert!(threads(64) <= 64);
    }
}
