//! A wake-up signal between threads: one side says "there is work" (or "stop"), a worker
//! thread sleeps until then or a timeout. Notifications coalesce: many `notify` calls before
//! the worker wakes are one wake-up, and a `notify` that finds a wake-up already pending is one
//! atomic swap (no lock, no syscall). The dispatcher, the store's housekeeping thread and the
//! filter-bits thread wait on one for work or shutdown.
//!
//! (The flusher keeps its own condition: it also counts appends to size group commits.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub struct Signal {
    /// A notification not yet consumed by a wait.
    pending: AtomicBool,
    /// Guarded by `lock` (the condition variable's mutex).
    shutdown: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Signal {
    /// There is work: wakes the waiter (a lock-free no-op while a wake-up is already pending).
    pub fn notify(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // Taking the lock orders this with a waiter between its check and its sleep.
        let _g = self.lock.lock();
        self.cv.notify_all();
    }

    /// Stop: every present and future wait returns false at once.
    pub fn shutdown(&self) {
        let _g = self.lock.lock();
        self.shutdown.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// A notification is waiting to be consumed (tests).
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Waits for a notification or the timeout and consumes the notification; false once
    /// shut down.
    pub fn wait(&self, timeout: Duration) -> bool {
        if !self.pending.swap(false, Ordering::AcqRel) && !self.is_shut_down() {
            let mut g = self.lock.lock();
            if !self.pending.load(Ordering::Acquire) && !self.is_shut_down() {
                self.cv.wait_for(&mut g, timeout);
            }
            drop(g);
            self.pending.store(false, Ordering::Release);
        }
        !self.is_shut_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn notify_before_wait_is_not_lost_and_coalesces() {
        let s = Signal::default();
        s.notify();
        s.notify();
        let t = Instant::now();
        assert!(s.wait(Duration::from_secs(10)));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "pending notification returns at once"
        );
        // Consumed: the next wait times out.
        assert!(s.wait(Duration::from_millis(10)));
    }

    #[test]
    fn shutdown_wakes_a_waiter_and_sticks() {
        let s = Arc::new(Signal::default());
        let s2 = s.clone();
        let h = std::thread::spawn(move || s2.wait(Duration::from_secs(30)));
        s.shutdown();
        assert!(!h.join().unwrap());
        assert!(!s.wait(Duration::from_secs(30)) && s.is_shut_down());
    }
}
