//! Benches of the core's hot paths other than the dirty loop (`dirty.rs`),
//! each beside a peer it can be read against, in the same run:
//!
//! - `frames`: the vm stream's SEND_PAGE frames (16-byte header and a 4 KiB
//!   page) encoded into a buffer and decoded with the destination's
//!   `FrameReader`, in bytes per second, against a bare `memcpy` of the same
//!   bytes (the floor any encoder or decoder pays).
//! - `page_request`: one postcopy page request and its answer over a Unix
//!   socketpair (the request header out, the header and page back), against
//!   the same bytes moved with bare `write_all`/`read_exact`: the wire's own
//!   cost on top of the kernel's.
//! - `histogram`: recording 1000 latencies and reading the percentiles,
//!   against pushing the same values to a `Vec` (recording) and sorting it
//!   (reading).
//! - `probe`: a probe encoded and decoded, against a bare 24-byte copy; and
//!   the echo turnaround on loopback UDP (probe out, echoed, back in) with
//!   our encoding against a bare datagram of the same size.
//! - `pacer`: one pace step's bookkeeping (`Pacer::advance`), against the
//!   `Instant::now()` every step reads anyway.
//!
//! `cargo bench --bench core` (add `-- --quick` for a short run). Compare
//! the ratios to the peers, not absolute figures: the machine is shared.

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use migmon::downtime::wire::{Probe, PROBE_LEN};
use migmon::pace::Pacer;
use migmon::stats::LatencyHistogram;
use migmon::vm::frame::FrameReader;
use migmon::vm::wire::{
    header, parse_header, HEADER_LEN, MAGIC_REQ_PAGE, MAGIC_SEND_PAGE, PAGE_SIZE,
};

const FRAMES: usize = 256;
const FRAME_LEN: usize = HEADER_LEN + PAGE_SIZE;

fn frames(c: &mut Criterion) {
    let page = vec![0x5au8; PAGE_SIZE];
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes((FRAMES * FRAME_LEN) as u64));
    let mut out = vec![0u8; FRAMES * FRAME_LEN];
    g.bench_function("encode", |b| {
        b.iter(|| {
            for (i, f) in out.chunks_exact_mut(FRAME_LEN).enumerate() {
                f[..HEADER_LEN].copy_from_slice(&header(MAGIC_SEND_PAGE, i as u64));
                f[HEADER_LEN..].copy_from_slice(black_box(&page));
            }
            black_box(&out);
        })
    });
    let stream = out.clone();
    g.bench_function("decode", |b| {
        let mut sink = vec![0u8; PAGE_SIZE];
        b.iter(|| {
            let mut r = FrameReader::new(Cursor::new(black_box(&stream[..])), 1 << 20);
            for _ in 0..FRAMES {
                let (magic, _) = parse_header(r.peek(HEADER_LEN).expect("header"));
                assert_eq!(magic, MAGIC_SEND_PAGE);
                r.consume(HEADER_LEN);
                sink.copy_from_slice(r.peek(PAGE_SIZE).expect("page"));
                r.consume(PAGE_SIZE);
            }
            black_box(&sink);
        })
    });
    g.bench_function("peer_memcpy", |b| {
        let mut dst = vec![0u8; FRAMES * FRAME_LEN];
        b.iter(|| {
            dst.copy_from_slice(black_box(&stream));
            black_box(&dst);
        })
    });
    g.finish();
}

/// A destination that answers each request header with a SEND_PAGE frame
/// (ours) or each 16-byte message with 16 bytes (the peer).
fn answerer(mut s: UnixStream, page_too: bool) -> std::thread::JoinHandle<()> {
    // (page_too false: echo the 16 bytes back.)
    std::thread::spawn(move || {
        let mut req = [0u8; HEADER_LEN];
        let mut frame = vec![0x5au8; FRAME_LEN];
        while s.read_exact(&mut req).is_ok() {
            if page_too {
                let (_, addr) = parse_header(&req);
                frame[..HEADER_LEN].copy_from_slice(&header(MAGIC_SEND_PAGE, addr));
                if s.write_all(&frame).is_err() {
                    break;
                }
            } else if s.write_all(&req).is_err() {
                break;
            }
        }
    })
}

