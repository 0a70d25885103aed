//! Which proxies in front of Tollgate are the operator's
//! (`TOLLGATE_TRUSTED_PROXIES`): a count, or the proxies' addresses and
//! networks. The client's address is read from `X-Forwarded-For` only as far
//! as trusted proxies wrote it; whatever stands further left came from the
//! client, who can write anything there.

use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedProxies {
    /// This many proxies each append the address they got the request from:
    /// the client is that many entries from the right. 0: the TCP peer.
    Count(usize),
    /// Proxies at these addresses or networks: starting from the TCP peer,
    /// every address in one of them is a proxy; the first that is not is the
    /// client.
    Networks(Vec<Network>),
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies::Count(0)
    }
}

/// An address with a prefix length (`10.0.0.0/8`, `2001:db8::/32`, or one
/// address, a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(u32::from(n) as u128, 32, self.prefix) == masked(u32::from(a) as u128, 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), 128, self.prefix) == masked(u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// `TOLLGATE_TRUSTED_PROXIES`: a number, or addresses and networks
    /// separated by commas.
    pub fn parse(s: &str) -> Option<TrustedProxies> {
        let s = s.trim();
        if let Ok(n) = s.parse::<usize>() {
            return Some(TrustedProxies::Count(n));
        }
        let networks: Option<Vec<Network>> = s.split(',').filter(|p| !p.trim().is_empty()).map(Network::parse).collect();
        networks.filter(|n| !n.is_empty()).map(TrustedProxies::Networks)
    }

    /// The client's address, given the TCP peer and the `X-Forwarded-For`
    /// entries in order.
    pub fn client(&self, peer: Option<IpAddr>, forwarded: &[&str]) -> Option<IpAddr> {
        match self {
            TrustedProxies::Count(0) => peer,
            TrustedProxies::Count(n) => {
                if forwarded.is_empty() {
                    return peer;
                }
                // Fewer entries than proxies: the request skipped one of
                // them; the left-most entry is the nearest to a client we
                // can name.
                let i = forwarded.len().saturating_sub(*n);
                forwarded[i].trim().parse().ok()
            }
            TrustedProxies::Networks(nets) => {
                let trusted = |ip: IpAddr| nets.iter().any(|n| n.contains(ip));
                let mut client = peer?;
                if !trusted(client) {
                    return Some(client);
                }
                for entry in forwarded.iter().rev() {
                    client = entry.trim().parse().ok()?;
                    if !trusted(client) {
                        return Some(client);
                    }
                }
                Some(client)
            }
        }
    }
}

/// What throttles count by: an IPv4 address, or an IPv6 address's /64 (one
/// customer's network; its host part is theirs to vary at will).
pub fn throttle_key(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(canonical) {
        Ok(IpAddr::V6(v6)) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(bits))
        }
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_name_the_proxies_and_the_first_other_address_is_the_client() {
        let p = TrustedProxies::parse("10.0.0.0/8, 192.0.2.1, 2001:db8::/32").unwrap();
        // Through two of ours: the entry before them.
        assert_eq!(p.client(Some(ip("10.1.2.3")), &["6.6.6.6", "203.0.113.7", "192.0.2.1"]), Some(ip("203.0.113.7")));
        // A peer that is not ours is the client, whatever the header says.
        assert_eq!(p.client(Some(ip("198.51.100.1")), &["203.0.113.7"]), Some(ip("198.51.100.1")));
        assert_eq!(p.client(Some(ip("2001:db8::5")), &["2001:db9::1"]), Some(ip("2001:db9::1")));
        assert_eq!(p.client(Some(ip("::ffff:10.0.0.9")), &["203.0.113.8"]), Some(ip("203.0.113.8")));
        // Garbage where an address should be: no client address.
        assert_eq!(p.client(Some(ip("10.0.0.1")), &["not-an-ip"]), None);
        assert_eq!(TrustedProxies::parse("2").unwrap(), TrustedProxies::Count(2));
        for bad in ["", "10.0.0.0/33", "::/129", "ten", "10.0.0.1/x", "10.0.0.1, ten"] {
            assert_eq!(TrustedProxies::parse(bad), None, "{bad}");
        }
        let all = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.client(Some(ip("10.0.0.1")), &["1.2.3.4", "5.6.7.8"]), Some(ip("1.2.3.4")));
    }

    #[test]
    fn ipv6_throttles_key_on_the_64() {
        assert_eq!(throttle_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(throttle_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(throttle_key("2001:db8:1:3::1"), throttle_key("2001:db8:1:2::1"));
        assert_eq!(throttle_key("203.0.113.7"), "203.0.113.7");
        assert_eq!(throttle_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(throttle_key("unknown"), "unknown");
    }
}
