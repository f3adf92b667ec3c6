//! Input sources that fetch from servers outside the node: `urlDownload` (http and https).
//!
//! They implement `bacalhau_storage::InputProvider` like the local sources do, but live in a
//! crate of their own so that `storage` (and `compute` above it) never link an HTTP client:
//! the binary builds the client (with its TLS settings) and hands it in. The main type is
//! [`UrlSource`]; [`UrlSettings`] holds the node's limits for it.

mod guard;
mod url_source;

pub use guard::{GuardedResolver, refused_address};
pub use url_source::{UrlSettings, UrlSource};
