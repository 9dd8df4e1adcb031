//! Any datagram a client or server receives: a probe is recognised only by
//! its magic and length, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migmon::downtime::wire::{Probe, PROBE_LEN};

fuzz_target!(|data: &[u8]| {
    if let Some(p) = Probe::decode(data) {
        assert!(data.len() >= PROBE_LEN);
        let again = Probe::decode(&p.encode()).expect("our own encoding decodes");
        assert_eq!(again, p);
    }
});
