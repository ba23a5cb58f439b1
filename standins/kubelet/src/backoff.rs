//! Crash-loop back-off, the kubelet's algorithm (client-go flowcontrol.Backoff as used by
//! kuberuntime's doBackOff): the first restart is immediate, then 10s, 20s, 40s ... capped at
//! 5m; the entry expires (back to the base) once a container ran 2 x cap (10 min) before exiting.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct BackOff {
    base: Duration,
    max: Duration,
    entry: Option<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

impl BackOff {
    pub fn new(base: Duration, max: Duration) -> Self {
        BackOff {
            base,
            max: max.max(base),
            entry: None,
        }
    }

    fn expired(&self, entry: &Entry, event: SystemTime) -> bool {
        event
            .duration_since(entry.last_update)
            .is_ok_and(|d| d > self.max * 2)
    }

    /// When a container that finished at `finished` may be restarted (`None`: right away).
    /// Mirrors `IsInBackOffSince`: in back-off while `now - finished < backoff`.
    pub fn wait_until(&self, finished: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let entry = self.entry.as_ref()?;
        if self.expired(entry, finished) {
            return None;
        }
        let until = finished + entry.backoff;
        (now < until).then_some(until)
    }

    /// The current back-off (what the kubelet prints in "back-off 20s restarting ...").
    pub fn current(&self) -> Duration {
        self.entry.map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Records a restart of a container that finished at `finished` (`Backoff.Next`).
    pub fn next(&mut self, finished: SystemTime) {
        let backoff = match self.entry {
            Some(e) if !self.expired(&e, finished) => (e.backoff * 2).min(self.max),
            _ => self.base,
        };
        self.entry = Some(Entry {
            backoff,
            last_update: finished,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_sequence() {
        let s = Duration::from_secs;
        let mut b = BackOff::new(s(10), s(300));
        let t0 = SystemTime::UNIX_EPOCH + s(1_000_000);
        // First exit: restart right away, and the back-off becomes 10s.
        assert_eq!(b.wait_until(t0, t0), None);
        b.next(t0);
        let t1 = t0 + s(1);
        assert_eq!(b.wait_until(t1, t1), Some(t1 + s(10)));
        assert_eq!(b.wait_until(t1, t1 + s(10)), None);
        b.next(t1);
        assert_eq!(b.current(), s(20));
        let mut t = t1;
        for _ in 0..10 {
            t += s(1);
            b.next(t);
        }
        assert_eq!(b.current(), s(300));
        // A container that ran more than 10 minutes starts over.
        let late = t + s(601);
        assert_eq!(b.wait_until(late, late), None);
        b.next(late);
        assert_eq!(b.current(), s(10));
    }
}
