//! A consumer that follows the broker's links: it runs on the current live link,
//! starts over on the next one when that link (or its channel) ends, and stops on
//! shutdown. Every long-lived subscription of a role has this shape; only what it does
//! on one link differs.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Link};

/// Runs `consume_on` on every live link of `broker` in turn until `shutdown` or until
/// the broker handle is gone.
///
/// `consume_on` returns when its link closes, its consumer is cancelled or shutdown
/// comes. An error, or a return on a link that is still live (the broker cancelled
/// the consumer), marks the link broken so the broker reconnects and redeclares the
/// topology.
pub async fn follow_links<F, Fut>(
    broker: &Broker,
    what: &str,
    shutdown: &CancellationToken,
    mut consume_on: F,
) where
    F: FnMut(Arc<Link>) -> Fut,
    Fut: Future<Output = Result<(), lapin::Error>>,
{
    let mut links = broker.links();
    loop {
        let link = links
            .borrow_and_update()
            .clone()
            .filter(|link| !link.is_broken());
        if let Some(link) = link {
            let result = consume_on(link.clone()).await;
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Err(error) => {
                    tracing::warn!(error = %error, "{what} stopped; waiting for a new broker link");
                    link.report_broken();
                }
                // Ended on a live link without shutdown: the broker cancelled the
                // consumer (its queue was deleted). No new link would ever come, so
                // ask for one: reconnecting redeclares the topology, queue included.
                Ok(()) if !link.is_broken() => {
                    tracing::warn!("{what} was cancelled by the broker; reconnecting");
                    link.report_broken();
                }
                Ok(()) => {}
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            changed = links.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}
