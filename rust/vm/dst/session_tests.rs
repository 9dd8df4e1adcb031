//! The session's protocol on bytes in memory.

use super::*;
use std::io::Cursor;
use std::sync::Arc;

/// A writer whose bytes the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn page(i: u64) -> Vec<u8> {
    let mut b = header(MAGIC_SEND_PAGE, i).to_vec();
    b.extend_from_slice(&[0u8; PAGE_SIZE]);
    b
}

fn reader(b: Vec<u8>) -> FrameReader<Cursor<Vec<u8>>> {
    FrameReader::new(Cursor::new(b), 1 << 20)
}

fn requested(sink: &Sink) -> Vec<u64> {
    lock(&sink.0)
        .chunks(HEADER_LEN)
        .map(|c| {
            let (m, p) = parse_header(c);
            assert_eq!(m, MAGIC_REQ_PAGE);
            p
        })
        .collect()
}

#[test]
fn pages_count_and_eof_ends_the_stream() {
    let s = Session::new(0, "x".into(), 16, 0, 0, None);
    let mut b = page(1);
    b.extend(page(2));
    let e = s.run_pages(&mut reader(b), None).unwrap_err();
    assert_eq!(reason(&e), NORMAL_END);
    assert_eq!(
        s.summary("x".into()).bytes,
        2 * (HEADER_LEN + PAGE_SIZE) as u64
    );
}

#[test]
fn handshake_starts_requests_and_the_answer_is_timed() {
    let sink = Sink::default();
    let s = Session::new(0, "x".into(), 1 << 20, 0, 0, Some(Box::new(sink.clone())));
    let calls = AtomicU64::new(0);
    let announce = || {
        calls.fetch_add(1, Ordering::Relaxed);
    };
    // The handshake (twice: announced once), then no answer yet.
    let mut b = header(MAGIC_HANDSHAKE, 0).to_vec();
    b.extend(header(MAGIC_HANDSHAKE, 0));
    let _ = s.run_pages(&mut reader(b), Some(&announce));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let asked = requested(&sink);
    assert_eq!(asked.len(), 1);
    // The source answers with the requested page: timed, next asked.
    let _ = s.run_pages(&mut reader(page(asked[0])), Some(&announce));
    assert_eq!(requested(&sink).len(), 2);
    assert_eq!(s.sample().latency.count, 1);
    // A page that was not asked for is not an answer.
    let other = (asked[0] + 1) % (1 << 20);
    let _ = s.run_pages(&mut reader(page(other)), None);
    assert_eq!(s.summary("x".into()).latency.count, 1);
}

#[test]
fn bad_frames_end_the_session_with_a_reason() {
    let s = Session::new(0, "x".into(), 16, 0, 0, None);
    let e = s.run_pages(&mut reader(page(16)), None).unwrap_err();
    assert_eq!(reason(&e), "page index overflow: 0x10");
    let e = s
        .run_pages(&mut reader(header(0xbad, 0).to_vec()), None)
        .unwrap_err();
    assert_eq!(reason(&e), "magic error: 0xbad");
    // A handshake on a connection that is not main is a bad magic.
    let e = s
        .run_pages(&mut reader(header(MAGIC_HANDSHAKE, 0).to_vec()), None)
        .unwrap_err();
    assert_eq!(reason(&e), "magic error: 0x125");
}

#[test]
fn multifd_packets() {
    let s = Session::new(0, "x".into(), 1000, 0, 0, None);
    let mut b = header(MAGIC_MULTIFD, 2).to_vec();
    b.extend(7u64.to_le_bytes());
    b.extend(8u64.to_le_bytes());
    b.extend(vec![0u8; 2 * PAGE_SIZE]);
    let e = s.run_multifd(&mut reader(b.clone())).unwrap_err();
    assert_eq!(reason(&e), NORMAL_END);
    assert_eq!(
        s.summary(String::new()).bytes,
        (HEADER_LEN + 2 * (8 + PAGE_SIZE)) as u64
    );
    let mut over = header(MAGIC_MULTIFD, 1).to_vec();
    over.extend(1000u64.to_le_bytes());
    over.extend(vec![0u8; PAGE_SIZE]);
    assert_eq!(
        reason(&s.run_multifd(&mut reader(over)).unwrap_err()),
        "page index overflow: 0x3e8"
    );
    let zero = header(MAGIC_MULTIFD, 0).to_vec();
    assert_eq!(
        reason(&s.run_multifd(&mut reader(zero)).unwrap_err()),
        "bad multifd page count 0"
    );
    let big = header(MAGIC_MULTIFD, 129).to_vec();
    assert_eq!(
        reason(&s.run_multifd(&mut reader(big)).unwrap_err()),
        "bad multifd page count 129"
    );
}

#[test]
fn preempt_moves_requests_unless_kept_on_main() {
    let main = Sink::default();
    let pre = Sink::default();
    let s = Session::new(
        0,
        "x".into(),
        1 << 20,
        FLAG_PREEMPT,
        0,
        Some(Box::new(main.clone())),
    );
    s.set_preempt(Some(Box::new(pre.clone())));
    let _ = s.run_pages(
        &mut reader(header(MAGIC_HANDSHAKE, 0).to_vec()),
        Some(&|| {}),
    );
    assert_eq!(requested(&main).len(), 0);
    assert_eq!(requested(&pre).len(), 1);
    let main = Sink::default();
    let s = Session::new(
        1,
        "x".into(),
        1 << 20,
        FLAG_PREEMPT | FLAG_REQUESTS_ON_MAIN,
        0,
        Some(Box::new(main.clone())),
    );
    s.set_preempt(Some(Box::new(Sink::default())));
    let _ = s.run_pages(
        &mut reader(header(MAGIC_HANDSHAKE, 0).to_vec()),
        Some(&|| {}),
    );
    assert_eq!(requested(&main).len(), 1);
}
