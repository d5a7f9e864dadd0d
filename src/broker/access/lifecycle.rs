//! Broker-wide operations on users and vhosts: they change the access model and the runtime
//! objects together, and tell the connections concerned (RabbitMQ closes a deleted user's
//! connections with 320 `user 'u' is deleted`, a deleted vhost's with 320 `vhost 'v' is down`).

use super::VhostInfo;
use crate::broker::error::{BrokerError, BrokerResult};
use crate::broker::{Broker, ConnId, Outbound};
use crate::protocol::ReplyCode;

impl Broker {
    /// Creates or updates a vhost: its record and its runtime objects. True when it is new.
    pub fn put_vhost(&self, info: VhostInfo) -> BrokerResult<bool> {
        let name = info.name.clone();
        let created = self.access().put_vhost_info(info)?;
        self.ensure_vhost(&name);
        Ok(created)
    }

    /// Deletes a vhost: closes its connections (320), deletes its queues, exchanges,
    /// permissions, topic permissions and limits; false if there was none.
    pub fn delete_vhost(&self, name: &str) -> BrokerResult<bool> {
        let Some(vh) = self.vhost(name) else {
            return Ok(false);
        };
        self.close_where(
            |c| *c.vhost.read().unwrap_or_else(|e| e.into_inner()) == name,
            &format!("vhost '{name}' is down"),
        );
        for q in vh.queues() {
            // Acting as the owner, so exclusive queues go too.
            let owner = q.exclusive.unwrap_or(ConnId(0));
            match vh.delete_queue(&q.name, false, false, owner) {
                Ok(_) | Err(BrokerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for x in vh.exchanges() {
            if x.name.is_empty() || x.name.starts_with("amq.") {
                continue;
            }
            match vh.delete_exchange(&x.name, false) {
                Ok(()) | Err(BrokerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.forget_vhost(name);
        self.access().remove_vhost_info(name)?;
        Ok(true)
    }

    /// Deletes a user with its permissions and limits and closes its connections (320
    /// `user 'u' is deleted`, as RabbitMQ); false if there was none.
    pub fn delete_user(&self, name: &str) -> BrokerResult<bool> {
        if !self.access().remove_user(name)? {
            return Ok(false);
        }
        self.close_where(
            |c| *c.user.read().unwrap_or_else(|e| e.into_inner()) == name,
            &format!("user '{name}' is deleted"),
        );
        Ok(true)
    }

    fn close_where(&self, pick: impl Fn(&crate::broker::ConnectionInfo) -> bool, text: &str) {
        for c in self.connections() {
            if pick(&c) {
                let _ = c.mailbox.send(Outbound::Close {
                    code: ReplyCode::ConnectionForced,
                    text: text.to_string(),
                });
            }
        }
    }
}
