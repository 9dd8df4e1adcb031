//! The source's side of the opening: HELLO out, HELLO_ACK back (an
//! original destination closes instead).

use crate::error::{Error, Result};
use crate::vm::wire::*;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

pub(super) fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::network(what, e)
}

/// Sends HELLO and waits for HELLO_ACK; an original destination closes.
pub(super) fn hello(main: &mut TcpStream, h: &Hello) -> Result<()> {
    let unknown = || {
        Error::Protocol(
            "the destination closed the connection at the protocol extension: it does not know \
             multifd channels or preempt (an original mig_mon or an older version?)"
                .into(),
        )
    };
    let mut msg = header(MAGIC_HELLO, HELLO_ARG).to_vec();
    msg.extend_from_slice(&h.encode());
    main.write_all(&msg).map_err(|_| unknown())?;
    main.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err("setting a read timeout"))?;
    let mut ack = [0u8; HEADER_LEN];
    let r = io::Read::read_exact(main, &mut ack);
    main.set_read_timeout(None)
        .map_err(io_err("clearing the read timeout"))?;
    match r {
        Ok(()) if parse_header(&ack) == (MAGIC_HELLO_ACK, HELLO_ARG) => Ok(()),
        Ok(()) => {
            let (magic, arg) = parse_header(&ack);
            Err(Error::Protocol(format!(
                "unexpected answer to HELLO: magic {magic:#x} with argument {arg:#x} \
                 (HELLO_ACK is {MAGIC_HELLO_ACK:#x} with {HELLO_ARG:#x})"
            )))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::Protocol(
                "the destination did not answer the protocol extension within 5 s".into(),
            ))
        }
        Err(_) => Err(unknown()),
    }
}
