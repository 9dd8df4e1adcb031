//! The probe datagram. The original sends 4 bytes ("echo") and its echo
//! server returns any datagram unchanged, so ours carry what a measurement
//! needs and still work with it:
//!
//! ```text
//! offset size  field
//!      0    4  magic  "MGMP" (0x4d 0x47 0x4d 0x50)
//!      4    2  version, 1 (little-endian)
//!      6    2  flags, 0
//!      8    8  sequence number, from 0 (little-endian)
//!     16    8  sender's monotonic send time in ns (little-endian)
//! ```
//!
//! Anything else that arrives (the original's 4 bytes, garbage) is not a
//! probe; servers still echo or count it.

/// Magic at the start of every probe.
pub const PROBE_MAGIC: [u8; 4] = *b"MGMP";
/// Current probe version.
pub const PROBE_VERSION: u16 = 1;
/// Bytes in a probe.
pub const PROBE_LEN: usize = 24;

/// A decoded probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Sequence number, from 0.
    pub seq: u64,
    /// The sender's monotonic clock at sending, ns.
    pub sent_ns: u64,
}

impl Probe {
    /// The probe's bytes.
    pub fn encode(&self) -> [u8; PROBE_LEN] {
        let mut b = [0u8; PROBE_LEN];
        b[0..4].copy_from_slice(&PROBE_MAGIC);
        b[4..6].copy_from_slice(&PROBE_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_le_bytes());
        b
    }

    /// Decodes a datagram; None if it is not one of our probes.
    pub fn decode(buf: &[u8]) -> Option<Probe> {
        if buf.len() < PROBE_LEN || buf[0..4] != PROBE_MAGIC {
            return None;
        }
        if u16::from_le_bytes([buf[4], buf[5]]) != PROBE_VERSION {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        Some(Probe {
            seq: word(8),
            sent_ns: word(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_as_documented() {
        let b = Probe {
            seq: 0x0102,
            sent_ns: 0x0a0b,
        }
        .encode();
        assert_eq!(&b[0..4], b"MGMP");
        assert_eq!(&b[4..8], &[1, 0, 0, 0]);
        assert_eq!(&b[8..10], &[2, 1]);
        assert_eq!(&b[16..18], &[0x0b, 0x0a]);
    }

    #[test]
    fn foreign_datagrams_are_not_probes() {
        assert_eq!(Probe::decode(b"echo"), None);
        assert_eq!(Probe::decode(b""), None);
        let mut b = Probe { seq: 1, sent_ns: 2 }.encode();
        b[4] = 9;
        assert_eq!(Probe::decode(&b), None);
    }

    proptest! {
        #[test]
        fn roundtrip(seq: u64, sent_ns: u64) {
            let p = Probe { seq, sent_ns };
            prop_assert_eq!(Probe::decode(&p.encode()), Some(p));
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Probe::decode(&buf);
        }
    }
}
