//! A precise timer for fixed-rate schedules ([`Timer`]).
//!
//! tokio's timer has a resolution of 1 ms: a task sleeping until a due
//! time wakes 0.5 to 1.5 ms after it. At a light load that is more than
//! the broker's own latency, and it would count in the latency "from
//! schedule" as if the broker had taken it. This timer wakes tasks within
//! tens of microseconds instead: one OS thread (not a tokio worker) keeps
//! the due times in a min-heap, parks until [`PARK_MARGIN`] before the
//! earliest (Linux adds up to 50 µs of timer slack to every sleep of an
//! ordinary thread, and the wake-up takes a few more), spins the rest of
//! the way, then wakes every task that is due.
//!
//! The machine is shared with the broker under test, so the spinning is
//! bounded twice: each spin by [`PARK_MARGIN`], and all of them together
//! by [`SPIN_SHARE`] of a core. Past that budget (dense schedules at high
//! rates) the thread parks all the way and wakes ~60 µs late, still far
//! better than 1 ms.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fmt;
use std::io;
use std::sync::atomic::{self, AtomicBool};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak, mpsc};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::procfs;

/// How long before a due time the thread stops parking and starts to
/// spin: the timer slack (50 µs) plus a typical wake-up of the thread.
const PARK_MARGIN: Duration = Duration::from_micros(80);
/// The share of one core the spinning may take on average.
const SPIN_SHARE: f64 = 0.05;
/// The most spinning saved up while the thread had none to do.
const SPIN_BURST: Duration = Duration::from_millis(5);
/// The timer thread's stack: it holds little.
const STACK: usize = 256 * 1024;

/// Wakes tasks at due times, to within tens of microseconds. Clones share
/// one thread, which ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Timer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("tid", &self.shared.tid.get()).finish_non_exhaustive()
    }
}

/// What the handles and the thread share.
struct Shared {
    state: Mutex<State>,
    /// Set when a sleep is registered before every other one: the thread
    /// stops spinning toward a later time and looks again.
    earlier: AtomicBool,
    /// The timer thread, to unpark.
    thread: Thread,
    /// Its Linux thread id, for its CPU time in `/proc`.
    tid: OnceLock<u32>,
}

/// The sleeps registered, earliest first, each with what wakes it (`W`).
#[derive(Debug)]
struct State<W = oneshot::Sender<()>> {
    heap: BinaryHeap<Reverse<Entry<W>>>,
    /// Breaks ties between equal due times: first registered, first woken.
    next_id: u64,
    /// The thread is gone (it panicked): sleeps fall back to tokio's timer.
    stopped: bool,
}

impl<W> Default for State<W> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), next_id: 0, stopped: false }
    }
}

/// One sleeping task.
#[derive(Debug)]
struct Entry<W> {
    due: Instant,
    id: u64,
    wake: W,
}

impl<W> PartialEq for Entry<W> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<W> Eq for Entry<W> {}

impl<W> PartialOrd for Entry<W> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<W> Ord for Entry<W> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.id).cmp(&(other.due, other.id))
    }
}

impl<W> State<W> {
    /// Registers a sleep until `due`; returns whether it is now the
    /// earliest. Once the thread is gone, `wake` is dropped at once.
    fn push(&mut self, due: Instant, wake: W) -> bool {
        if self.stopped {
            return false;
        }
        let earliest = self.heap.peek().is_none_or(|Reverse(first)| due < first.due);
        self.heap.push(Reverse(Entry { due, id: self.next_id, wake }));
        self.next_id = self.next_id.wrapping_add(1);
        earliest
    }

