//! Networking: UDP probes that measure a guest's network downtime from
//! outside ([`probe`], [`echo`], [`gap`]), with the wire format of the probes
//! in [`wire`] and sockets and addresses in [`sock`].

pub mod echo;
pub mod frame;
pub mod gap;
pub mod oneway;
pub mod probe;
pub mod sock;
pub mod vm_dst;
pub mod vm_src;
pub mod vmwire;
pub mod wire;

/// The original's port (it meant 12323; a byte-order slip put it on 9008).
pub const DEFAULT_PORT: u16 = 12323;
