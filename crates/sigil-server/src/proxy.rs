//! The client's address behind reverse proxies (`trusted_proxies`).
//!
//! A connection from a trusted proxy names the client in its request's
//! `X-Forwarded-For` header, a list of addresses each proxy appends its own
//! peer to. The list is read from the right: every address that is itself a
//! trusted proxy is passed over, and the first that is not is the client
//! (the leftmost, if all are trusted). What a client writes into the header
//! itself stays on the left, behind the address its proxy appended, so it
//! cannot pose as another host. A connection from any other peer is its own
//! client, whatever its headers say.
//!
//! Parsing is bounded: at most [`MAX_HOPS`] entries are looked at, each at
//! most [`MAX_ENTRY`] bytes, and nothing is allocated; a header that does
//! not parse is refused (HTTP 400), never guessed at. The `Forwarded`
//! header (RFC 7239) and the PROXY protocol are not read.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderMap;
use sigil_core::config::IpNet;

/// The header.
pub(crate) const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Entries of `X-Forwarded-For` looked at, from the right: more proxies in
/// a row than this is a misconfiguration, or an attack.
pub(crate) const MAX_HOPS: usize = 16;

/// The longest entry: `[` an IPv6 address with a zone `]:65535`.
pub(crate) const MAX_ENTRY: usize = 64;

/// Why a trusted proxy's `X-Forwarded-For` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardedError {
    /// An entry is not an address (`ADDR`, `ADDR:PORT` or `[V6]:PORT`).
    #[error("an X-Forwarded-For entry is not an IP address")]
    Malformed,
    /// More than [`MAX_HOPS`] trusted proxies in a row.
    #[error("X-Forwarded-For lists more than {MAX_HOPS} trusted proxies")]
    TooManyHops,
}

/// The networks whose connections are trusted to name their client.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Whether connections from `ip` are a trusted proxy's.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client of a request from `peer`: `peer` itself unless it is a
    /// trusted proxy that names another in `X-Forwarded-For`. The port of
    /// a forwarded address is the one the header gives, or 0.
    pub(crate) fn client_addr(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<SocketAddr, ForwardedError> {
        if !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        let mut client = peer;
        let mut hops = 0;
        // Several header lines are one list, in order (RFC 9110 5.3).
        for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let line = line.to_str().map_err(|_| ForwardedError::Malformed)?;
            for entry in line.rsplit(',') {
                let entry = entry.trim_matches([' ', '\t']);
                if entry.is_empty() {
                    // `a,,b` and a trailing comma: empty list elements are
                    // allowed and mean nothing (RFC 9110 5.6.1).
                    continue;
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ForwardedError::TooManyHops);
                }
                client = parse_entry(entry).ok_or(ForwardedError::Malformed)?;
                if !self.trusts(client.ip()) {
                    return Ok(client);
                }
            }
        }
        Ok(client)
    }
}

/// `ADDR`, `V4:PORT`, `[V6]` or `[V6]:PORT`.
fn parse_entry(entry: &str) -> Option<SocketAddr> {
    if entry.len() > MAX_ENTRY {
        return None;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Some(v6) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return v6.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0));
    }
    entry.parse::<SocketAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("net")).collect())
    }

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(
                X_FORWARDED_FOR,
                HeaderValue::from_bytes(line).expect("header value"),
            );
        }
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    const PROXY: &str = "127.0.0.1:40000";

    #[test]
    fn untrusted_peers_are_their_own_clients() {
        let p = proxies(&["10.0.0.0/8"]);
        let forged = headers(&[b"203.0.113.9"]);
        assert_eq!(p.client_addr(addr(PROXY), &forged), Ok(addr(PROXY)));
        assert_eq!(
            TrustedProxies::default().client_addr(addr(PROXY), &forged),
            Ok(addr(PROXY))
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = addr(PROXY);
        let get = |lines: &[&[u8]]| p.client_addr(peer, &headers(lines));
        assert_eq!(get(&[b"203.0.113.9"]), Ok(addr("203.0.113.9:0")));
        // What the client wrote itself stays left of its real address.
        assert_eq!(
            get(&[b"198.51.100.1, 203.0.113.9"]),
            Ok(addr("203.0.113.9:0"))
        );
        // Trusted hops are passed over; several lines are one list.
        assert_eq!(
            get(&[b"198.51.100.1, 203.0.113.9", b"10.1.1.1 ,10.2.2.2"]),
            Ok(addr("203.0.113.9:0"))
        );
        // Ports and brackets.
        assert_eq!(get(&[b"203.0.113.9:5555"]), Ok(addr("203.0.113.9:5555")));
        assert_eq!(get(&[b"[2001:db8::1]:443"]), Ok(addr("[2001:db8::1]:443")));
        assert_eq!(get(&[b"[2001:db8::1]"]), Ok(addr("[2001:db8::1]:0")));
        assert_eq!(get(&[b"2001:db8::1"]), Ok(addr("[2001:db8::1]:0")));
        // All trusted: the leftmost. None: the proxy itself.
        assert_eq!(get(&[b"10.0.0.5, 10.0.0.6"]), Ok(addr("10.0.0.5:0")));
        assert_eq!(get(&[]), Ok(peer));
        assert_eq!(get(&[b" , ,"]), Ok(peer));
    }

    #[test]
    fn fail_malformed_forwarded_headers() {
        let p = proxies(&["127.0.0.1"]);
        let peer = addr(PROXY);
        let long = format!("{}1", "0".repeat(MAX_ENTRY));
        let many = vec!["127.0.0.1"; MAX_HOPS + 1].join(",");
        for bad in [
            &b"unknown"[..],
            b"203.0.113.9, _hidden",
            b"203.0.113.300",
            b"[2001:db8::1",
            b"1.2.3.4:99999",
            b"\xff\xfe",
            long.as_bytes(),
        ] {
            assert_eq!(
                p.client_addr(peer, &headers(&[bad])),
                Err(ForwardedError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            p.client_addr(peer, &headers(&[many.as_bytes()])),
            Err(ForwardedError::TooManyHops)
        );
        // Garbage left of the client is never looked at.
        assert_eq!(
            p.client_addr(peer, &headers(&[b"garbage, 203.0.113.9"])),
            Ok(addr("203.0.113.9:0"))
        );
    }
}
