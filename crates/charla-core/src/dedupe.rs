//! Recognising a message seen before by its id, in a bounded window: at-least-once delivery
//! means a redelivered (or resent) message can arrive twice, and every reader that shows
//! messages to people drops the second copy.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` ids seen. Memory stays bounded whatever arrives: the oldest id is
/// forgotten when a new one comes in over the capacity.
#[derive(Debug)]
pub struct IdWindow {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl IdWindow {
    pub fn new(capacity: usize) -> Self {
        IdWindow {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time `id` is seen within the window (and remembers it).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Whether `id` is in the window, without remembering it.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::IdWindow;

    #[test]
    fn duplicates_within_the_window_are_caught_and_memory_is_bounded() {
        let mut w = IdWindow::new(2);
        assert!(w.first_time("a"));
        assert!(!w.first_time("a"));
        assert!(w.first_time("b"));
        assert!(w.first_time("c"));
        assert!(!w.contains("a"), "the oldest id was forgotten");
        assert!(w.first_time("a"));
        assert!(w.contains("c"));
    }
}
