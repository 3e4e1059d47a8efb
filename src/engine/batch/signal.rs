//! How far a batch has come ([`Phase`]), and the wake-up its followers wait on.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// How far a batch has come, for whoever waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Running,
    /// The answer condition is met (gather's first failure, wait's `return_when` or timeout).
    Answered,
    /// Every task ended.
    Finished,
}

/// How far a batch has come, and a wake-up for whoever follows it, without an allocation:
/// a watch channel was some 350 bytes, a good part of a small batch in flight.
pub(super) struct Signal {
    /// A [`Phase`]; moves forward only.
    phase: AtomicU8,
    /// Woken when the phase moves and after each burst of ended tasks.
    pub(super) changed: Notify,
}

impl Signal {
    pub(super) fn new(phase: Phase) -> Signal {
        Signal {
            phase: AtomicU8::new(phase as u8),
            changed: Notify::new(),
        }
    }

    pub(super) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Answered,
            _ => Phase::Finished,
        }
    }

    /// Resolves once the phase is `at` or later.
    pub(super) async fn reached(&self, at: Phase) {
        loop {
            // Registered before the phase is read, so a move in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.phase() >= at {
                return;
            }
            changed.await;
        }
    }
}

impl Signal {
    /// Moves the phase forward to `to` (never back), waking the followers if it moved.
    pub(super) fn advance(&self, to: Phase) {
        if self.phase.fetch_max(to as u8, Ordering::AcqRel) < to as u8 {
            self.changed.notify_waiters();
        }
    }

    /// Wakes the followers: tasks ended.
    pub(super) fn tell(&self) {
        self.changed.notify_waiters();
    }
}
