//! Pauses of the guest (or the process) as the dirtying threads saw them,
//! merged into one event per stop.

use std::time::{Duration, Instant};

use crate::mem::data::DirtyPause;
use crate::mem::worker::WorkerStats;
use crate::run::lock;

/// A pause is reported once no thread can still add to it: this long after
/// it ended.
pub(crate) const PAUSE_SETTLE: Duration = Duration::from_millis(50);

/// Turns the threads' pause reports into events: reports of different
/// threads about the same stop (overlapping in time) are one event.
pub(crate) struct Pauses {
    start: Instant,
    /// (began, ended, longest report, threads), not reported yet.
    pending: Vec<(Instant, Instant, Duration, Vec<u64>)>,
    pub(crate) events: Vec<DirtyPause>,
}

impl Pauses {
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            pending: Vec::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn collect(&mut self, stats: &[WorkerStats]) {
        for (i, st) in stats.iter().enumerate() {
            for (end, len) in std::mem::take(&mut *lock(&st.pauses)) {
                let begin = end - len;
                let thread = i as u64;
                match self.pending.iter_mut().find(|p| begin <= p.1 && end >= p.0) {
                    Some(p) => {
                        p.0 = p.0.min(begin);
                        p.1 = p.1.max(end);
                        p.2 = p.2.max(len);
                        if !p.3.contains(&thread) {
                            p.3.push(thread);
                        }
                    }
                    None => self.pending.push((begin, end, len, vec![thread])),
                }
            }
        }
    }

    /// The pauses that ended before `settled` (all with None), as events.
    pub(crate) fn settle(&mut self, settled: Option<Instant>) -> Vec<DirtyPause> {
        self.pending.sort_by_key(|p| p.0);
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| settled.is_none_or(|s| p.1 < s));
        self.pending = keep;
        let mut out = Vec::new();
        for (begin, _, len, mut threads) in done {
            threads.sort_unstable();
            let ev = DirtyPause {
                index: self.events.len() as u64,
                start_unix_s: crate::pace::unix_of(begin),
                start_offset_s: (begin - self.start).as_secs_f64(),
                length_ms: len.as_secs_f64() * 1000.0,
                threads,
            };
            self.events.push(ev.clone());
            out.push(ev);
        }
        out
    }
}
