//! confirm.select and the tx class (select, commit, rollback).

use crate::broker::ConfirmTo;
use crate::protocol::ReplyCode;
use crate::protocol::method::*;

use super::super::confirms::Confirms;
use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::{Channel, Tx, err};

impl Channel {
    pub(super) fn confirm_select(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ConfirmSelect,
    ) -> Result<(), AmqpError> {
        if self.tx.is_some() {
            return Err(err(
                self.id,
                ReplyCode::PreconditionFailed,
                "cannot switch from tx to confirm mode",
                ConfirmSelect::CLASS_ID,
                ConfirmSelect::METHOD_ID,
            ));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::new(ConfirmTo::new(self.id, ctx.mailbox.clone())));
        }
        if !m.nowait {
            ctx.send(self.id, &ConfirmSelectOk.into());
        }
        Ok(())
    }

    pub(super) fn tx_select(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        if self.confirms.is_some() {
            return Err(err(
                self.id,
                ReplyCode::PreconditionFailed,
                "cannot switch from confirm to tx mode",
                TxSelect::CLASS_ID,
                TxSelect::METHOD_ID,
            ));
        }
        if self.tx.is_none() {
            self.tx = Some(Tx::default());
        }
        ctx.send(self.id, &TxSelectOk.into());
        Ok(())
    }

    /// The open transaction, replaced by a fresh one; 406 when the channel is not transactional.
    fn take_tx(&mut self, class: u16, mid: u16) -> Result<Tx, AmqpError> {
        let Some(tx) = self.tx.take() else {
            return Err(err(
                self.id,
                ReplyCode::PreconditionFailed,
                "channel is not transactional",
                class,
                mid,
            ));
        };
        self.tx = Some(Tx::default());
        Ok(tx)
    }

    pub(super) fn tx_commit(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let tx = self.take_tx(TxCommit::CLASS_ID, TxCommit::METHOD_ID)?;
        for p in tx.publishes {
            self.route(ctx, p)?;
        }
        let mut settles = tx.settles;
        self.apply_settles(ctx, &mut settles)?;
        ctx.send(self.id, &TxCommitOk.into());
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let tx = self.take_tx(TxRollback::CLASS_ID, TxRollback::METHOD_ID)?;
        // Settlements are undone: the deliveries are unacked again.
        for (u, _) in tx.settles {
            let pos = self.unacked.partition_point(|x| x.tag < u.tag);
            self.unacked.insert(pos, u);
        }
        ctx.send(self.id, &TxRollbackOk.into());
        Ok(())
    }
}