    /// Moves the wakers of every sleep due by `now` to `out`, earliest
    /// first; returns the next due time.
    fn take_due(&mut self, now: Instant, out: &mut Vec<W>) -> Option<Instant> {
        while let Some(first) = self.heap.peek_mut() {
            if first.0.due > now {
                return Some(first.0.due);
            }
            out.push(PeekMut::pop(first).0.wake);
        }
        None
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a sleep, and unparks the thread when it is the earliest.
    fn register(&self, due: Instant, wake: oneshot::Sender<()>) {
        if self.lock().push(due, wake) {
            self.earlier.store(true, atomic::Ordering::Release);
            self.thread.unpark();
        }
    }

    /// Wakes every task due now (outside the lock: a wake-up may make a
    /// system call); returns the next due time.
    fn fire(&self, woken: &mut Vec<oneshot::Sender<()>>) -> Option<Instant> {
        self.earlier.store(false, atomic::Ordering::Release);
        let next = self.lock().take_due(Instant::now(), woken);
        for wake in woken.drain(..) {
            // A task that gave its sleep up dropped the receiver.
            let _ = wake.send(());
        }
        next
    }

    /// Spins until `due`, or until an earlier sleep is registered.
    fn spin_until(&self, due: Instant) {
        while Instant::now() < due && !self.earlier.load(atomic::Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
}

impl Drop for Shared {
    /// The last handle is gone: the thread, parked maybe for good, must
    /// see it and end.
    fn drop(&mut self) {
        self.thread.unpark();
    }
}

impl Timer {
    /// Starts the timer's thread.
    pub(crate) fn new() -> io::Result<Self> {
        let (give, take) = mpsc::sync_channel::<Weak<Shared>>(1);
        let handle = thread::Builder::new()
            .name("stomp-load-timer".into())
            .stack_size(STACK)
            .spawn(move || {
                if let Ok(shared) = take.recv() {
                    run(&shared);
                }
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            earlier: AtomicBool::new(false),
            thread: handle.thread().clone(),
            tid: OnceLock::new(),
        });
        // The thread waits for it, so the channel is open.
        let _ = give.send(Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// Sleeps until `due`: returns at or after it, never before.
    pub(crate) async fn sleep_until(&self, due: Instant) {
        if Instant::now() >= due {
            return;
        }
        let (wake, woken) = oneshot::channel();
        self.shared.register(due, wake);
        if woken.await.is_err() {
            // The thread is gone: tokio's timer is late, not wrong.
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// The CPU time the timer's thread has used, in seconds; `None` when
    /// `/proc` does not tell.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        let tid = self.shared.tid.get()?;
        procfs::cpu_seconds(&format!("self/task/{tid}")).ok()
    }
}

/// How much the thread may still spin: [`SPIN_SHARE`] of the time passed,
/// at most [`SPIN_BURST`] saved up.
#[derive(Debug)]
struct SpinBudget {
    left: Duration,
    at: Instant,
}

impl SpinBudget {
    fn new() -> Self {
        Self { left: SPIN_BURST, at: Instant::now() }
    }

    /// Whether a spin of `wait` fits in the budget, refilled first.
    fn allows(&mut self, wait: Duration) -> bool {
        let now = Instant::now();
        self.left = (self.left + (now - self.at).mul_f64(SPIN_SHARE)).min(SPIN_BURST);
        self.at = now;
        wait <= self.left
    }

    /// Takes `spun` from the budget.
    fn spend(&mut self, spun: Duration) {
        self.left = self.left.saturating_sub(spun);
    }
}

/// The timer thread: until the last handle is dropped, wakes the tasks
/// due, then parks or spins until the next due time.
fn run(weak: &Weak<Shared>) {
    let _exit = Exit(weak);
    if let (Some(shared), Some(tid)) = (weak.upgrade(), own_tid()) {
        let _ = shared.tid.set(tid);
    }
    let (mut woken, mut budget) = (Vec::new(), SpinBudget::new());
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let Some(next) = shared.fire(&mut woken) else {
            drop(shared);
            thread::park();
            continue;
        };
        let wait = next.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            continue;
        }
        if wait <= PARK_MARGIN && budget.allows(wait) {
            let spinning = Instant::now();
            shared.spin_until(next);
            budget.spend(spinning.elapsed());
            continue;
        }
        // Dropped first: the last handle may go while this one parks.
        drop(shared);
        // Over the spin budget, all the way.
        thread::park_timeout(if wait > PARK_MARGIN { wait - PARK_MARGIN } else { wait });
    }
}

/// Ends the timer when its thread does: normally there is nothing left;
/// after a panic, the sleeps waiting are woken with an error (they fall
/// back to tokio's timer) and new ones are refused.
struct Exit<'a>(&'a Weak<Shared>);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            let mut state = shared.lock();
            state.stopped = true;
            state.heap.clear();
        }
    }
}

