//! The streams a source writes: precopy on the main connection or on
//! multifd connections, paced to a cap, and the answers to page requests.

use crate::pace::{Pacer, StopFlag};
use crate::run::lock;
use crate::vm::frame::FrameReader;
use crate::vm::wire::*;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Plan, Shared, VmSrcEnd, BATCH, ZERO_PAGE};

pub(super) fn write_all_vectored(
    w: &mut impl Write,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A pacer for one of `share` streams under the bandwidth cap, if any. A
/// stream starts `phase` (a fraction) of one `unit` of its sending into the
/// schedule, so that many streams' first units spread out instead of going
/// at once (64 multifd channels under a 1 MB/s cap each sent a 512 KiB
/// packet at the start: 16 MB/s over two seconds).
pub(super) fn pacer(cfg: &Plan, share: u32, phase: f64, unit: u64) -> Option<Pacer> {
    cfg.max_bandwidth.map(|b| {
        let rate = b as f64 / f64::from(share.max(1));
        let start = Instant::now() + Duration::from_secs_f64(phase * unit as f64 / rate);
        Pacer::new(rate, start, Duration::from_millis(20))
    })
}

/// Until the pacer's first unit is due (or the stop); true if stopped.
fn wait_first(p: &Option<Pacer>, stop: &StopFlag) -> bool {
    p.as_ref().is_some_and(|p| stop.sleep_until(p.due(0)))
}

/// Messages per write: about a millisecond's worth when capped, for a
/// smooth stream.
pub(super) fn batch_for(cfg: &Plan, share: u32) -> usize {
    match cfg.max_bandwidth {
        Some(b) => ((b as f64 / f64::from(share.max(1)) * 0.001) as usize
            / (HEADER_LEN + PAGE_SIZE))
            .clamp(1, BATCH),
        None => BATCH,
    }
}

pub(super) fn pace(p: &mut Option<Pacer>, bytes: u64, stop: &StopFlag) {
    if let Some(p) = p.as_mut() {
        let wait = p.advance(bytes, Instant::now());
        if !wait.is_zero() {
            stop.sleep_until(Instant::now() + wait);
        }
    }
}

/// Precopy on the main connection: SEND_PAGE messages, page after page.
pub(super) fn precopy_main(cfg: &Plan, sh: &Shared) -> io::Result<()> {
    let mut index = 0u64;
    let batch = batch_for(cfg, 1);
    let mut headers = vec![[0u8; HEADER_LEN]; batch];
    let mut p = pacer(cfg, 1, 0.0, 0);
    while !sh.stop.is_set() {
        for h in headers.iter_mut() {
            *h = header(MAGIC_SEND_PAGE, index);
            index += 1;
            if index == cfg.vm_pages {
                index = 0;
            }
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(2 * batch);
        for h in &headers {
            iov.push(IoSlice::new(h));
            iov.push(IoSlice::new(&ZERO_PAGE));
        }
        // Let a waiting page request go first (QEMU sends it next).
        while sh.pending.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        {
            let mut w = lock(&sh.main_writer);
            write_all_vectored(&mut *w, &mut iov)?;
        }
        let bytes = (batch * (HEADER_LEN + PAGE_SIZE)) as u64;
        sh.main_bytes.fetch_add(bytes, Ordering::Relaxed);
        pace(&mut p, bytes, &sh.stop);
    }
    Ok(())
}

/// Precopy on one multifd connection: 128-page packets.
pub(super) fn precopy_multifd(
    cfg: &Plan,
    sh: &Shared,
    mut sock: TcpStream,
    k: usize,
    next: &AtomicU64,
) -> io::Result<()> {
    let mut idx = [0u8; MULTIFD_PAGES * 8];
    let hdr = header(MAGIC_MULTIFD, MULTIFD_PAGES as u64);
    let bytes = (HEADER_LEN + MULTIFD_PAGES * (8 + PAGE_SIZE)) as u64;
    let channels = cfg.cfg.channels.max(1);
    let mut p = pacer(cfg, channels, k as f64 / f64::from(channels), bytes);
    if wait_first(&p, &sh.stop) {
        return Ok(());
    }
    while !sh.stop.is_set() {
        let base = next.fetch_add(MULTIFD_PAGES as u64, Ordering::Relaxed);
        for i in 0..MULTIFD_PAGES {
            let page = (base + i as u64) % cfg.vm_pages;
            idx[i * 8..i * 8 + 8].copy_from_slice(&page.to_le_bytes());
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MULTIFD_PAGES + 2);
        iov.push(IoSlice::new(&hdr));
        iov.push(IoSlice::new(&idx));
        iov.extend((0..MULTIFD_PAGES).map(|_| IoSlice::new(&ZERO_PAGE)));
        write_all_vectored(&mut sock, &mut iov)?;
        sh.channel_bytes[k].fetch_add(bytes, Ordering::Relaxed);
        pace(&mut p, bytes, &sh.stop);
    }
    Ok(())
}

/// Reads page requests from the main connection and answers each at once.
pub(super) fn answer_requests(
    cfg: &Plan,
    sh: &Shared,
    main: TcpStream,
    mut preempt: Option<TcpStream>,
) -> io::Result<()> {
    let mut r = FrameReader::new(main, 64 * 1024);
    loop {
        let (magic, page) = parse_header(r.peek(HEADER_LEN)?);
        r.consume(HEADER_LEN);
        if magic != MAGIC_REQ_PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("page request magic incorrect: {magic:#x}"),
            ));
        }
        if page >= cfg.vm_pages {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("requested page {page:#x} is past the VM size"),
            ));
        }
        let h = header(MAGIC_SEND_PAGE, page);
        let mut iov = [IoSlice::new(&h), IoSlice::new(&ZERO_PAGE)];
        let bytes = (HEADER_LEN + PAGE_SIZE) as u64;
        match preempt.as_mut() {
            Some(p) => {
                write_all_vectored(p, &mut iov)?;
                sh.preempt_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            None => {
                sh.pending.store(true, Ordering::Release);
                let r = {
                    let mut w = lock(&sh.main_writer);
                    write_all_vectored(&mut *w, &mut iov)
                };
                sh.pending.store(false, Ordering::Release);
                r?;
                sh.main_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        sh.requests.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn describe(e: &io::Error) -> (VmSrcEnd, String) {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => (
            VmSrcEnd::PeerClosed,
            "the destination closed the connection".into(),
        ),
        _ => (VmSrcEnd::Error, e.to_string()),
    }
}
