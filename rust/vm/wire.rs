//! The `vm` wire format: the original's messages, byte for byte, and our
//! extension for multifd and postcopy-preempt (documented in PROTOCOL.md).
//!
//! Every message starts with a 16-byte header of two little-endian u64s,
//! `magic` and `arg` (the original calls the second `page_index`):
//!
//! | magic | name        | direction | arg        | then                        |
//! |-------|-------------|-----------|------------|-----------------------------|
//! | 0x123 | SEND_PAGE   | src → dst | page index | 4096 bytes of page          |
//! | 0x124 | REQ_PAGE    | dst → src | page index | nothing                     |
//! | 0x125 | HANDSHAKE   | src → dst | unused (0) | nothing: start postcopy     |
//! | 0x126 | HELLO       | src → dst | 0x6d6d     | 32-byte [`Hello`]           |
//! | 0x127 | HELLO_ACK   | dst → src | 0x6d6d     | nothing                     |
//! | 0x128 | CHANNEL     | src → dst | session id | 16 bytes: kind, index       |
//! | 0x129 | MULTIFD     | src → dst | page count | count u64 indices, pages    |
//!
//! An original destination answers HELLO by closing the connection ("magic
//! error"), which our source turns into a clear message instead of a hang.

/// Bytes in a header.
pub const HEADER_LEN: usize = 16;
/// Bytes in a guest page.
pub const PAGE_SIZE: usize = 4096;
/// Pages in one multifd packet, as QEMU (512 KiB).
pub const MULTIFD_PAGES: usize = 128;

/// A page from the source (the original's message).
pub const MAGIC_SEND_PAGE: u64 = 0x123;
/// A page request from the destination (the original's message).
pub const MAGIC_REQ_PAGE: u64 = 0x124;
/// Turns postcopy on at the destination (the original's message).
pub const MAGIC_HANDSHAKE: u64 = 0x125;
/// Extension: the source announces a session with extra channels.
pub const MAGIC_HELLO: u64 = 0x126;
/// Extension: the destination accepts the session.
pub const MAGIC_HELLO_ACK: u64 = 0x127;
/// Extension: first message of an extra connection, naming its session.
pub const MAGIC_CHANNEL: u64 = 0x128;
/// Extension: a multifd packet of up to 128 pages.
pub const MAGIC_MULTIFD: u64 = 0x129;

/// `arg` of HELLO and HELLO_ACK ("mm"), so a stray 0x126 is not taken for one.
pub const HELLO_ARG: u64 = 0x6d6d;
/// Version of the extension.
pub const EXT_VERSION: u32 = 1;
/// HELLO flag: precopy pages go over `channels` multifd connections.
pub const FLAG_MULTIFD: u32 = 1;
/// HELLO flag: requested pages come back over a preempt connection.
pub const FLAG_PREEMPT: u32 = 2;
/// HELLO flag (with FLAG_PREEMPT): page requests stay on the main
/// connection's return path, as QEMU sends them; without it they move to
/// the preempt connection with the pages.
pub const FLAG_REQUESTS_ON_MAIN: u32 = 4;
/// CHANNEL kind: a multifd connection.
pub const CHANNEL_MULTIFD: u64 = 1;
/// CHANNEL kind: the postcopy-preempt connection.
pub const CHANNEL_PREEMPT: u64 = 2;

/// Encodes a header.
pub fn header(magic: u64, arg: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(&magic.to_le_bytes());
    b[8..].copy_from_slice(&arg.to_le_bytes());
    b
}

/// Decodes a header: (magic, arg).
pub fn parse_header(b: &[u8]) -> (u64, u64) {
    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    (w(0), w(8))
}

/// HELLO's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Extension version.
    pub version: u32,
    /// FLAG_* bits.
    pub flags: u32,
    /// Multifd connections that will follow.
    pub channels: u32,
    /// Identifies the session on its extra connections.
    pub session: u64,
    /// Guest size in pages (the destination checks indices against it).
    pub vm_pages: u64,
}

/// Bytes in HELLO's payload.
pub const HELLO_LEN: usize = 32;

impl Hello {
    /// Encodes the payload (little-endian; 4 reserved bytes).
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.channels.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.vm_pages.to_le_bytes());
        b
    }

    /// Decodes the payload.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Self {
        let w4 = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let w8 = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Self {
            version: w4(0),
            flags: w4(4),
            channels: w4(8),
            session: w8(16),
            vm_pages: w8(24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_is_two_little_endian_words() {
        assert_eq!(
            header(MAGIC_SEND_PAGE, 5),
            [0x23, 1, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(parse_header(&header(MAGIC_REQ_PAGE, 7)), (0x124, 7));
    }

    proptest! {
        #[test]
        fn hello_roundtrip(version: u32, flags: u32, channels: u32, session: u64, vm_pages: u64) {
            let h = Hello { version, flags, channels, session, vm_pages };
            prop_assert_eq!(Hello::decode(&h.encode()), h);
        }

        #[test]
        fn header_roundtrip(m: u64, a: u64) {
            prop_assert_eq!(parse_header(&header(m, a)), (m, a));
        }
    }
}