/// The calling thread's Linux id, from the `/proc/thread-self` link
/// (`PID/task/TID`).
fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_are_taken_in_due_order_and_never_early() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut state = State::<usize>::default();
        let earliest: Vec<bool> = [300, 100, 200, 100, 50]
            .into_iter()
            .enumerate()
            .map(|(sleep, us)| state.push(at(us), sleep))
            .collect();
        assert_eq!(earliest, [true, true, false, false, true]);
        let mut out = Vec::new();
        assert_eq!(state.take_due(at(49), &mut out), Some(at(50)));
        assert!(out.is_empty(), "nothing before its due time");
        assert_eq!(state.take_due(at(100), &mut out), Some(at(200)));
        // Earliest first; equal times in registration order.
        assert_eq!(out, [4, 1, 3]);
        assert_eq!(state.take_due(at(10_000), &mut out), None);
        assert_eq!(out, [4, 1, 3, 2, 0]);
        state.stopped = true;
        assert!(!state.push(at(1), 5), "refused once the thread is gone");
        assert!(state.heap.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_sleep_wakes_the_parked_thread() {
        let timer = Timer::new().unwrap();
        let late = timer.clone();
        let far = tokio::spawn(async move { late.sleep_until(far_future()).await });
        // The thread is now parked until ~10 s from now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let due = Instant::now() + Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(5), timer.sleep_until(due))
            .await
            .expect("the earlier sleep was not woken");
        assert!(Instant::now() >= due);
        assert!(!far.is_finished());
        far.abort();
    }

    fn far_future() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_sleepers_all_wake_and_none_early() {
        let timer = Timer::new().unwrap();
        let start = Instant::now();
        let tasks: Vec<_> = (0..2_000u64)
            .map(|i| {
                let timer = timer.clone();
                // Spread over 100 ms, out of order; some already due.
                let due = start + Duration::from_micros((i * 7_919) % 100_000);
                tokio::spawn(async move {
                    timer.sleep_until(due).await;
                    Instant::now().checked_duration_since(due)
                })
            })
            .collect();
        for task in tasks {
            let woke = tokio::time::timeout(Duration::from_secs(10), task).await;
            let late = woke.expect("a sleeper was never woken").unwrap();
            assert!(late.is_some(), "woken before its due time");
        }
    }

    /// Generous on purpose (a loaded machine must not fail it): tokio's
    /// timer has a median near 1 ms here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_wake_well_within_a_millisecond() {
        let timer = Timer::new().unwrap();
        let mut late = Vec::new();
        for i in 0..200u64 {
            let due = Instant::now() + Duration::from_micros(500 + i * 37 % 1_500);
            timer.sleep_until(due).await;
            late.push(Instant::now().checked_duration_since(due).expect("woken early"));
        }
        late.sort();
        assert!(late[100] < Duration::from_micros(500), "median lateness {:?}", late[100]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_last_handle_ends_the_thread() {
        let timer = Timer::new().unwrap();
        timer.sleep_until(Instant::now() + Duration::from_millis(1)).await;
        let tid = *timer.shared.tid.get().expect("the thread knows its id");
        let task = format!("/proc/self/task/{tid}");
        assert!(std::path::Path::new(&task).exists());
        assert!(timer.cpu_seconds().is_some());
        drop(timer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&task).exists() {
            assert!(Instant::now() < deadline, "the timer thread is still running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
