//! The client's address: the socket peer, or — only when the peer is a trusted proxy — the
//! nearest untrusted address of its `Forwarded` / `X-Forwarded-For` chain. A client cannot
//! spoof its address by sending these headers to the sidecar directly.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// CIDRs whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        // Walk from the nearest hop outwards; the first address we do not trust is the client.
        for ip in chain.iter().rev() {
            if !self.contains(*ip) {
                return *ip;
            }
        }
        chain.first().copied().unwrap_or(peer)
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The forwarding chain, client first: `Forwarded: for=` when present, else `X-Forwarded-For`.
/// Unparseable entries (`unknown`, obfuscated ids) are skipped.
pub fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(v.trim().trim_matches('"')))?
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_node(s.trim()))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn trusted() -> TrustedProxies {
        TrustedProxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ])
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let ip = trusted().client_ip(
            "203.0.113.5".parse().unwrap(),
            &h(&[("x-forwarded-for", "198.51.100.1")]),
        );
        assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_yields_nearest_untrusted_hop() {
        let headers = h(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3")]);
        let ip = trusted().client_ip("10.0.0.1".parse().unwrap(), &headers);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_wins_and_parses_ports_and_v6() {
        let headers = h(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.9",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        let ip = trusted().client_ip("127.0.0.1".parse().unwrap(), &headers);
        assert_eq!(ip, "2001:db8::7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_entries_are_skipped() {
        let headers = h(&[("x-forwarded-for", "unknown, not-an-ip, 198.51.100.4")]);
        let ip = trusted().client_ip("10.0.0.1".parse().unwrap(), &headers);
        assert_eq!(ip, "198.51.100.4".parse::<IpAddr>().unwrap());
    }
}
