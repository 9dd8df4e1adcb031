//! The one-way server against real senders on loopback.

use super::*;

#[test]
fn measures_each_client_on_its_own() {
    let srv = OneWayServer::start(OneWayServerConfig {
        bind: Some("127.0.0.1".into()),
        port: 0,
        ..Default::default()
    })
    .unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..30u64 {
        if !(10..20).contains(&seq) {
            let sent_ns = seq * 5_000_000;
            a.send_to(&Probe { seq, sent_ns }.encode(), srv.local_addr())
                .unwrap();
        }
        b.send_to(b"echo", srv.local_addr()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let clients = srv.background().stop().unwrap().clients;
    assert_eq!(clients.len(), 2);
    let ca = clients
        .iter()
        .find(|c| c.peer == a.local_addr().unwrap().to_string())
        .unwrap();
    let cb = clients
        .iter()
        .find(|c| c.peer == b.local_addr().unwrap().to_string())
        .unwrap();
    assert_eq!((ca.packets, ca.probes, ca.lost), (20, 20, 10));
    assert_eq!(ca.events.len(), 1);
    assert_eq!(ca.events[0].probes_missed, 10);
    assert_eq!((cb.packets, cb.probes), (30, 0));
}

#[test]
fn far_sequence_numbers_are_restarts_not_loss() {
    let mut c = Client::new(None, 0);
    let mut t = 0;
    let mut feed = |c: &mut Client, seq: u64| {
        t += 1_000_000;
        let skipped = c.sequence(seq, t);
        c.last_seen_ns = t;
        skipped
    };
    for seq in [0, 1, 2, 4] {
        feed(&mut c, seq);
    }
    assert_eq!(c.summary(test_peer()).lost, 1);
    // A forged 2^63 and the top of the range: restarts, not 9.2e18 lost
    // and no wrap to 0.
    assert_eq!(feed(&mut c, 1 << 63), 0);
    assert_eq!(feed(&mut c, u64::MAX), 0);
    // The client restarts from 0; a probe from before the restart's
    // first arrives late.
    feed(&mut c, 1);
    feed(&mut c, 0);
    assert_eq!(feed(&mut c, 5), 3);
    let s = c.summary(test_peer());
    assert_eq!((s.restarts, s.reordered), (3, 1));
    assert_eq!(s.lost, 1 + 3);
    assert_eq!(s.probes, 9);
}

#[test]
fn jumping_sequence_numbers_are_not_counted_lost() {
    // 38 probes a millisecond apart on the sender's clock whose numbers
    // jump by about 1,770 each (65,446 counted lost before): no sender can
    // have sent those in between.
    let mut c = Client::new(None, 0);
    let mut missed = 0;
    for i in 0..38u64 {
        missed += c.sequence(i * 1_770 + i % 3, i * 1_000_000);
    }
    let s = c.summary(test_peer());
    assert_eq!((missed, s.lost, s.restarts), (0, 0, 37));
    // A client probing every 10 ms whose probes 20..119 were lost in a
    // 1 s outage: 100 lost, as its clock allows.
    let mut c = Client::new(None, 0);
    let mut missed = 0;
    for seq in (0..20u64).chain(120..130) {
        missed += c.sequence(seq, seq * 10_000_000);
    }
    let s = c.summary(test_peer());
    assert_eq!((missed, s.lost, s.restarts), (100, 100, 0));
    // Its interval learned, a jump of 100 in 0.3 s of its clock is not
    // loss (it cannot have sent 100 in that time).
    assert_eq!(c.sequence(229, 129 * 10_000_000 + 300_000_000), 0);
    assert_eq!(c.summary(test_peer()).restarts, 1);
}

fn test_peer() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}
