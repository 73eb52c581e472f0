//! Clients of the services the worker calls (SPEC §2), each mapping every answer to a
//! small result or error enum the pipeline can act on without reading HTTP statuses:
//! [`backend`] (session exchange, disconnect), [`spritz`] (conversation upsert,
//! bootstrap), [`acp`] (the prompt over the agent's websocket) and [`slack`]
//! (`chat.postMessage`). [`http`] holds what they share: the pooled client they are
//! built with (which carries the `SPRITZ_SLACK_HTTP_TIMEOUT` timeout) and the one
//! function that joins a route onto a base URL that may carry a path.
//!
//! Errors never carry tokens or message text in their `Display`.

pub mod acp;
pub mod backend;
pub mod http;
#[cfg(test)]
mod silent_endpoint;
pub mod slack;
pub mod spritz;

pub use acp::{AcpClient, AcpError};
pub use backend::{BackendClient, BackendError, ChannelSession, Exchange, ProviderAuth};
pub use slack::{SlackClient, SlackError};
pub use spritz::{Bootstrap, Conversation, ConversationUpsert, SpritzClient, SpritzError};
