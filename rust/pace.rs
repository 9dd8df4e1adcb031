//! Monotonic time, deadline pacing and the shared stop flag.
//!
//! Pacing is by absolute deadlines: the n-th unit of work is due at
//! `start + n / rate`, so sleeping late once does not make every later unit
//! late (no drift), and a caller never bursts more than one chunk ahead of
//! the line. A caller that falls far behind (a stall, e.g. a postcopy page
//! fault) catches up at most `max_lag` worth of work instead of bursting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A flag shared by a run's threads; set once to make all of them stop.
/// Reading it is one atomic load (hot loops poll it); a thread that sleeps
/// on it is woken by the stop itself, so sleeps need no polling slices.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    set: AtomicBool,
    lock: Mutex<()>,
    woken: Condvar,
}

impl StopFlag {
    /// A new, unset flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn stop(&self) {
        self.0.set.store(true, Ordering::Release);
        // Taking the lock orders the store before any sleeper's check.
        let _g = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.woken.notify_all();
    }

    /// True once [`StopFlag::stop`] was called.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::Acquire)
    }

    /// Sleeps until `deadline` or until the flag is set, whichever is
    /// first, with no wake-up in between. Returns true if the flag is set.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut g = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .0
                .woken
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Asks the kernel to wake this thread's sleeps as close to their deadline
/// as it can (the default slack is 50 us), for smooth pacing.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches only
    // the calling thread's scheduling attributes.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Deadline pacer for a steady rate of work units (pages, bytes, packets).
#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    /// Units per second.
    rate: f64,
    /// Units accounted so far.
    done: u64,
    /// How far behind schedule the pacer lets a caller fall before it forgets
    /// the missed work.
    max_lag: Duration,
}

impl Pacer {
    /// A pacer for `rate` units per second (must be > 0), starting at `start`.
    pub fn new(rate: f64, start: Instant, max_lag: Duration) -> Self {
        assert!(rate > 0.0, "pacer rate must be positive");
        Self {
            start,
            rate,
            done: 0,
            max_lag,
        }
    }

    /// When unit number `n` (counted from the start) is due.
    pub fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }

    /// Accounts `n` more units done at time `now`, and returns how long to
    /// sleep before the next unit is due (zero when behind schedule).
    pub fn advance(&mut self, n: u64, now: Instant) -> Duration {
        self.done += n;
        let due = self.due(self.done);
        if due >= now {
            return due - now;
        }
        if now - due > self.max_lag {
            // Too far behind: move the schedule so we are only max_lag late,
            // rather than bursting to make up for a stall.
            self.start += (now - due) - self.max_lag;
        }
        Duration::ZERO
    }

    /// Units accounted so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Nanoseconds on the monotonic clock since the process first asked; the
/// time base of probe timestamps (only differences mean anything).
pub fn mono_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The wall clock minus the [`mono_ns`] clock, in ns: the wall clock read
/// on both sides of the monotonic one, the tightest of three brackets.
/// One read of each, in turn, is off by however long the thread was
/// preempted between them: on a loaded machine that put milliseconds of
/// error into gaps between packets whose times were converted (a client's
/// gap 1.5 ms short of the capture's).
pub fn wall_minus_mono_ns() -> i128 {
    tightest_offset(|| {
        let w1 = wall_ns();
        let m = mono_ns() as i128;
        (w1, m, wall_ns())
    })
}

/// Of three `(wall before, mono, wall after)` readings, the offset of the
/// one with the narrowest wall bracket.
fn tightest_offset(mut read: impl FnMut() -> (i128, i128, i128)) -> i128 {
    (0..3)
        .map(|_| read())
        .min_by_key(|&(w1, _, w2)| w2 - w1)
        .map_or(0, |(w1, m, w2)| (w1 + w2) / 2 - m)
}

/// A wall-clock time (Unix ns, as the kernel stamps packets) on the
/// [`mono_ns`] time base.
pub fn wall_to_mono(wall_ns: u64) -> u64 {
    (wall_ns as i128 - wall_minus_mono_ns()).max(0) as u64
}

/// The wall-clock time now, Unix seconds to the microsecond: the `unix_s`
/// of every sample, beside its monotonic `elapsed_s`.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_micros() as f64) / 1e6)
}

/// The wall-clock time (Unix seconds) of an [`Instant`].
pub fn unix_of(t: Instant) -> f64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let m = if t >= epoch {
        (t - epoch).as_nanos() as i128
    } else {
        -((epoch - t).as_nanos() as i128)
    };
    (m + wall_minus_mono_ns()) as f64 / 1e9
}

/// The wall-clock time (Unix seconds) at which [`mono_ns`] read `at_ns`.
pub fn unix_at(at_ns: u64) -> f64 {
    (at_ns as i128 + wall_minus_mono_ns()) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn on_schedule_sleeps_until_due() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, t0, Duration::from_millis(100));
        // 10 units at 1000/s are due at +10 ms.
        let d = p.advance(10, t0 + Duration::from_millis(4));
        assert_eq!(d, Duration::from_millis(6));
        assert_eq!(p.done(), 10);
    }

    #[test]
    fn stall_is_forgotten_beyond_max_lag() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, t0, Duration::from_millis(10));
        // One unit, then a 1 s stall: we are 999 ms behind; only 10 ms are kept.
        assert_eq!(p.advance(1, t0 + Duration::from_secs(1)), Duration::ZERO);
        // The next 10 units are owed at once, the 11th must wait again.
        assert_eq!(p.advance(10, t0 + Duration::from_secs(1)), Duration::ZERO);
        let d = p.advance(1, t0 + Duration::from_secs(1));
        assert!(d > Duration::ZERO && d <= Duration::from_millis(1), "{d:?}");
    }

    proptest! {
        /// Whatever the chunking, the schedule says n units take n / rate.
        #[test]
        fn no_drift(rate in 1.0f64..1e7, chunks in proptest::collection::vec(1u64..1000, 1..50)) {
            let t0 = Instant::now();
            let mut p = Pacer::new(rate, t0, Duration::from_secs(3600));
            let mut now = t0;
            for c in &chunks {
                now += p.advance(*c, now);
            }
            let total: u64 = chunks.iter().sum();
            let want = total as f64 / rate;
            let got = (now - t0).as_secs_f64();
            prop_assert!((got - want).abs() < 1e-6 * (1.0 + want), "got {got} want {want}");
        }
    }

    #[test]
    fn offset_comes_from_the_tightest_bracket() {
        // The first reading was preempted 2 ms between its clock reads (its
        // offset 1 ms off); the second is tight.
        let readings = [
            (0, 0, 2_000_000),
            (10_000_000, 5_000_000, 10_000_100),
            (0, 0, 900_000),
        ];
        let mut it = readings.into_iter();
        assert_eq!(tightest_offset(|| it.next().unwrap()), 5_000_050);
    }

    #[test]
    fn conversions_round_trip() {
        let m = mono_ns();
        let w = (m as i128 + wall_minus_mono_ns()) as u64;
        assert!((wall_to_mono(w) as i128 - m as i128).abs() < 1_000_000);
        assert!((unix_at(m) - w as f64 / 1e9).abs() < 1e-3);
        let then = Instant::now() - Duration::from_secs(2);
        assert!((unix_now() - 2.0 - unix_of(then)).abs() < 0.01);
    }

    #[test]
    fn stop_flag_wakes_sleeper() {
        let f = StopFlag::new();
        let g = f.clone();
        let h = std::thread::spawn(move || g.sleep_until(Instant::now() + Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        f.stop();
        assert!(h.join().unwrap());
    }
}
