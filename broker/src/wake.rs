//! A wake-up signal between threads: one side says "there is work" (or "stop"), a worker
//! thread sleeps until then or a timeout. Notifications coalesce: many `notify` calls before
//! the worker wakes are one wake-up. The appender uses it to wake the dispatcher, the store's
//! housekeeping thread and the filter-bits thread wait on one for work or shutdown.
//!
//! (The flusher keeps its own condition: it also counts appends to size group commits.)

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    pending: bool,
    shutdown: bool,
}

#[derive(Default)]
pub struct Signal {
    state: Mutex<State>,
    cv: Condvar,
}

impl Signal {
    /// There is work: wakes the waiter (a no-op while a wake-up is already pending).
    pub fn notify(&self) {
        let mut s = self.state.lock();
        if !s.pending {
            s.pending = true;
            self.cv.notify_all();
        }
    }

    /// Stop: every present and future wait returns false at once.
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
    }

    pub fn is_shut_down(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Waits for a notification or the timeout and consumes the notification; false once
    /// shut down.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.pending && !s.shutdown {
            self.cv.wait_for(&mut s, timeout);
        }
        s.pending = false;
        !s.shutdown
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