fn page_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("page_request");
    let (mut a, b_end) = UnixStream::pair().expect("socketpair");
    let t = answerer(b_end, true);
    let mut reader = FrameReader::new(a.try_clone().expect("clone"), 1 << 20);
    let mut addr = 0u64;
    g.bench_function("round_trip", |bch| {
        bch.iter(|| {
            addr = addr.wrapping_add(PAGE_SIZE as u64);
            a.write_all(&header(MAGIC_REQ_PAGE, addr)).expect("request");
            let (magic, got) = parse_header(reader.peek(HEADER_LEN).expect("answer"));
            assert_eq!((magic, got), (MAGIC_SEND_PAGE, addr));
            reader.consume(HEADER_LEN);
            reader.skip(PAGE_SIZE).expect("page");
        })
    });
    drop(reader);
    drop(a);
    t.join().expect("answerer");
    let (mut a, b_end) = UnixStream::pair().expect("socketpair");
    let t = answerer(b_end, true);
    g.bench_function("peer_bare_read_write", |bch| {
        let mut buf = vec![0u8; FRAME_LEN];
        bch.iter(|| {
            a.write_all(&[1u8; HEADER_LEN]).expect("write");
            a.read_exact(&mut buf).expect("read");
            black_box(&buf);
        })
    });
    drop(a);
    t.join().expect("answerer");
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let values: Vec<u64> = (0..1000u64).map(|i| 1000 + (i * 7919) % 100_000).collect();
    let mut g = c.benchmark_group("histogram");
    g.throughput(Throughput::Elements(values.len() as u64));
    let mut h = LatencyHistogram::new();
    g.bench_function("record_1000", |b| {
        b.iter(|| {
            for &v in &values {
                h.record(black_box(v));
            }
        })
    });
    g.bench_function("peer_vec_push_1000", |b| {
        let mut v = Vec::with_capacity(1 << 20);
        b.iter(|| {
            if v.len() > (1 << 19) {
                v.clear();
            }
            for &x in &values {
                v.push(black_box(x));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("percentiles", |b| b.iter(|| black_box(h.percentiles())));
    g.bench_function("peer_sort_1000", |b| {
        b.iter(|| {
            let mut v = values.clone();
            v.sort_unstable();
            black_box(v[990])
        })
    });
    g.finish();
}

fn probe(c: &mut Criterion) {
    let mut g = c.benchmark_group("probe");
    let mut seq = 0u64;
    g.bench_function("encode_decode", |b| {
        b.iter(|| {
            seq += 1;
            let bytes = Probe {
                seq,
                sent_ns: seq * 3,
            }
            .encode();
            black_box(Probe::decode(black_box(&bytes)).expect("ours"))
        })
    });
    let src = [7u8; PROBE_LEN];
    g.bench_function("peer_copy_24_bytes", |b| {
        b.iter(|| {
            let mut d = [0u8; PROBE_LEN];
            d.copy_from_slice(black_box(&src));
            black_box(d)
        })
    });
    // The echo turnaround on loopback: an echo thread sends back what it
    // gets; ours encodes and decodes a probe each way, the peer does not.
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    echo.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            if n == 1 {
                break;
            }
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(echo_addr).expect("connect");
    g.bench_function("echo_turnaround", |b| {
        let mut buf = [0u8; 64];
        b.iter(|| {
            seq += 1;
            sock.send(&Probe { seq, sent_ns: 0 }.encode())
                .expect("send");
            let n = sock.recv(&mut buf).expect("recv");
            assert_eq!(Probe::decode(&buf[..n]).expect("ours").seq, seq);
        })
    });
    g.bench_function("peer_echo_bare", |b| {
        let mut buf = [0u8; 64];
        b.iter(|| {
            sock.send(&src).expect("send");
            black_box(sock.recv(&mut buf).expect("recv"));
        })
    });
    let _ = sock.send(&[0u8]);
    t.join().expect("echo");
    g.finish();
}

fn pacer(c: &mut Criterion) {
    let mut g = c.benchmark_group("pacer");
    let start = Instant::now();
    let mut p = Pacer::new(1e12, start, Duration::from_millis(50));
    g.bench_function("advance", |b| {
        b.iter(|| black_box(p.advance(black_box(1), Instant::now())))
    });
    g.bench_function("peer_instant_now", |b| b.iter(|| black_box(Instant::now())));
    g.finish();
}

criterion_group!(benches, frames, page_request, histogram, probe, pacer);
criterion_main!(benches);
