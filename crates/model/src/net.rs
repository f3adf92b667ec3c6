//! Which addresses a node may be made to connect to by what others tell it (a job's URL, a
//! node's advertised API address): a cloud's instance-metadata service (169.254.169.254 and its
//! kin) would hand over the machine's credentials. Pure: callers check literals and resolved
//! addresses with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` may not be fetched from, or `None` when it may.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d) and NAT64
            // (64:ff9b::a.b.c.d) all reach the IPv4 address.
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                let compatible = seg[..6].iter().all(|s| *s == 0) && !(seg[6] == 0 && seg[7] <= 1);
                let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                (compatible || nat64).then(|| Ipv4Addr::from(((u32::from(seg[6])) << 16) | u32::from(seg[7])))
            });
            match embedded {
                Some(v4) => refused_v4(v4),
                None => refused_v6(v6),
            }
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_link_local() {
        Some("a link-local address (where clouds serve instance metadata and credentials)")
    } else if ip.octets()[0] == 0 || ip.is_broadcast() || ip.is_multicast() {
        Some("not a unicast host address")
    } else if ip == Ipv4Addr::new(100, 100, 100, 200) || ip == Ipv4Addr::new(168, 63, 129, 16) {
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
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        || ip == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
    {
        Some("a cloud instance-metadata address")
    } else {
        None
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
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "168.63.129.16",
            "fd20:ce::254",
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
