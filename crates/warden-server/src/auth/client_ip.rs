//! The client's address: the socket's, unless the socket is a trusted proxy,
//! in which case `X-Forwarded-For` is read from the right, past trusted
//! proxies, to the first address no proxy of ours vouches for.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// One `X-Forwarded-For` entry: a bare address, or `ip:port` /
/// `[v6]:port` as some proxies write it. Anything else is unreadable.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    // Each trusted hop vouches for the entry to its left. An entry that
    // cannot be read ends the walk: the last trusted hop is the client.
    let mut client = peer;
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return ip,
            None => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let h = headers("203.0.113.9, 10.0.0.2");
        let proxy = ip("10.0.0.1");
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.9"));
        let outsider = ip("198.51.100.1");
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
    }

    #[test]
    fn an_unreadable_entry_stops_the_walk() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // A spoofed left-most value cannot be reached past an entry the
        // proxy wrote in a form we cannot read.
        let h = headers("10.9.9.9, unknown");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        let h = headers("1.2.3.4, 203.0.113.7:51234");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.7"));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_ranges() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mapped = ip("::ffff:10.0.0.1");
        assert_eq!(
            client_ip(mapped, &headers("192.0.2.5"), &trusted),
            ip("192.0.2.5")
        );
        assert_eq!(
            client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[]),
            ip("192.0.2.1")
        );
    }
}
