//! `vm`: emulated live-migration TCP streams between two hosts. The source
//! ([`src`]) streams precopy pages and answers page requests; the
//! destination ([`dst`]) receives, requests pages in postcopy and times
//! each request. [`wire`] is the format both speak (the original's, plus
//! our extension for multifd and preempt, PROTOCOL.md); [`frame`] reads it.

pub mod dst;
pub mod frame;
pub mod src;
pub mod wire;

pub use dst::{
    DstMessage, VmConnected, VmDestination, VmDestinationConfig, VmDstSample, VmPostcopy,
    VmRejected, VmSessionSummary,
};
pub use src::{ReturnPath, VmSource, VmSourceConfig, VmSrcEnd, VmSrcSample, VmSrcSummary};
