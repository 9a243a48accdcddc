//! The embedded transport: batches travel over an in-process channel to an auditor
//! running in the same process, which confirms each one after its store committed it.
//! This is what lets `auditlog up` run the whole system with no broker. Both halves
//! live here: [`EmbeddedTransport`] is the producers' [`Transport`], and
//! [`EmbeddedReceiver`] the auditor's [`Inbox`].

use async_trait::async_trait;
use auditlog_event::DataEvent;
use tokio::sync::{mpsc, oneshot};

use crate::{Inbox, InboxMessage, Transport, TransportError};

/// Creates a connected transport/receiver pair holding at most `capacity` batches
/// in flight.
pub fn channel(capacity: usize) -> (EmbeddedTransport, EmbeddedReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (
        EmbeddedTransport { sender },
        EmbeddedReceiver {
            receiver,
            principal: DEFAULT_PRINCIPAL.into(),
        },
    )
}

/// Who the batches of a channel come from unless [`EmbeddedReceiver::sent_by`]
/// names them: code in the auditor's own process.
const DEFAULT_PRINCIPAL: &str = "services/in-process";

/// Producer side of the embedded transport.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {
    sender: mpsc::Sender<Delivery>,
}

/// Auditor side of the embedded transport.
#[derive(Debug)]
pub struct EmbeddedReceiver {
    receiver: mpsc::Receiver<Delivery>,
    /// Who the batches come from (see [`EmbeddedReceiver::sent_by`]).
    principal: String,
}

/// One batch handed to the auditor, to be acknowledged once stored.
#[derive(Debug)]
pub struct Delivery {
    pub events: Vec<DataEvent>,
    reply: oneshot::Sender<Result<(), String>>,
    /// Who sent it, stamped by the receiver.
    principal: String,
}

impl Delivery {
    /// The batch is committed: the producer may forget it.
    pub fn ack(self) {
        let _ = self.reply.send(Ok(()));
    }

    /// The batch was not stored; the producer keeps it and retries.
    pub fn nack(self, reason: String) {
        let _ = self.reply.send(Err(reason));
    }

    /// Whether the producer stopped waiting for this batch's confirmation (it then
    /// counts the batch as not delivered).
    pub fn producer_gave_up(&self) -> bool {
        self.reply.is_closed()
    }
}

impl EmbeddedReceiver {
    /// The same receiver, recording its batches as delivered by `principal`
    /// (e.g. `services/api`): the channel is in-process, so the process that
    /// made it knows who holds the sending half.
    pub fn sent_by(mut self, principal: &str) -> Self {
        self.principal = principal.to_owned();
        self
    }

    /// The next batch, or `None` once every transport handle is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let mut delivery = self.receiver.recv().await?;
        delivery.principal.clone_from(&self.principal);
        Some(delivery)
    }

    /// A batch that is already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let mut delivery = self.receiver.try_recv().ok()?;
        delivery.principal.clone_from(&self.principal);
        Some(delivery)
    }

    /// Stops accepting new batches; those already sent can still be received.
    pub fn close(&mut self) {
        self.receiver.close();
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
        let (reply, confirmation) = oneshot::channel();
        self.sender
            .send(Delivery {
                events: batch.to_vec(),
                reply,
                principal: String::new(),
            })
            .await
            .map_err(|_| TransportError::Unavailable("the auditor is not running".into()))?;
        match confirmation.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(TransportError::Refused(reason)),
            Err(_) => Err(TransportError::Unavailable(
                "the auditor stopped before confirming".into(),
            )),
        }
    }
}

#[async_trait]
impl Inbox for EmbeddedReceiver {
    type Message = Delivery;

    async fn recv(&mut self) -> Option<Delivery> {
        EmbeddedReceiver::recv(self).await
    }

    async fn try_recv(&mut self) -> Option<Delivery> {
        EmbeddedReceiver::try_recv(self)
    }

    async fn close(mut self) {
        EmbeddedReceiver::close(&mut self);
    }
}

#[async_trait]
impl InboxMessage for Delivery {
    fn take_events(&mut self) -> Vec<DataEvent> {
        std::mem::take(&mut self.events)
    }

    async fn ack(self) {
        Delivery::ack(self);
    }

    fn sender(&self) -> crate::Sender {
        crate::Sender {
            principal: self.principal.clone(),
            via: "embedded",
        }
    }

    fn abandoned(&self) -> bool {
        self.producer_gave_up()
    }
}
