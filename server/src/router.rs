//! Who is online, and how to reach them.
//!
//! A [`Router`] maps each online device to the bounded queue of its
//! connection. The relay pushes into that queue and never waits on it: a full
//! queue means the device reads too slowly, so it is kicked with
//! `SLOW_CONSUMER` and its mail waits in its mailbox for the next login.
//! [`LocalRouter`] serves one process; a NATS router will serve a cluster
//! behind the same trait.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use spider_protocol::ErrorCode;
use spider_protocol::ServerFrame;
use spider_protocol::ids::{DeviceAddress, DeviceId, Seq, Timestamp, UserId};
use spider_protocol::message::{Envelope, Presence, PresenceStatus};
use tokio::sync::mpsc;

/// Something for one online device.
#[derive(Debug, Clone)]
pub(crate) enum Push {
    /// A stored envelope, now durable under `seq`.
    Deliver {
        /// Its mailbox position.
        seq: Seq,
        /// The envelope.
        envelope: Envelope,
    },
    /// A frame that is not stored (ephemeral, presence, prekeys low).
    Frame(ServerFrame),
}

/// How one connection is reached.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The connection's id, so that a stale connection cannot remove the
    /// route of the one that replaced it.
    pub(crate) conn: u64,
    /// Its bounded queue.
    pub(crate) tx: mpsc::Sender<Push>,
    /// Tells it to close with this code (capacity 1: one reason is enough).
    pub(crate) kick: mpsc::Sender<ErrorCode>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// Queued to the device's connection.
    Queued,
    /// The device is not connected here.
    Offline,
    /// The queue was full: the device was kicked.
    SlowConsumer,
}

/// Routing and presence, local or cluster-wide.
pub(crate) trait Router: Send + Sync + 'static {
    /// Routes a device to a connection, kicking any earlier connection of the
    /// same device. Returns whether the user was offline before.
    fn register(&self, dev: DeviceAddress, route: Route) -> bool;
    /// Removes a device's route if it is still this connection's. Returns
    /// whether the user is now offline.
    fn unregister(&self, dev: DeviceAddress, conn: u64, now: Timestamp) -> bool;
    /// Pushes to a device without waiting.
    fn push(&self, dev: DeviceAddress, push: Push) -> PushOutcome;
    /// The online devices of a user.
    fn online_devices(&self, user: UserId) -> Vec<DeviceId>;
    /// Records a user's chosen status.
    fn set_status(&self, user: UserId, status: PresenceStatus);
    /// A user's presence as others see it.
    fn presence(&self, user: UserId) -> Presence;
}

#[derive(Default)]
struct Inner {
    routes: HashMap<UserId, HashMap<DeviceId, Route>>,
    status: HashMap<UserId, PresenceStatus>,
    last_seen: HashMap<UserId, Timestamp>,
}

/// The router of a single relay process.
#[derive(Default)]
pub(crate) struct LocalRouter {
    inner: Mutex<Inner>,
}

impl LocalRouter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a few map operations that leave the maps
        // consistent at each step; a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Router for LocalRouter {
    fn register(&self, dev: DeviceAddress, route: Route) -> bool {
        let mut g = self.lock();
        let devices = g.routes.entry(dev.user).or_default();
        let was_offline = devices.is_empty();
        if let Some(old) = devices.insert(dev.device, route) {
            // The same device signed in again: the older connection goes.
            let _ = old.kick.try_send(ErrorCode::UNEXPECTED_FRAME);
        }
        was_offline
    }

    fn unregister(&self, dev: DeviceAddress, conn: u64, now: Timestamp) -> bool {
        let mut g = self.lock();
        let Some(devices) = g.routes.get_mut(&dev.user) else {
            return false;
        };
        if devices.get(&dev.device).is_some_and(|r| r.conn == conn) {
            devices.remove(&dev.device);
        }
        if devices.is_empty() {
            g.routes.remove(&dev.user);
            g.status.remove(&dev.user);
            g.last_seen.insert(dev.user, now);
            return true;
        }
        false
    }

    fn push(&self, dev: DeviceAddress, push: Push) -> PushOutcome {
        let mut g = self.lock();
        let Some(route) = g.routes.get(&dev.user).and_then(|d| d.get(&dev.device)) else {
            return PushOutcome::Offline;
        };
        match route.tx.try_send(push) {
            Ok(()) => PushOutcome::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = route.kick.try_send(ErrorCode::SLOW_CONSUMER);
                // Stop routing to it at once: later mail waits in the mailbox.
                if let Some(d) = g.routes.get_mut(&dev.user) {
                    d.remove(&dev.device);
                }
                PushOutcome::SlowConsumer
            }
            Err(mpsc::error::TrySendError::Closed(_)) => PushOutcome::Offline,
        }
    }

    fn online_devices(&self, user: UserId) -> Vec<DeviceId> {
        let g = self.lock();
        let mut v: Vec<DeviceId> = g
            .routes
            .get(&user)
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn set_status(&self, user: UserId, status: PresenceStatus) {
        let mut g = self.lock();
        if g.routes.contains_key(&user) {
            g.status.insert(user, status);
        }
    }

    fn presence(&self, user: UserId) -> Presence {
        let g = self.lock();
        if g.routes.get(&user).is_some_and(|d| !d.is_empty()) {
            match g.status.get(&user) {
                Some(PresenceStatus::Away) => Presence::Away,
                _ => Presence::Online,
            }
        } else {
            Presence::Offline {
                last_seen: g.last_seen.get(&user).copied(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use spider_protocol::message::Ping;

    use super::*;

    fn dev(d: u32) -> DeviceAddress {
        DeviceAddress {
            user: UserId::from_bytes([1; 16]),
            device: DeviceId(d),
        }
    }

    fn route(conn: u64, cap: usize) -> (Route, mpsc::Receiver<Push>, mpsc::Receiver<ErrorCode>) {
        let (tx, rx) = mpsc::channel(cap);
        let (kick, krx) = mpsc::channel(1);
        (Route { conn, tx, kick }, rx, krx)
    }

    #[test]
    fn a_full_queue_kicks_the_device_and_stops_routing_to_it() {
        let r = LocalRouter::new();
        let (rt, _rx, mut krx) = route(1, 1);
        assert!(r.register(dev(1), rt));
        let ping = || Push::Frame(ServerFrame::Ping(Ping { nonce: 0 }));
        assert_eq!(r.push(dev(1), ping()), PushOutcome::Queued);
        assert_eq!(r.push(dev(1), ping()), PushOutcome::SlowConsumer);
        assert_eq!(krx.try_recv().unwrap(), ErrorCode::SLOW_CONSUMER);
        assert_eq!(r.push(dev(1), ping()), PushOutcome::Offline);
    }

    #[test]
    fn a_replaced_connection_cannot_remove_its_successor() {
        let r = LocalRouter::new();
        let (a, _arx, mut akick) = route(1, 4);
        let (b, _brx, _bkick) = route(2, 4);
        r.register(dev(1), a);
        assert!(!r.register(dev(1), b));
        assert!(akick.try_recv().is_ok());
        assert!(!r.unregister(dev(1), 1, Timestamp(5)));
        assert_eq!(r.online_devices(dev(1).user), vec![DeviceId(1)]);
        assert!(r.unregister(dev(1), 2, Timestamp(5)));
        assert_eq!(
            r.presence(dev(1).user),
            Presence::Offline {
                last_seen: Some(Timestamp(5))
            }
        );
    }
}
