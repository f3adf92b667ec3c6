//! Which addresses a job's URL may make this node connect to.
//!
//! A job chooses its URLs, and the node fetches them with its own network position: a URL
//! naming a cloud's instance-metadata service (169.254.169.254 and its kin) would hand the
//! job the machine's credentials as an input it can publish. Those addresses are refused
//! whether the URL names them literally, through DNS, or through a redirect. Loopback and
//! private ranges stay allowed, as in Bacalhau: a devstack's or a lab's data server lives
//! there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why `ip` may not be fetched from, or `None` when it may.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_link_local() {
        Some("a link-local address (where clouds serve instance metadata and credentials)")
    } else if ip.octets()[0] == 0 || ip.is_broadcast() || ip.is_multicast() {
        Some("not a unicast host address")
    } else if ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud instance-metadata address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address (where clouds serve instance metadata and credentials)")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast host address")
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("a cloud instance-metadata address")
    } else {
        None
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_non_unicast_addresses_are_refused_and_the_rest_allowed() {
        for refused in [
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "100.100.100.200",
            "fe80::1",
            "::",
            "ff02::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = refused.parse().expect("ip");
            assert!(refused_address(ip).is_some(), "{refused} was allowed");
        }
        for allowed in ["127.0.0.1", "10.1.2.3", "192.168.1.1", "8.8.8.8", "::1", "2001:db8::1", "::ffff:10.0.0.1"] {
            let ip: IpAddr = allowed.parse().expect("ip");
            assert_eq!(refused_address(ip), None, "{allowed} was refused");
        }
    }
}
