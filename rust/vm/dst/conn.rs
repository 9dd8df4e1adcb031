//! One connection of the destination: what it is (its opening), then its
//! part of a session (main, multifd or preempt) until it ends; a session
//! begins with its main connection and ends with the first to end.

use super::handshake::{read_opening, Opening};
use super::session::{self, is_normal_end, reason, Session, NORMAL_END};
use super::{
    Conn, DstMessage, Shared, VmConnected, VmPostcopy, VmRejected, KEPT_SESSIONS, READ_BUF,
};
use crate::run::{lock, Ctx};
use crate::vm::frame::FrameReader;
use crate::vm::wire::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    ctx: &Arc<Ctx<DstMessage>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    // A connection is served only once the stop and the opening deadline
    // can close it: at the descriptor limit the clone that registers it
    // failed, and its thread blocked in a read that nothing closed (a
    // destination under `ulimit -n 40` did not stop on SIGTERM).
    match stream.try_clone() {
        Ok(c) => {
            lock(&shared.open_conns).insert(
                id,
                Conn {
                    stream: c,
                    accepted: Instant::now(),
                    opened: false,
                },
            );
        }
        Err(e) => {
            let _ = stream.shutdown(Shutdown::Both);
            ctx.send(DstMessage::Rejected(VmRejected {
                peer: peer.to_string(),
                reason: format!("no descriptor to serve it ({e}): closed"),
            }));
            return;
        }
    }
    let (sh, cx) = (shared.clone(), ctx.clone());
    let spawned = std::thread::Builder::new()
        .name("vm-dst-conn".into())
        .spawn(move || {
            serve_connection(stream, peer, id, &sh, &cx);
            lock(&sh.open_conns).remove(&id);
            give_back_memory();
        });
    match spawned {
        Ok(h) => {
            let mut w = lock(&shared.workers);
            w.retain(|h| !h.is_finished());
            w.push(h);
        }
        Err(e) => {
            lock(&shared.open_conns).remove(&id);
            ctx.send(DstMessage::Rejected(VmRejected {
                peer: peer.to_string(),
                reason: format!("cannot start a thread: {e}"),
            }));
        }
    }
}

pub(super) fn writer(stream: &TcpStream) -> Option<session::RequestWriter> {
    stream
        .try_clone()
        .ok()
        .map(|s| Box::new(s) as session::RequestWriter)
}

pub(super) fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Shared,
    ctx: &Ctx<DstMessage>,
) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let reject = |reason: String| {
        let _ = stream.shutdown(Shutdown::Both);
        ctx.send(DstMessage::Rejected(VmRejected {
            peer: peer.to_string(),
            reason,
        }));
    };
    let mut r = match FrameReader::try_new(read_half, READ_BUF) {
        Ok(r) => r,
        Err(e) => {
            // Under an address-space limit a 1 MiB buffer aborted the
            // whole destination; now the one connection is refused.
            lock(&shared.open_conns).remove(&id);
            reject(format!("{e}: closed"));
            return;
        }
    };
    let opening = read_opening(&mut r);
    {
        let mut conns = lock(&shared.open_conns);
        match conns.get_mut(&id) {
            // Closed by the deadline meanwhile: told there already.
            Some(c) if c.opened => return,
            Some(c) => c.opened = true,
            None => {}
        }
    }
    match opening {
        Opening::Gone => {}
        Opening::Reject(why) => reject(why),
        Opening::Original => {
            let s = new_session(shared, peer, (shared.vm_pages, 0, 0), &stream, None);
            connected(ctx, &s, false);
            run_main(&s, &mut r, shared, ctx);
        }
        Opening::Hello(hello) => {
            if lock(&shared.reg.by_token).contains_key(&hello.session) {
                return reject("session id already in use".into());
            }
            let s = new_session(
                shared,
                peer,
                (hello.vm_pages, hello.flags, hello.channels),
                &stream,
                Some(hello.session),
            );
            if (&stream)
                .write_all(&header(MAGIC_HELLO_ACK, HELLO_ARG))
                .is_err()
            {
                return finish(shared, ctx, &s, "connection lost during HELLO".into());
            }
            connected(ctx, &s, true);
            run_main(&s, &mut r, shared, ctx);
        }
        Opening::Channel {
            session,
            kind,
            index,
        } => {
            let found = lock(&shared.reg.by_token).get(&session).cloned();
            let Some(s) = found else {
                return reject(format!("channel for unknown session {session:#x}"));
            };
            // What joins is held to what HELLO announced.
            if let Err(why) = s.admit(kind, index) {
                return reject(format!("session {}: {why}", s.id));
            }
            s.add_conn(&stream);
            s.enter();
            if s.is_ended() {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            let result = if kind == CHANNEL_MULTIFD {
                s.add_channel();
                s.run_multifd(&mut r)
            } else {
                s.set_preempt(writer(&stream));
                s.run_pages(&mut r, None)
            };
            if shared.stop.is_set() || s.is_ended() {
                return;
            }
            // A source ends by closing every connection, a channel first as
            // often as not: that is the normal end.
            let why = result.map_or_else(|e| reason(&e), |()| NORMAL_END.into());
            if is_normal_end(&why) {
                if let Some(why) = s.leave(why) {
                    finish(shared, ctx, &s, why);
                }
            } else {
                finish(shared, ctx, &s, format!("channel from {peer}: {why}"));
            }
        }
    }
}

