//! The probe run against real sockets on loopback.

use super::*;
use crate::downtime::echo::{EchoServer, EchoServerConfig};
use std::net::SocketAddr;

fn cfg(target: SocketAddr) -> ProbeConfig {
    ProbeConfig {
        server: target.ip().to_string(),
        port: target.port(),
        interval_ms: 5.0,
        count: Some(100),
        ..ProbeConfig::default()
    }
}

fn wait(run: &Prober) -> ProbeSummary {
    while !run.background().is_done() {
        std::thread::sleep(Duration::from_millis(20));
    }
    run.background().stop().unwrap()
}

#[test]
fn round_trips_against_our_echo_server() {
    let srv = EchoServer::start(EchoServerConfig {
        bind: Some("127.0.0.1".into()),
        port: 0,
        duration_s: None,
    })
    .unwrap();
    let run = Prober::start(cfg(srv.local_addr())).unwrap();
    let s = wait(&run);
    assert_eq!(s.sent, 100);
    assert_eq!(s.received, 100);
    assert_eq!(s.lost + s.duplicates + s.foreign, 0);
    let rtt = s.rtt.unwrap();
    assert!(rtt.count == 100 && rtt.p50_ns > 0);
    // 100 probes at 5 ms: ~495 ms of sending, no drift.
    assert!(
        s.duration_s > 0.49 && s.duration_s < 1.6,
        "{}",
        s.duration_s
    );
    assert_eq!(srv.background().stop().unwrap().probes, 100);
}

#[test]
fn dead_server_is_all_loss_and_says_so() {
    // Bind then drop: nothing listens there.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = Prober::start(ProbeConfig {
        count: Some(20),
        ..cfg(format!("127.0.0.1:{port}").parse().unwrap())
    })
    .unwrap();
    let s = wait(&run);
    assert_eq!((s.sent, s.received, s.lost), (20, 0, 20));
    assert!(s.refused > 0);
}

#[test]
fn seqset_marks_once() {
    let mut s = SeqSet::default();
    assert!(s.insert(0));
    assert!(s.insert(1000));
    assert!(!s.insert(1000));
}

#[test]
fn validation() {
    let t: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for bad in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e300, 0.001] {
        assert!(
            ProbeConfig {
                interval_ms: bad,
                ..cfg(t)
            }
            .validate()
            .is_err(),
            "{bad}"
        );
    }
    assert!(ProbeConfig {
        count: Some(0),
        ..cfg(t)
    }
    .validate()
    .is_err());
    assert!(ProbeConfig {
        server: String::new(),
        ..cfg(t)
    }
    .validate()
    .is_err());
    assert!(cfg(t).validate().is_ok());
}
