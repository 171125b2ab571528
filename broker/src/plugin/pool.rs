//! Warm instances of one plugin version, taken for a call and given back after a successful
//! one (an instance that failed may be in any state and is dropped instead).
//!
//! The instance given back last waits in a one-instance slot (an atomic pointer): a call that
//! finds it there takes it with one atomic swap and gives it back with one compare-exchange, so
//! the usual case (one caller at a time, or fewer callers than instances) takes no lock and
//! allocates nothing (instances stay boxed for their whole life). Instances beyond that one wait
//! in a locked list, used only when calls overlap.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use parking_lot::Mutex;

pub(super) struct Pool<W> {
    /// An idle instance, or null; owned by the pool while it is here (a `Box<W>` turned into a
    /// pointer, turned back by whoever swaps it out).
    slot: AtomicPtr<W>,
    /// Further idle instances.
    idle: Mutex<Vec<Box<W>>>,
    retired: AtomicBool,
    /// The pool owns the `W` behind `slot`.
    _owns: PhantomData<Box<W>>,
}

impl<W> Default for Pool<W> {
    fn default() -> Self {
        Pool {
            slot: AtomicPtr::new(ptr::null_mut()),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            _owns: PhantomData,
        }
    }
}

impl<W> Pool<W> {
    /// An idle instance, or a new one from `make`.
    pub(super) fn take<E>(&self, make: impl FnOnce() -> Result<W, E>) -> Result<Box<W>, E> {
        if let Some(w) = self.take_slot() {
            return Ok(w);
        }
        let idle = self.idle.lock().pop();
        match idle {
            Some(w) => Ok(w),
            None => make().map(Box::new),
        }
    }

    /// Keeps `w` for a later call, unless this version is retired (then it is dropped).
    pub(super) fn give_back(&self, w: Box<W>) {
        if self.retired() {
            return;
        }
        let p = Box::into_raw(w);
        match self
            .slot
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {}
            Err(_) => {
                // SAFETY: `p` came from `Box::into_raw` above and was not stored anywhere.
                let w = unsafe { Box::from_raw(p) };
                self.idle.lock().push(w);
            }
        }
        // A retire that ran since the check above may have missed what was just kept.
        if self.retired() {
            self.drain();
        }
    }

    /// This version was replaced or unloaded: no instance is kept any more.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.drain();
    }

    pub(super) fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Idle instances kept (for tests and stats; not on the call path).
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        usize::from(!self.slot.load(Ordering::Acquire).is_null()) + self.idle.lock().len()
    }

    fn take_slot(&self) -> Option<Box<W>> {
        let p = self.slot.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw` in `give_back`, and
        // the swap made this caller its only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    fn drain(&self) {
        drop(self.take_slot());
        self.idle.lock().clear();
    }
}

impl<W> Drop for Pool<W> {
    fn drop(&mut self) {
        drop(self.take_slot());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    /// Counts live instances.
    struct Counted(Arc<AtomicUsize>);

    impl Counted {
        fn new(live: &Arc<AtomicUsize>) -> Result<Counted, ()> {
            live.fetch_add(1, Ordering::SeqCst);
            Ok(Counted(live.clone()))
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn reuses_the_instance_given_back() {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Pool::default();
        let a = pool.take(|| Counted::new(&live)).unwrap();
        let pa: *const Counted = &*a;
        pool.give_back(a);
        let b = pool.take(|| Counted::new(&live)).unwrap();
        assert!(ptr::eq(pa, &*b), "the same instance, not a new one");
        assert_eq!(live.load(Ordering::SeqCst), 1);
        pool.give_back(b);
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn overlapping_calls_keep_every_instance() {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Pool::default();
        let ws: Vec<_> = (0..3)
            .map(|_| pool.take(|| Counted::new(&live)).unwrap())
            .collect();
        assert_eq!(live.load(Ordering::SeqCst), 3);
        for w in ws {
            pool.give_back(w);
        }
        assert_eq!(pool.idle(), 3);
        let again: Vec<_> = (0..3)
            .map(|_| pool.take(|| Counted::new(&live)).unwrap())
            .collect();
        assert_eq!(live.load(Ordering::SeqCst), 3, "no new instance was made");
        drop(again);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn retire_drops_idle_instances_and_refuses_more() {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Pool::default();
        let (a, b) = (
            pool.take(|| Counted::new(&live)).unwrap(),
            pool.take(|| Counted::new(&live)).unwrap(),
        );
        pool.give_back(a);
        let in_flight = pool.take(|| Counted::new(&live)).unwrap();
        pool.give_back(b);
        pool.retire();
        assert!(pool.retired());
        assert_eq!(pool.idle(), 0);
        assert_eq!(
            live.load(Ordering::SeqCst),
            1,
            "only the call in flight holds one"
        );
        pool.give_back(in_flight);
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "given back after retire: dropped"
        );
    }

    #[test]
    fn dropping_the_pool_drops_its_instances() {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Pool::default();
        let (a, b) = (
            pool.take(|| Counted::new(&live)).unwrap(),
            pool.take(|| Counted::new(&live)).unwrap(),
        );
        pool.give_back(a);
        pool.give_back(b);
        drop(pool);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn concurrent_callers_never_share_an_instance() {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(Pool::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (pool, live) = (pool.clone(), live.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let w = pool.take(|| Counted::new(&live)).unwrap();
                        // The instance is this caller's alone: mark it and check the mark.
                        let before = w.0.load(Ordering::SeqCst);
                        assert!(before >= 1);
                        pool.give_back(w);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(live.load(Ordering::SeqCst) <= 4);
        assert_eq!(live.load(Ordering::SeqCst), pool.idle());
    }
}