/// Returns freed memory to the system: the read buffers of finished
/// connections (1 MiB each) stay in malloc's arenas otherwise, once glibc
/// has raised its mmap threshold (an idle destination held 200-240 MB after
/// three bursts of 250 connections).
pub(super) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of malloc's own; it
    // takes malloc's locks and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub(super) fn connected(ctx: &Ctx<DstMessage>, s: &Session, extended: bool) {
    ctx.send(DstMessage::Connected(VmConnected {
        session: s.id,
        peer: s.peer.clone(),
        extended,
    }));
}

/// A session for a new main connection: `(vm_pages, flags, channels)`
/// as HELLO announced them (the original protocol: the destination's size,
/// 0, 0).
pub(super) fn new_session(
    shared: &Shared,
    peer: SocketAddr,
    (vm_pages, flags, channels): (u64, u32, u32),
    stream: &TcpStream,
    token: Option<u64>,
) -> Arc<Session> {
    let id = shared.reg.next_session.fetch_add(1, Ordering::Relaxed);
    let s = Arc::new(Session::new(
        id,
        peer.to_string(),
        vm_pages,
        flags,
        channels,
        writer(stream),
    ));
    s.add_conn(stream);
    s.enter();
    lock(&shared.reg.sessions).insert(id, s.clone());
    if let Some(t) = token {
        lock(&shared.reg.by_token).insert(t, s.clone());
    }
    s
}

/// Ends a session once, whichever of its connections notices first.
pub(super) fn finish(shared: &Shared, ctx: &Ctx<DstMessage>, s: &Arc<Session>, why: String) {
    if !s.take_finish() {
        return;
    }
    lock(&shared.reg.sessions).remove(&s.id);
    lock(&shared.reg.by_token).retain(|_, v| v.id != s.id);
    let summary = s.summary(why);
    {
        let mut fin = lock(&shared.reg.finished);
        if fin.len() == KEPT_SESSIONS {
            fin.pop_front();
        }
        fin.push_back(summary.clone());
    }
    ctx.send(DstMessage::Ended(summary));
}

/// The main connection: pages, and the handshake that starts postcopy.
pub(super) fn run_main<R: std::io::Read>(
    s: &Arc<Session>,
    r: &mut FrameReader<R>,
    shared: &Shared,
    ctx: &Ctx<DstMessage>,
) {
    let announce = || ctx.send(DstMessage::Postcopy(VmPostcopy { session: s.id }));
    let why = match s.run_pages(r, Some(&announce)) {
        Err(_) if shared.stop.is_set() => "stopped".into(),
        Err(e) => reason(&e),
        Ok(()) => NORMAL_END.into(),
    };
    // A normal end waits for the session's other connections to bring
    // what they still carry (the source closes them all).
    if is_normal_end(&why) && !s.is_ended() {
        if let Some(why) = s.leave(why) {
            finish(shared, ctx, s, why);
        }
        return;
    }
    finish(shared, ctx, s, why);
}
