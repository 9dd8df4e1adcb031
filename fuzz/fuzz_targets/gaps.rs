//! Arrival times as a peer's timing makes them (any gaps, bursts, a clock
//! that never moves): the detector's figures stay ordered, never overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migmon::downtime::gap::{Arrival, GapDetector};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let fixed = (data[0] & 1 == 1).then(|| u64::from(data[1]) * 1_000_000 + 1);
    let mut g = if data[0] & 2 == 2 {
        GapDetector::new(fixed, u64::from(data[2]) * 100_000)
    } else {
        GapDetector::for_unknown_interval(fixed, 1_000_000)
    };
    let mut now: u64 = 0;
    for chunk in data[8..].chunks(4) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        now = now.saturating_add(u64::from(u32::from_le_bytes(b)) * 16);
        match g.arrive(now) {
            Arrival::Spike { gap_ns, since_ns } => {
                assert!(since_ns <= now && gap_ns == now - since_ns);
                assert!(gap_ns >= g.threshold_ns().unwrap_or(0) || g.threshold_ns().is_none());
            }
            Arrival::Baseline { threshold_ns, .. } => assert!(threshold_ns >= 1),
            _ => {}
        }
    }
});
