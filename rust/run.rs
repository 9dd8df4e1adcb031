//! The one shape of every background run: a [`Background`] owns the run's
//! main thread, its stop flag and a [`Mailbox`] through which the run hands
//! items (samples, events) to whoever polls, with a timeout so a Python
//! caller can check for signals between polls. `stop` is idempotent and
//! returns the same result every time. A [`Ticker`] paces the one sample per
//! interval that the runs report.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pace::StopFlag;

/// Locks a mutex whose holder may have panicked: the data of every lock in
/// this crate stays consistent across a panic (counters, queues, lists), so
/// the poison carries no information we need.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
/// A queue of items from background threads to a poller.
#[derive(Debug)]
pub struct Mailbox<T> {
    queue: Mutex<VecDeque<T>>,
    ready: Condvar,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        lock(&self.queue)
    }

    /// Adds one item and wakes the pollers.
    pub fn push(&self, item: T) {
        self.lock().push_back(item);
        self.ready.notify_all();
    }

    /// Adds several items at once.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        self.lock().extend(items);
        self.ready.notify_all();
    }

    /// Wakes the pollers so they look at `closed` again.
    pub fn wake(&self) {
        let _guard = self.lock();
        self.ready.notify_all();
    }

    /// The next item, waiting up to `timeout`; None on timeout, or at once
    /// when the queue is empty and `closed()` says nothing more will come.
    pub fn pop_wait(&self, timeout: Duration, closed: impl Fn() -> bool) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        loop {
            if let Some(item) = q.pop_front() {
                return Some(item);
            }
            let now = Instant::now();
            if now >= deadline || closed() {
                return None;
            }
            q = self
                .ready
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What a run's threads share with its owner: the stop flag and the
/// mailbox. The run's function gets it by reference.
#[derive(Debug)]
pub struct Ctx<M> {
    /// Set once to make every thread of the run stop.
    pub stop: StopFlag,
    mailbox: Mailbox<M>,
    done: AtomicBool,
}

impl<M> Ctx<M> {
    /// Hands one item to the poller.
    pub fn send(&self, item: M) {
        self.mailbox.push(item);
    }

    /// Wakes the pollers so they look at the run's state again.
    pub fn wake(&self) {
        self.mailbox.wake();
    }
}

type Hook = Box<dyn Fn() + Send + Sync>;

/// A run in background threads: items out while it runs, one result at its
/// end. See the module docs.
pub struct Background<M, R> {
    ctx: Arc<Ctx<M>>,
    handle: Mutex<Option<JoinHandle<Result<R>>>>,
    result: Mutex<Option<Result<R>>>,
    on_stop: Option<Hook>,
}

impl<M: Send + 'static, R: Clone + Send + 'static> Background<M, R> {
    /// Starts `f` on a thread called `name`. A panic in `f` becomes an
    /// [`Error::Internal`] result, never a lost process.
    pub fn spawn(
        name: &str,
        f: impl FnOnce(&Arc<Ctx<M>>) -> Result<R> + Send + 'static,
    ) -> Result<Self> {
        let ctx = Arc::new(Ctx {
            stop: StopFlag::new(),
            mailbox: Mailbox::default(),
            done: AtomicBool::new(false),
        });
        let c = ctx.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let r = catch_unwind(AssertUnwindSafe(|| f(&c)))
                    .unwrap_or_else(|p| Err(Error::Internal(panic_text(p.as_ref()))));
                c.done.store(true, Ordering::Release);
                c.mailbox.wake();
                r
            })
            .map_err(|e| Error::resource_io(format!("starting the {name} thread"), e))?;
        Ok(Self {
            ctx,
            handle: Mutex::new(Some(handle)),
            result: Mutex::new(None),
            on_stop: None,
        })
    }

    /// Adds what a stop must do beyond setting the flag (shutting sockets
    /// that a thread may be blocked on).
    pub fn on_stop(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_stop = Some(Box::new(hook));
        self
    }

    /// The state shared with the run's threads.
    pub fn ctx(&self) -> &Arc<Ctx<M>> {
        &self.ctx
    }

    /// The next item, waiting up to `timeout`; None on timeout, or at once
    /// once the run has ended and every item was taken.
    pub fn next(&self, timeout: Duration) -> Option<M> {
        self.ctx
            .mailbox
            .pop_wait(timeout, || self.ctx.done.load(Ordering::Acquire))
    }

    /// True once the run's main thread has ended (by itself or stopped).
    pub fn is_done(&self) -> bool {
        self.ctx.done.load(Ordering::Acquire)
    }

    /// Asks the run to end; returns at once.
    pub fn request_stop(&self) {
        self.ctx.stop.stop();
        if let Some(h) = &self.on_stop {
            h();
        }
    }

    /// Waits for the run to end by itself and returns its result; the same
    /// result every time.
    pub fn wait(&self) -> Result<R> {
        let mut result = lock(&self.result);
        if result.is_none() {
            let handle = lock(&self.handle).take();
            let r = match handle {
                Some(h) => h
                    .join()
                    .unwrap_or_else(|p| Err(Error::Internal(panic_text(p.as_ref())))),
                None => Err(Error::Internal("the run's thread was lost".into())),
            };
            *result = Some(r);
        }
        result.clone().expect("set above")
    }

    /// Ends the run and returns its result (idempotent: the same result
    /// every time).
    pub fn stop(&self) -> Result<R> {
        self.request_stop();
        self.wait()
    }
}

