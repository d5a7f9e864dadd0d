//! Frames of an open connection: heartbeats, connection-class methods on channel 0, channel
//! methods (channel.open/close handled here, the rest dispatched to the channel) and content
//! frames, which the channel's assembler turns into publishes.

use super::*;

impl Connection {
    pub(super) fn running(&mut self, frame: Frame, now: Now) -> Result<(), AmqpError> {
        let (is_ack, is_publish) = match &frame {
            Frame::Method { method, .. } => (
                matches!(method, Method::BasicAck(_)),
                matches!(method, Method::BasicPublish(_)),
            ),
            Frame::Header { .. } | Frame::Body { .. } => (false, true),
            Frame::Heartbeat => (false, false),
        };
        // Whatever else the client sends sees every earlier publish pushed and ack applied
        // (only one of the two can be pending: each kind of frame flushes the other).
        if !is_publish {
            self.flush_publishes();
        }
        if is_ack {
            self.acks_pending = true;
        } else {
            self.flush_acks();
        }
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method, now),
            Frame::Method { channel, method } => self.channel_method(channel, method),
            Frame::Header { channel, header } => {
                self.block_publisher();
                self.content_header(channel, header)
            }
            Frame::Body { channel, payload } => {
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return Err(expected_method_frame());
                };
                if ch.closing {
                    return Ok(());
                }
                match ch.assembler.body(payload)? {
                    Some(p) => self.with_channel(channel, |ch, ctx| ch.publish(ctx, p)),
                    None => Ok(()),
                }
            }
        }
    }

    fn connection_method(&mut self, method: Method, now: Now) -> Result<(), AmqpError> {
        match method {
            Method::ConnectionClose(m) => {
                tracing::info!(
                    conn = self.info.id.0,
                    peer = %self.info.peer,
                    user = %self.user_name(),
                    vhost = %self.vhost_name(),
                    code = m.reply_code,
                    text = %m.reply_text,
                    "connection closed by client"
                );
                self.close_ok(now);
                Ok(())
            }
            Method::ConnectionCloseOk(_) => Ok(()),
            Method::ConnectionUpdateSecret(_) => {
                encode_method(0, &ConnectionUpdateSecretOk.into(), self.out.buf());
                Ok(())
            }
            // RabbitMQ's answer to any other method on channel 0 (basic.publish,
            // channel.open, a second connection.open...).
            m => Err(AmqpError::connection(
                ReplyCode::ChannelError,
                "unexpected method in connection state running",
            )
            .on(m.class_id(), m.method_id())),
        }
    }

    fn channel_method(&mut self, channel: u16, method: Method) -> Result<(), AmqpError> {
        let (class, mid) = (method.class_id(), method.method_id());
        if let Some(ch) = self.channels.get(&channel)
            && !ch.closing
            && !ch.assembler.is_idle()
        {
            // The channel's content is incomplete: RabbitMQ's assembler refuses any method.
            return Err(ch.assembler.unexpected_frame());
        }
        match method {
            Method::ChannelOpen(_) => {
                if channel > self.channel_max {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format_args!(
                            "channel number {channel} exceeds the negotiated channel_max {}",
                            self.channel_max
                        ),
                    )
                    .on(class, mid));
                }
                if self.channels.contains_key(&channel) {
                    return Err(AmqpError::connection(
                        ReplyCode::ChannelError,
                        "second 'channel.open' seen",
                    )
                    .on(class, mid));
                }
                let slot = self
                    .broker
                    .access()
                    .open_channel(self.user_name())
                    .map_err(|t| AmqpError::connection(ReplyCode::NotAllowed, t).on(class, mid))?;
                self.channels.insert(channel, Channel::new(channel, slot));
                self.info.channel_changed(channel, true);
                encode_method(channel, &open_ok(), self.out.buf());
                return Ok(());
            }
            Method::ChannelClose(_) => {
                if !self.channels.contains_key(&channel) {
                    return Err(AmqpError::connection(
                        ReplyCode::ChannelError,
                        "expected 'channel.open'",
                    )
                    .on(class, mid));
                }
                let cleaned = self.cleanup_channel(channel, false);
                encode_method(channel, &ChannelCloseOk.into(), self.out.buf());
                return cleaned;
            }
            Method::ChannelCloseOk(_) => {
                if self.channels.get(&channel).is_some_and(|c| c.closing) {
                    self.channels.remove(&channel);
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(ch) = self.channels.get(&channel) else {
            return Err(
                AmqpError::connection(ReplyCode::ChannelError, "expected 'channel.open'")
                    .on(class, mid),
            );
        };
        if ch.closing {
            return Ok(());
        }
        if class == 10 {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("connection method on channel {channel}"),
            )
            .on(class, mid));
        }
        self.with_channel(channel, |ch, ctx| ch.handle_method(ctx, method))
    }

    fn content_header(&mut self, channel: u16, header: ContentHeader) -> Result<(), AmqpError> {
        let max = u64::from(self.broker.limits().max_message_size);
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(expected_method_frame());
        };
        if ch.closing {
            return Ok(());
        }
        let size = header.body_size;
        if size > max && !ch.assembler.is_idle() {
            ch.assembler.reset();
            return Err(AmqpError::channel(
                channel,
                ReplyCode::PreconditionFailed,
                format_args!("message size {size} is larger than configured max size {max}"),
            )
            .on(60, 40));
        }
        match ch.assembler.header(header)? {
            Some(p) => self.with_channel(channel, |ch, ctx| ch.publish(ctx, p)),
            None => Ok(()),
        }
    }
}
