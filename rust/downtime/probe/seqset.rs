//! Which probes were answered: one bit each, so a duplicate is told apart
//! from a first reply at any rate.

/// Which sequence numbers have been answered.
#[derive(Default)]
pub(super) struct SeqSet(Vec<u64>);

impl SeqSet {
    /// Marks `seq`; false if it was already marked.
    pub(super) fn insert(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let had = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        !had
    }
}
