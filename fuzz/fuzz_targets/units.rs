//! What a user types for a size, a rate or a time: a value or an error,
//! never a panic or an overflow; a size that parses is positive and fits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migmon::units;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mb) = units::parse_size_mb(text) {
            assert!(mb > 0);
            assert!(mb.checked_mul(units::MB).is_some());
        }
    }
    if data.len() >= 8 {
        let v = f64::from_le_bytes(data[..8].try_into().unwrap());
        if let Ok(d) = units::seconds("fuzz", v) {
            assert!(v > 0.0 && d.as_secs_f64() <= units::MAX_SECONDS + 1.0);
        }
        let _ = units::millis("fuzz", v);
        let _ = units::num(v);
    }
});