impl<M, R> Drop for Background<M, R> {
    fn drop(&mut self) {
        self.ctx.stop.stop();
        if let Some(h) = &self.on_stop {
            h();
        }
        if let Some(h) = lock(&self.handle).take() {
            let _ = h.join();
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("a mig_mon thread panicked: {what}")
}

/// Starts a scoped thread; a thread that cannot be started (an address
/// space or a pids limit) is an error to report, not a panic.
pub fn spawn_scoped<'scope, 'env, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, f)
        .map_err(|e| Error::resource_io(format!("starting a {name} thread"), e))
}

/// Where threads wait until every one of them is ready (or the start is
/// called off because one could not be started): a barrier whose size need
/// not be known in advance and which can be cancelled.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(usize, Option<bool>)>,
    changed: Condvar,
}

impl Gate {
    /// Counts this thread as ready and waits until the gate opens (true)
    /// or is called off (false).
    pub fn arrive(&self) -> bool {
        let mut st = lock(&self.state);
        st.0 += 1;
        self.changed.notify_all();
        loop {
            if let Some(open) = st.1 {
                return open;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until `n` threads arrived, then lets them all go.
    pub fn open_when(&self, n: usize) {
        let mut st = lock(&self.state);
        while st.0 < n {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.1 = Some(true);
        self.changed.notify_all();
    }

    /// Lets every waiting thread go, told not to start.
    pub fn call_off(&self) {
        lock(&self.state).1 = Some(false);
        self.changed.notify_all();
    }
}

/// One interval of a [`Ticker`].
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// 0 for the first interval.
    pub index: u64,
    /// When the interval ended.
    pub now: Instant,
    /// Its length (the previous tick to `now`).
    pub length: Duration,
}

/// Sleeps from one interval's end to the next on absolute deadlines (no
/// drift), until the run is stopped or its duration is reached.
#[derive(Debug)]
pub struct Ticker {
    start: Instant,
    interval: Duration,
    end: Option<Instant>,
    index: u64,
    /// The grid the deadlines are on: the run's start, moved on after a
    /// stall (see [`Ticker::next`]).
    origin: Instant,
    /// The deadline slot of the next tick on that grid.
    slot: u64,
    last: Instant,
    expired: bool,
}

impl Ticker {
    /// Intervals of `interval` from `start`, for `duration` if given.
    pub fn new(start: Instant, interval: Duration, duration: Option<Duration>) -> Self {
        Self {
            start,
            interval,
            end: duration.map(|d| start + d),
            index: 0,
            origin: start,
            slot: 0,
            last: start,
            expired: false,
        }
    }

    /// Sleeps until the next interval ends and returns it; None once the
    /// stop flag is set or the duration is reached (a last part-interval
    /// shorter than `interval` is not reported).
    pub fn next(&mut self, stop: &StopFlag) -> Option<Tick> {
        if self.expired {
            return None;
        }
        let mut due = self.origin + self.interval.saturating_mul(self.slot as u32 + 1);
        // A deadline already missed (the process was stopped or starved
        // past it): the missed ones are not reported one by one as
        // intervals of no length. The grid moves on, so this interval
        // (which holds the stall) ends one interval from now.
        let now = Instant::now();
        if now >= due {
            self.origin = now;
            self.slot = 0;
            due = now + self.interval;
        }
        let wake = self.end.map_or(due, |e| e.min(due));
        if stop.sleep_until(wake) {
            return None;
        }
        if self.end == Some(wake) {
            self.expired = true;
            if wake < due {
                return None;
            }
        }
        let now = Instant::now();
        let tick = Tick {
            index: self.index,
            now,
            length: now - self.last,
        };
        self.index += 1;
        self.slot += 1;
        self.last = now;
        Some(tick)
    }

    /// True once the run's duration was reached.
    pub fn expired(&self) -> bool {
        self.expired
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn missed_deadlines_are_one_interval_not_many_empty_ones() {
        let stop = StopFlag::default();
        let start = Instant::now();
        let mut t = Ticker::new(start, Duration::from_millis(10), None);
        let first = t.next(&stop).unwrap();
        assert_eq!(first.index, 0);
        // The process did not run for 55 ms (5.5 intervals).
        std::thread::sleep(Duration::from_millis(55));
        let late = t.next(&stop).unwrap();
        assert_eq!(late.index, 1);
        assert!(late.length >= Duration::from_millis(50), "{late:?}");
        // The next one is a whole interval again.
        let next = t.next(&stop).unwrap();
        assert_eq!(next.index, 2);
        assert!(next.length >= Duration::from_millis(9), "{next:?}");
    }

    #[test]
    fn pop_waits_for_items_and_stops_when_closed() {
        let m = Arc::new(Mailbox::default());
        let closed = Arc::new(AtomicBool::new(false));
        let (m2, c2) = (m.clone(), closed.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            m2.push(7);
            std::thread::sleep(Duration::from_millis(30));
            c2.store(true, Ordering::Release);
            m2.wake();
        });
        assert_eq!(m.pop_wait(Duration::from_secs(5), || false), Some(7));
        let start = Instant::now();
        assert_eq!(
            m.pop_wait(Duration::from_secs(5), || closed.load(Ordering::Acquire)),
            None
        );
        assert!(start.elapsed() < Duration::from_secs(4));
        t.join().unwrap();
    }

    #[test]
    fn stop_is_idempotent() {
        let b: Background<u32, u32> = Background::spawn("t", |c| {
            c.send(1);
            while !c.stop.is_set() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(5)
        })
        .unwrap();
        assert_eq!(b.next(Duration::from_secs(5)), Some(1));
        assert!(!b.is_done());
        assert_eq!(b.stop().unwrap(), 5);
        assert_eq!(b.stop().unwrap(), 5);
        assert!(b.is_done());
        assert_eq!(b.next(Duration::from_secs(5)), None);
    }

    #[test]
    fn a_panic_is_an_internal_error() {
        let b: Background<(), ()> = Background::spawn("t", |_| panic!("boom")).unwrap();
        match b.wait() {
            Err(Error::Internal(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ticker_reports_full_intervals_until_the_end() {
        let stop = StopFlag::new();
        let mut t = Ticker::new(
            Instant::now(),
            Duration::from_millis(30),
            Some(Duration::from_millis(100)),
        );
        let mut n = 0;
        while let Some(tick) = t.next(&stop) {
            assert_eq!(tick.index, n);
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(t.expired());
        let mut t = Ticker::new(Instant::now(), Duration::from_millis(30), None);
        stop.stop();
        assert!(t.next(&stop).is_none());
        assert!(!t.expired());
    }
}
