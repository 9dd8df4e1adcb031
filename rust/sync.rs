//! The two pieces every background run shares: a [`Mailbox`] through which
//! its threads hand samples and events to whoever polls, with a timeout so a
//! Python caller can check for signals between polls, and a [`Task`], the
//! run's main thread, joined once for its result.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

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
        // A poisoned lock only means a poller panicked; the queue is fine.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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

/// A run's main thread, whose result is taken once.
#[derive(Debug)]
pub struct Task<T> {
    handle: Mutex<Option<JoinHandle<Result<T>>>>,
}

impl<T: Send + 'static> Task<T> {
    /// Starts `f` on a thread called `name`.
    pub fn spawn(name: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<Self> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| Error::io(format!("spawning the {name} thread"), e))?;
        Ok(Self {
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Waits for the thread and returns its result; a second call fails.
    pub fn join(&self) -> Result<T> {
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::invalid("this run was already stopped and its summary taken"))?;
        handle
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("a mig_mon thread panicked")))
    }

    /// Joins if nobody did (for Drop), ignoring the result.
    pub fn join_quietly(&mut self) {
        if let Some(h) = self
            .handle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

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
    fn task_joins_once() {
        let t = Task::spawn("t", || Ok(5)).unwrap();
        assert_eq!(t.join().unwrap(), 5);
        assert!(t.join().is_err());
    }
}
