//! Guest network downtime measured with UDP probes: the echo server that
//! runs in the guest ([`echo`], `server_rr`), the probing client outside
//! ([`probe`], `client`), and the one-way server ([`oneway`], `server`)
//! that measures the gaps in a client's stream itself. [`gap`] turns
//! arrival times into downtime events; [`wire`] is the probes' format.

pub mod echo;
pub mod gap;
pub mod oneway;
pub mod probe;
pub mod wire;

pub use echo::{EchoServer, EchoServerConfig, EchoStats, NewClient};
pub use gap::{Baseline, DowntimeEvent};
pub use oneway::{ClientSummary, OneWayServer, OneWayServerConfig, OneWaySummary, ServerMessage};
pub use probe::{NoReply, ProbeConfig, ProbeMessage, ProbeStatus, ProbeSummary, Prober};
