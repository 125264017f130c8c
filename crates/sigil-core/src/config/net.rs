//! Values about the network and about operating a server: address ranges
//! (`trusted_proxies`), listening addresses (`metrics_addr`) and what a
//! reload does to sessions of removed keys (`revoked_sessions`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare
/// address is a network of that one address (`/32` or `/128`).
///
/// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is matched as the IPv4
/// address it holds, so a dual-stack listener sees the same ranges.
///
/// ```
/// use sigil_core::config::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.20.30.40".parse()?));
/// assert!(net.contains("::ffff:10.1.1.1".parse()?));
/// assert!(!net.contains("11.0.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network's first address (host bits cleared).
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not an [`IpNet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpNetError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    Address,
    /// The part after `/` is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// 32 or 128.
        max: u8,
    },
}

impl IpNet {
    /// The network of `addr` with `prefix` leading bits; the host bits of
    /// `addr` are cleared. `None` if `prefix` is over the address's length.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        if prefix > max_prefix(addr) {
            return None;
        }
        // A network within the IPv4-mapped range is that IPv4 network.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => v6
                .to_ipv4_mapped()
                .map_or((addr, prefix), |v4| (IpAddr::V4(v4), prefix - 96)),
            _ => (addr, prefix),
        };
        Some(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let within =
            |ip: IpAddr| ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr;
        within(ip) || within(unmap(ip))
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(text: &str) -> Result<IpNet, IpNetError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| IpNetError::Address)?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            // Digits only: no sign, no spaces, at most three of them.
            Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or(IpNetError::Prefix { max })?,
            Some(_) => return Err(IpNetError::Prefix { max }),
        };
        IpNet::new(addr, prefix).ok_or(IpNetError::Prefix { max })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `ip` with all but its first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// Checks a listening address, `HOST:PORT` or `[IPV6]:PORT`, or a bare
/// `PORT` (then the host is `127.0.0.1`), and returns it as `HOST:PORT`.
/// The host is not resolved here: a name is checked when the server binds.
pub(super) fn listen_addr(text: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "HOST:PORT, [IPV6]:PORT or a port number";
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok();
    if port_ok(text) {
        return Ok(format!("127.0.0.1:{text}"));
    }
    let (host, port) = text.rsplit_once(':').ok_or(EXPECTED)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if host_ok && port_ok(port) {
        Ok(text.to_owned())
    } else {
        Err(EXPECTED)
    }
}

/// What a reload of `authorized_keys` does to the open sessions of a key it
/// removed (`revoked_sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RevokedSessions {
    /// Close them at once (the default).
    #[default]
    Close,
    /// Keep them until they end on their own (idle timeout, or the client
    /// closes); only new handshakes are refused.
    Keep,
}

impl RevokedSessions {
    /// Every choice.
    pub const ALL: [RevokedSessions; 2] = [RevokedSessions::Close, RevokedSessions::Keep];

    /// The name as written in a config: `close` or `keep`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevokedSessions::Close => "close",
            RevokedSessions::Keep => "keep",
        }
    }

    /// Reads a name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<RevokedSessions> {
        RevokedSessions::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for RevokedSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn networks_contain_their_addresses() {
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("10.1.2.3/8").contains(ip("10.255.0.1")));
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("::/0").contains(ip("::ffff:1.2.3.4")));
        // Mapped addresses count as IPv4, both ways.
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.9.9.9")));
        assert_eq!(net("::1").prefix(), 128);
    }

    #[test]
    fn fail_bad_networks() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "1.2.3.4/40".parse::<IpNet>(),
            Err(IpNetError::Prefix { max: 32 })
        );
        assert_eq!("x".parse::<IpNet>(), Err(IpNetError::Address));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_addr("9100").as_deref(), Ok("127.0.0.1:9100"));
        assert_eq!(listen_addr("0.0.0.0:9100").as_deref(), Ok("0.0.0.0:9100"));
        assert_eq!(listen_addr("[::1]:0").as_deref(), Ok("[::1]:0"));
        assert_eq!(
            listen_addr("metrics.local:80").as_deref(),
            Ok("metrics.local:80")
        );
        for bad in [
            "", ":", "host:", ":80", "::1:80", "[::1]", "[x]:80", "a b:80", "h:65536", "h:-1",
            "99999",
        ] {
            assert!(listen_addr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revoked_sessions_names() {
        for c in RevokedSessions::ALL {
            assert_eq!(RevokedSessions::from_name(c.as_str()), Some(c));
        }
        assert_eq!(
            RevokedSessions::from_name("KEEP"),
            Some(RevokedSessions::Keep)
        );
        assert_eq!(RevokedSessions::from_name("drop"), None);
    }
}
