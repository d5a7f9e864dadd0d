//! Counting connections per vhost and per user, and channels per user, against their limits.
//! Admission checks and counts under one short lock, so two connections racing for the last
//! slot cannot both get it; a slot gives its place back when dropped, so a connection or
//! channel that ends any way at all is uncounted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The counts.
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    vhost_connections: HashMap<Arc<str>, u64>,
    user_connections: HashMap<Arc<str>, u64>,
    user_channels: HashMap<Arc<str>, u64>,
}

fn bump(map: &mut HashMap<Arc<str>, u64>, key: &Arc<str>) {
    *map.entry(Arc::clone(key)).or_default() += 1;
}

fn unbump(map: &mut HashMap<Arc<str>, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Tracking {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection of `user` to `vhost` unless a limit is reached; `check` runs under
    /// the lock with the current counts (vhost, user) and returns the refusal text.
    pub(crate) fn admit_connection(
        self: &Arc<Self>,
        user: &str,
        vhost: &str,
        check: impl FnOnce(u64, u64) -> Result<(), String>,
    ) -> Result<ConnectionSlot, String> {
        let (user, vhost): (Arc<str>, Arc<str>) = (Arc::from(user), Arc::from(vhost));
        let mut c = self.counts();
        let nv = c.vhost_connections.get(&vhost).copied().unwrap_or(0);
        let nu = c.user_connections.get(&user).copied().unwrap_or(0);
        check(nv, nu)?;
        bump(&mut c.vhost_connections, &vhost);
        bump(&mut c.user_connections, &user);
        Ok(ConnectionSlot {
            tracking: Arc::clone(self),
            user,
            vhost,
        })
    }

    /// Admits a channel of `user` unless `limit` channels are open.
    pub(crate) fn admit_channel(
        self: &Arc<Self>,
        user: &str,
        limit: Option<u64>,
    ) -> Result<ChannelSlot, u64> {
        let user: Arc<str> = Arc::from(user);
        let mut c = self.counts();
        if let Some(limit) = limit
            && c.user_channels.get(&user).copied().unwrap_or(0) >= limit
        {
            return Err(limit);
        }
        bump(&mut c.user_channels, &user);
        Ok(ChannelSlot {
            tracking: Arc::clone(self),
            user,
        })
    }

    /// Open connections of `user` (management, tests).
    pub(crate) fn user_connections(&self, user: &str) -> u64 {
        self.counts()
            .user_connections
            .get(user)
            .copied()
            .unwrap_or(0)
    }

    /// Open channels of `user`.
    pub(crate) fn user_channels(&self, user: &str) -> u64 {
        self.counts().user_channels.get(user).copied().unwrap_or(0)
    }
}

/// A counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    tracking: Arc<Tracking>,
    user: Arc<str>,
    vhost: Arc<str>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.tracking.counts();
        unbump(&mut c.vhost_connections, &self.vhost);
        unbump(&mut c.user_connections, &self.user);
    }
}

/// A counted channel; uncounted when dropped.
#[derive(Debug)]
pub struct ChannelSlot {
    tracking: Arc<Tracking>,
    user: Arc<str>,
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        unbump(&mut self.tracking.counts().user_channels, &self.user);
    }
}
