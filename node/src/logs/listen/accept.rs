//! The accept loop that the TCP syslog and RELP listeners share: one task
//! per connection, at most [`MAX_CONNECTIONS`] at once (more wait in the
//! kernel's accept queue), ended when the spool stops.

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::MAX_CONNECTIONS;
use crate::logs::Inbox;

/// Accepts connections on `listener` and runs `conn` on each; `what`
/// names the protocol in the warning a failed connection leaves.
pub async fn serve<F, Fut>(
    source: String,
    listener: TcpListener,
    inbox: Inbox,
    what: &'static str,
    conn: F,
) where
    F: Fn(String, TcpStream, Inbox) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let task = conn(source.clone(), stream, inbox.clone());
                let source = source.clone();
                tokio::spawn(async move {
                    if let Err(e) = task.await {
                        tracing::warn!(
                            "logs.source `{source}`: {what} connection from {peer} ended: {e}"
                        );
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("logs.source `{source}`: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if inbox.is_closed() {
            return;
        }
    }
}
