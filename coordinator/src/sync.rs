//! Locks that a panic cannot poison for everyone.
//!
//! A panic while a `std::sync::Mutex` is held marks it poisoned, and every
//! later `lock().expect(..)` panics too: one connection's bug would stop every
//! connection. Here a poisoned lock is taken anyway, its poison cleared and
//! the event logged, so the panic costs only the task it happened in. Callers
//! whose state has cross-structure invariants (the scheduler) re-check them
//! when [`Relock::recovered`] says the previous holder panicked.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A guard, and whether its previous holder panicked.
#[derive(Debug)]
pub struct Relock<'a, T> {
    pub guard: MutexGuard<'a, T>,
    pub recovered: bool,
}

/// Takes `mutex`, recovering it if a panicking holder poisoned it.
pub fn relock<'a, T>(mutex: &'a Mutex<T>, name: &'static str) -> Relock<'a, T> {
    match mutex.lock() {
        Ok(guard) => Relock {
            guard,
            recovered: false,
        },
        Err(poisoned) => {
            tracing::error!(
                lock = name,
                "a task panicked while holding this lock; carrying on with its state"
            );
            mutex.clear_poison();
            Relock {
                guard: poisoned.into_inner(),
                recovered: true,
            }
        }
    }
}

/// Takes `mutex`, recovering it if a panicking holder poisoned it: for state
/// that stays consistent whatever point a panic interrupted.
pub fn lock<'a, T>(mutex: &'a Mutex<T>, name: &'static str) -> MutexGuard<'a, T> {
    relock(mutex, name).guard
}

/// Waits on a condition variable with a guard from [`lock`], recovering the
/// lock the same way.
pub fn wait<'a, T>(condvar: &std::sync::Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_and_reported_once() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let holder = mutex.clone();
        let _ = std::thread::spawn(move || {
            let mut value = holder.lock().unwrap();
            *value = 2;
            panic!("while holding the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        let first = relock(&mutex, "test");
        assert!(first.recovered);
        assert_eq!(*first.guard, 2, "the state the panicking holder left");
        drop(first);
        let second = relock(&mutex, "test");
        assert!(!second.recovered, "the poison was cleared");
    }
}
