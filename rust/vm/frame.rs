//! Buffered reading of fixed-size messages from a TCP stream: ask for `n`
//! bytes, look at them, consume them; skip payloads without copying them out.

use std::io::{self, Read};

/// A read buffer over a stream.
pub struct FrameReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader with a `cap`-byte buffer (at least the largest message).
    pub fn new(inner: R, cap: usize) -> Self {
        Self {
            inner,
            buf: vec![0u8; cap].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The same, but a buffer the machine cannot give is an error to
    /// report (a connection refused), not an abort of the process.
    pub fn try_new(inner: R, cap: usize) -> io::Result<Self> {
        let mut v = Vec::new();
        v.try_reserve_exact(cap).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "no memory for a read buffer")
        })?;
        v.resize(cap, 0u8);
        Ok(Self {
            inner,
            buf: v.into_boxed_slice(),
            start: 0,
            end: 0,
        })
    }

    /// The next `n` bytes (n <= capacity), reading as needed; EOF before
    /// them is an `UnexpectedEof` error.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        debug_assert!(n <= self.buf.len());
        while self.end - self.start < n {
            if self.start > 0 && self.buf.len() - self.start < n {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let got = self.inner.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.end += got;
        }
        Ok(&self.buf[self.start..self.start + n])
    }

    /// Consumes `n` bytes already peeked.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.end - self.start >= n);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads and discards `n` bytes (a payload nobody looks at).
    pub fn skip(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = self.inner.read(&mut self.buf)?;
                if self.end == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
            }
            let take = n.min(self.end - self.start);
            self.consume(take);
            n -= take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes per read.
    struct Dribble(Vec<u8>, usize);
    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(3).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn peeks_consumes_and_skips_across_short_reads() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = FrameReader::new(Dribble(data, 0), 16);
        assert_eq!(r.peek(10).unwrap(), &(0..10u8).collect::<Vec<_>>()[..]);
        r.consume(10);
        r.skip(50).unwrap();
        assert_eq!(r.peek(16).unwrap()[0], 60);
        r.consume(16);
        r.skip(24).unwrap();
        assert_eq!(r.peek(1).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
