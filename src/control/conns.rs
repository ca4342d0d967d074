//! The open connections of a server (the control socket, the HTTP interface): which
//! wait for their client and since when, so that one more than the cap closes the one
//! that has waited longest, and a connection at work on a request is never closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::task::AbortHandle;

/// The registry, shared by the accept loop and every connection's [`Ticket`].
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<Registry>>);

#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Slot>,
}

struct Slot {
    /// Waiting for the client since then; None while a request is being answered.
    idle_since: Option<Instant>,
    abort: Option<AbortHandle>,
}

/// What [`Connections::make_room`] did.
pub enum Room {
    /// Fewer than the cap were open.
    Free,
    /// The connection idle longest was closed.
    Made,
    /// Every connection is at work: the new one is to be told so and closed.
    Full,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Room for one more connection under `max`.
    pub fn make_room(&self, max: usize) -> Room {
        if self.lock().open.len() < max {
            return Room::Free;
        }
        // Taken out under the lock, aborted outside it: the task's ticket takes it too.
        let victim = self.lock().evict();
        match victim {
            Some(task) => {
                task.abort();
                Room::Made
            }
            None => Room::Full,
        }
    }

    /// A new connection's place, waiting for its client from now.
    pub fn admit(&self) -> Ticket {
        let mut r = self.lock();
        r.next = r.next.wrapping_add(1);
        let id = r.next;
        r.open.insert(
            id,
            Slot {
                idle_since: Some(Instant::now()),
                abort: None,
            },
        );
        Ticket {
            id,
            connections: self.clone(),
        }
    }

    /// The task serving connection `id`, so that it can be closed to make room.
    pub fn serving(&self, id: u64, task: AbortHandle) {
        if let Some(slot) = self.lock().open.get_mut(&id) {
            slot.abort = Some(task);
        }
    }
}

impl Registry {
    /// Takes out the connection that has waited longest for its client.
    fn evict(&mut self) -> Option<AbortHandle> {
        let id = self
            .open
            .iter()
            .filter(|(_, s)| s.abort.is_some())
            .filter_map(|(id, s)| s.idle_since.map(|t| (t, *id)))
            .min()?
            .1;
        self.open.remove(&id).and_then(|s| s.abort)
    }
}

/// A connection's place in the registry; gone with the connection's task.
pub struct Ticket {
    id: u64,
    connections: Connections,
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks the connection as waiting for its client (may be closed) or not.
    pub fn idle(&self, idle: bool) {
        if let Some(slot) = self.connections.lock().open.get_mut(&self.id) {
            slot.idle_since = idle.then(Instant::now);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_longest_idle_goes_and_busy_ones_stay() {
        let mut r = Registry::default();
        let now = Instant::now();
        let task = || Some(tokio::spawn(std::future::pending::<()>()).abort_handle());
        for (id, idle) in [
            (1, None),
            (2, Some(now)),
            (3, now.checked_sub(Duration::from_secs(3))),
            (4, now.checked_sub(Duration::from_secs(1))),
        ] {
            r.open.insert(
                id,
                Slot {
                    idle_since: idle,
                    abort: task(),
                },
            );
        }
        assert!(r.evict().is_some());
        assert!(!r.open.contains_key(&3), "idle longest");
        assert!(r.evict().is_some());
        assert!(!r.open.contains_key(&4));
        assert!(r.evict().is_some());
        assert!(r.evict().is_none(), "a connection at work is never evicted");
        assert!(r.open.contains_key(&1));
    }
}
