//! Whatever a peer sends on a new connection to `vm -d`: the opening is
//! judged, and a stream it accepts runs to its end (EOF or an error), never
//! a panic, never a hang, requests written nowhere.
#![no_main]

use std::io::{self, Cursor};

use libfuzzer_sys::fuzz_target;
use migmon::vm::dst::handshake::{read_opening, Opening};
use migmon::vm::dst::session::Session;
use migmon::vm::frame::FrameReader;
use migmon::vm::wire::CHANNEL_MULTIFD;

fuzz_target!(|data: &[u8]| {
    let mut r = FrameReader::new(Cursor::new(data), 1 << 16);
    let sink = || Some(Box::new(io::sink()) as migmon::vm::dst::session::RequestWriter);
    match read_opening(&mut r) {
        Opening::Gone | Opening::Reject(_) => {}
        Opening::Original => {
            let s = Session::new(0, "fuzz".into(), 1 << 18, 0, 0, sink());
            let _ = s.run_pages(&mut r, Some(&|| {}));
        }
        Opening::Hello(h) => {
            let s = Session::new(0, "fuzz".into(), h.vm_pages, h.flags, h.channels, sink());
            let _ = s.run_pages(&mut r, Some(&|| {}));
        }
        Opening::Channel { kind, index, .. } => {
            let s = Session::new(0, "fuzz".into(), 1 << 18, u32::MAX, 64, sink());
            if s.admit(kind, index).is_err() {
                return;
            }
            if kind == CHANNEL_MULTIFD {
                s.add_channel();
                let _ = s.run_multifd(&mut r);
            } else {
                s.set_preempt(sink());
                let _ = s.run_pages(&mut r, None);
            }
        }
    }
});
