//! Which addresses a job's URL may make this node connect to.
//!
//! A job chooses its URLs, and the node fetches them with its own network position: a URL
//! naming a cloud's instance-metadata service (169.254.169.254 and its kin) would hand the
//! job the machine's credentials as an input it can publish. Those addresses are refused
//! whether the URL names them literally, through DNS, or through a redirect. Loopback and
//! private ranges stay allowed, as in Bacalhau: a devstack's or a lab's data server lives
//! there.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub use bacalhau_model::refused_address;

/// A host name that resolves only to refused addresses.
#[derive(Debug)]
pub struct AddressRefused(String);

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressRefused {}

/// The system resolver, keeping only the addresses [`refused_address`] allows: a host name
/// that resolves to nothing else fails to connect, saying why.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| refused_address(a.ip()).is_none()).collect();
            if allowed.is_empty()
                && let Some(first) = found.first()
            {
                let why = refused_address(first.ip()).unwrap_or("refused");
                return Err(Box::new(AddressRefused(format!(
                    "{host} resolves to {}, {why}: this node does not download from there",
                    first.ip()
                ))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// `builder` with the guard on: every name resolved through [`GuardedResolver`], and no proxy
/// from the environment (a proxy would resolve names itself, past the guard).
pub fn guarded(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.dns_resolver(GuardedResolver).no_proxy()
}
