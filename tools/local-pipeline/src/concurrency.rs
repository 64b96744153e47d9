//! The account's Lambda concurrency, modelled (there is no such pool on one machine). One limit
//! shared by every function of the account and region; a function with a reservation draws only
//! from its reservation, which is carved out of the limit; every other function draws from what is
//! left (the unreserved pool). Past its pool, an invocation is throttled at once, never queued:
//! a function URL answers 429 without running the function, and an SQS event source mapping backs
//! off and tries again (Lambda, "Configuring reserved concurrency for a function").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

/// A pool of concurrent executions: a reservation, or the account's unreserved rest.
pub struct Pool {
    pub limit: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    /// The most executions each function held at once in this pool.
    peak_by_function: Mutex<HashMap<&'static str, usize>>,
    in_use_by_function: Mutex<HashMap<&'static str, usize>>,
}

impl Pool {
    fn new(limit: usize) -> Arc<Pool> {
        Arc::new(Pool {
            limit,
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            peak_by_function: Mutex::default(),
            in_use_by_function: Mutex::default(),
        })
    }

    /// The most executions in use at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The most executions `function` held at once in this pool (0: it never drew from it).
    pub fn peak_of(&self, function: &str) -> usize {
        self.peak_by_function
            .lock()
            .unwrap()
            .get(function)
            .copied()
            .unwrap_or_default()
    }
}

/// One function's way into its pool.
#[derive(Clone)]
pub struct Function {
    pub name: &'static str,
    pool: Arc<Pool>,
    throttles: Arc<AtomicU64>,
    invocations: Arc<AtomicU64>,
}

/// One execution in flight; it gives its concurrency back when dropped.
pub struct Execution {
    function: &'static str,
    pool: Arc<Pool>,
}

impl Function {
    /// An execution if the function's pool has room, else `None`: Lambda throttles it.
    pub fn try_invoke(&self) -> Option<Execution> {
        let pool = &self.pool;
        let taken = pool
            .in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < pool.limit).then_some(n + 1)
            });
        let Ok(before) = taken else {
            self.throttles.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.invocations.fetch_add(1, Ordering::Relaxed);
        pool.peak.fetch_max(before + 1, Ordering::SeqCst);
        let held = {
            let mut in_use = pool.in_use_by_function.lock().unwrap();
            let held = in_use.entry(self.name).or_default();
            *held += 1;
            *held
        };
        let mut peaks = pool.peak_by_function.lock().unwrap();
        let peak = peaks.entry(self.name).or_default();
        *peak = (*peak).max(held);
        Some(Execution {
            function: self.name,
            pool: self.pool.clone(),
        })
    }

    /// The pool it draws from: its reservation, or the unreserved pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    pub fn invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        *self
            .pool
            .in_use_by_function
            .lock()
            .unwrap()
            .entry(self.function)
            .or_default() -= 1;
        self.pool.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The account: its limit, the reservations carved out of it, the unreserved rest.
pub struct Account {
    pub unreserved: Arc<Pool>,
    reserved: HashMap<&'static str, Arc<Pool>>,
}

impl Account {
    /// `limit` concurrent executions, of which each `(function, n)` reserves `n`. Lambda keeps
    /// part of the limit unreserved (100 in a real account; `min_unreserved` here, scaled down
    /// with the limit) and refuses a reservation that would leave less.
    pub fn new(
        limit: usize,
        min_unreserved: usize,
        reservations: &[(&'static str, usize)],
    ) -> Result<Account> {
        let reserved_total: usize = reservations.iter().map(|(_, n)| n).sum();
        if reservations.iter().any(|&(_, n)| n == 0) {
            bail!("a reservation of 0 throttles every invocation");
        }
        if reserved_total + min_unreserved > limit {
            bail!("reservations of {reserved_total} leave less than {min_unreserved} of {limit} unreserved");
        }
        Ok(Account {
            unreserved: Pool::new(limit - reserved_total),
            reserved: reservations
                .iter()
                .map(|&(name, n)| (name, Pool::new(n)))
                .collect(),
        })
    }

    /// How `name` invokes: through its reservation if it has one, else the unreserved pool.
    pub fn function(&self, name: &'static str) -> Function {
        Function {
            name,
            pool: self
                .reserved
                .get(name)
                .cloned()
                .unwrap_or_else(|| self.unreserved.clone()),
            throttles: Arc::default(),
            invocations: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_function_draws_only_from_its_reservation() {
        let account = Account::new(10, 2, &[("upload-api", 3)]).unwrap();
        let api = account.function("upload-api");
        let backfill = account.function("backfill");
        let held: Vec<_> = (0..3).map(|_| api.try_invoke().unwrap()).collect();
        assert!(
            api.try_invoke().is_none(),
            "past its reservation: throttled"
        );
        assert_eq!(api.throttles(), 1);
        let pipeline: Vec<_> = (0..7).map(|_| backfill.try_invoke().unwrap()).collect();
        assert!(backfill.try_invoke().is_none());
        assert_eq!(account.unreserved.peak_of("upload-api"), 0);
        assert_eq!(api.pool().peak_of("upload-api"), 3);
        drop(held);
        assert!(api.try_invoke().is_some(), "its concurrency is given back");
        drop(pipeline);
        assert_eq!(account.unreserved.peak(), 7);
    }

    #[test]
    fn without_a_reservation_one_function_can_take_the_whole_pool() {
        let account = Account::new(4, 1, &[]).unwrap();
        let api = account.function("upload-api");
        let backfill = account.function("backfill");
        let _held: Vec<_> = (0..4).map(|_| api.try_invoke().unwrap()).collect();
        assert!(backfill.try_invoke().is_none());
        assert_eq!(backfill.throttles(), 1);
        assert_eq!(account.unreserved.peak_of("upload-api"), 4);
    }

    #[test]
    fn reservations_leave_the_minimum_unreserved() {
        assert!(Account::new(10, 5, &[("upload-api", 6)]).is_err());
        assert!(Account::new(10, 5, &[("upload-api", 5)]).is_ok());
        assert!(Account::new(10, 5, &[("upload-api", 0)]).is_err());
    }
}
