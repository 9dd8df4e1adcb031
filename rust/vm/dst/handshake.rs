//! The first bytes of a connection to the destination decide what it is:
//! the original protocol's main connection (a page or the postcopy
//! handshake), our extension's main connection (HELLO), an extra
//! connection of an extended session (CHANNEL), or garbage. Pure: it only
//! reads from a [`FrameReader`], so it is tested on bytes in memory.

use std::io::Read;

use crate::vm::frame::FrameReader;
use crate::vm::src::{MAX_CHANNELS, MAX_VM_PAGES};
use crate::vm::wire::*;

/// What a new connection turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The original protocol: nothing consumed, the stream starts here.
    Original,
    /// Our extension's main connection; HELLO consumed.
    Hello(Hello),
    /// An extra connection of session `session`; CHANNEL consumed.
    Channel {
        /// The id the source chose for its session.
        session: u64,
        /// CHANNEL_MULTIFD or CHANNEL_PREEMPT.
        kind: u64,
        /// Which multifd channel (0 for preempt).
        index: u64,
    },
    /// Connected and left before sending a header: nothing to report.
    Gone,
    /// Refused, with the reason.
    Reject(String),
}

/// Reads the opening of a connection.
pub fn read_opening<R: Read>(r: &mut FrameReader<R>) -> Opening {
    let (magic, arg) = match r.peek(HEADER_LEN) {
        Ok(h) => parse_header(h),
        Err(_) => return Opening::Gone,
    };
    match magic {
        MAGIC_SEND_PAGE | MAGIC_HANDSHAKE => Opening::Original,
        MAGIC_HELLO if arg == HELLO_ARG => {
            r.consume(HEADER_LEN);
            let hello = match r.peek(HELLO_LEN) {
                Ok(b) => Hello::decode(b.try_into().expect("HELLO_LEN bytes")),
                Err(e) => return Opening::Reject(format!("incomplete HELLO: {e}")),
            };
            r.consume(HELLO_LEN);
            if hello.version != EXT_VERSION {
                return Opening::Reject(format!("unsupported HELLO {hello:?}"));
            }
            // What a source can announce (its own checks): a guest of 1 GB
            // to 2^34 GB, at most MAX_CHANNELS channels.
            if hello.vm_pages == 0 || hello.vm_pages >= MAX_VM_PAGES {
                return Opening::Reject(format!(
                    "HELLO announced a guest of {} pages (1 GB to 2^34 GB is 2^18 to 2^52)",
                    hello.vm_pages
                ));
            }
            if hello.channels > MAX_CHANNELS {
                return Opening::Reject(format!(
                    "HELLO announced {} multifd channels (at most {MAX_CHANNELS})",
                    hello.channels
                ));
            }
            Opening::Hello(hello)
        }
        MAGIC_CHANNEL => {
            r.consume(HEADER_LEN);
            let (kind, index) = match r.peek(HEADER_LEN) {
                Ok(b) => parse_header(b),
                Err(e) => return Opening::Reject(format!("incomplete CHANNEL: {e}")),
            };
            r.consume(HEADER_LEN);
            if kind != CHANNEL_MULTIFD && kind != CHANNEL_PREEMPT {
                return Opening::Reject(format!("unknown channel kind {kind}"));
            }
            Opening::Channel {
                session: arg,
                kind,
                index,
            }
        }
        other => Opening::Reject(format!("magic error: {other:#x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn open(bytes: Vec<u8>) -> (Opening, Vec<u8>) {
        let mut r = FrameReader::new(Cursor::new(bytes), 4096 + HEADER_LEN);
        let o = read_opening(&mut r);
        let mut rest = Vec::new();
        while let Ok(b) = r.peek(1) {
            rest.push(b[0]);
            r.consume(1);
        }
        (o, rest)
    }

    fn hello() -> Hello {
        Hello {
            version: EXT_VERSION,
            flags: FLAG_PREEMPT,
            channels: 2,
            session: 77,
            vm_pages: 1 << 18,
        }
    }

    #[test]
    fn original_stream_is_left_untouched() {
        let mut b = header(MAGIC_SEND_PAGE, 5).to_vec();
        b.extend_from_slice(&[0u8; PAGE_SIZE]);
        let (o, rest) = open(b.clone());
        assert_eq!(o, Opening::Original);
        assert_eq!(rest, b);
        assert_eq!(
            open(header(MAGIC_HANDSHAKE, 0).to_vec()).0,
            Opening::Original
        );
    }

    #[test]
    fn hello_is_consumed_and_checked() {
        let mut b = header(MAGIC_HELLO, HELLO_ARG).to_vec();
        b.extend_from_slice(&hello().encode());
        b.extend_from_slice(&header(MAGIC_HANDSHAKE, 0));
        let (o, rest) = open(b);
        assert_eq!(o, Opening::Hello(hello()));
        assert_eq!(rest, header(MAGIC_HANDSHAKE, 0));
        let mut bad = header(MAGIC_HELLO, HELLO_ARG).to_vec();
        bad.extend_from_slice(
            &Hello {
                version: 9,
                ..hello()
            }
            .encode(),
        );
        assert!(matches!(open(bad).0, Opening::Reject(r) if r.contains("unsupported")));
        for (bad, what) in [
            (
                Hello {
                    vm_pages: u64::MAX,
                    ..hello()
                },
                "pages",
            ),
            (
                Hello {
                    vm_pages: 0,
                    ..hello()
                },
                "pages",
            ),
            (
                Hello {
                    channels: 65,
                    ..hello()
                },
                "at most 64",
            ),
        ] {
            let mut b = header(MAGIC_HELLO, HELLO_ARG).to_vec();
            b.extend_from_slice(&bad.encode());
            assert!(
                matches!(open(b).0, Opening::Reject(r) if r.contains(what)),
                "{bad:?}"
            );
        }
        let short = header(MAGIC_HELLO, HELLO_ARG).to_vec();
        assert!(matches!(open(short).0, Opening::Reject(r) if r.contains("incomplete HELLO")));
        // A stray 0x126 without the "mm" argument is just a bad magic.
        assert!(
            matches!(open(header(MAGIC_HELLO, 1).to_vec()).0, Opening::Reject(r) if r.contains("magic error"))
        );
    }

    #[test]
    fn channels_name_their_session() {
        let mut b = header(MAGIC_CHANNEL, 77).to_vec();
        b.extend_from_slice(&header(CHANNEL_MULTIFD, 3));
        assert_eq!(
            open(b).0,
            Opening::Channel {
                session: 77,
                kind: CHANNEL_MULTIFD,
                index: 3
            }
        );
        let mut b = header(MAGIC_CHANNEL, 77).to_vec();
        b.extend_from_slice(&header(9, 0));
        assert!(matches!(open(b).0, Opening::Reject(r) if r.contains("unknown channel kind 9")));
    }

    #[test]
    fn garbage_and_silence() {
        assert_eq!(open(Vec::new()).0, Opening::Gone);
        assert_eq!(open(vec![1, 2, 3]).0, Opening::Gone);
        assert!(
            matches!(open(header(0xdead, 0).to_vec()).0, Opening::Reject(r) if r == "magic error: 0xdead")
        );
    }
}
