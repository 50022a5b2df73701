//! Egress checks: which addresses an upstream connection may go to.
//!
//! Two paths reach an address. A host name goes through [`EgressResolver`], which drops every
//! restricted address not covered by `[egress] allow_private` before reqwest ever sees it, so
//! the address connected to is the address checked (no DNS rebinding between check and
//! connect). An IP-literal host skips reqwest's resolver, so [`check_literal_host`] checks it
//! before anything is sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

use crate::error::{Error, ErrorKind, Result};

/// Whether an address is refused by default (unless `[egress] allow_private` covers it).
///
/// Refused IPv4: `0.0.0.0/8` (unspecified, "this network"), `10/8`, `100.64/10` (CGNAT),
/// `127/8`, `169.254/16` (link-local, including the `169.254.169.254` metadata endpoint),
/// `172.16/12`, `192.0.0/24`, `192.0.2/24`, `192.168/16`, `198.18/15`, `198.51.100/24`,
/// `203.0.113/24`, and everything from `224/4` up (multicast, reserved, broadcast).
///
/// Refused IPv6: `::`, `::1`, `fc00::/7`, `fe80::/10`, `fec0::/10`, `ff00::/8`, `100::/64`,
/// `2001:db8::/32`, `3fff::/20`, `64:ff9b:1::/48`; and addresses that embed an IPv4 address
/// (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by the embedded IPv4 address.
///
/// # Examples
///
/// ```
/// use outloop_core::http::is_restricted;
/// assert!(is_restricted("169.254.169.254".parse().unwrap()));
/// assert!(is_restricted("::ffff:127.0.0.1".parse().unwrap()));
/// assert!(!is_restricted("93.184.216.34".parse().unwrap()));
/// ```
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_restricted(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_restricted(v4),
            None => v6_restricted(v6),
        },
    }
}

fn v4_restricted(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || a == 10
        || a == 127
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 169 && b == 254)
        || (a == 172 && (b & 0xf0) == 16)
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

fn v6_restricted(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xff00) == 0xff00
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0)
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001)
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let zero = |r: std::ops::Range<usize>| s[r].iter().all(|&x| x == 0);
    if zero(0..5) && s[5] == 0xffff {
        // ::ffff:a.b.c.d, IPv4-mapped
        Some(tail())
    } else if zero(0..6) {
        // ::a.b.c.d, IPv4-compatible (also `::` and `::1`, which land in 0.0.0.0/8)
        Some(tail())
    } else if zero(0..4) && s[4] == 0xffff && s[5] == 0 {
        // ::ffff:0:a.b.c.d, SIIT
        Some(tail())
    } else if s[0] == 0x0064 && s[1] == 0xff9b && zero(2..6) {
        // 64:ff9b::a.b.c.d, NAT64 well-known prefix
        Some(tail())
    } else if s[0] == 0x2002 {
        // 2002:AABB:CCDD::/48, 6to4
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

/// Whether `ip` may be connected to: not restricted, or covered by `allow` (directly or through
/// the IPv4 address it embeds).
pub(crate) fn egress_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    if !is_restricted(ip) || allow.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    match ip {
        IpAddr::V6(v6) => {
            embedded_v4(v6).is_some_and(|v4| allow.iter().any(|n| n.contains(&IpAddr::V4(v4))))
        }
        IpAddr::V4(_) => false,
    }
}

/// The error carried through reqwest when a host resolves only to refused addresses; found
/// again by walking the error's sources.
#[derive(Debug)]
pub(crate) struct EgressRefused {
    pub(crate) host: String,
}

impl fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "egress to {} refused: resolves only to private/loopback/link-local addresses; add it to [egress] allow_private",
            self.host
        )
    }
}

impl std::error::Error for EgressRefused {}

impl EgressRefused {
    pub(crate) fn into_error(self) -> Error {
        Error::new(ErrorKind::SafetyRefused, self.to_string())
    }
}

/// A reqwest resolver that resolves with the system resolver (tokio's `lookup_host`) and keeps
/// only the addresses egress allows.
#[derive(Debug, Clone)]
pub(crate) struct EgressResolver {
    pub(crate) allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| egress_allowed(a.ip(), &allow))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(EgressRefused { host }) as _);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses a URL whose host is an IP literal that egress does not allow. Host names pass here;
/// [`EgressResolver`] checks them at connect time.
///
/// # Errors
///
/// [`ErrorKind::SafetyRefused`] naming the host; [`ErrorKind::InvalidParameter`] when the URL
/// has no host.
pub(crate) fn check_literal_host(url: &Url, allow: &[IpNet]) -> Result<()> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(_)) => return Ok(()),
        None => {
            return Err(Error::new(
                ErrorKind::InvalidParameter,
                "the request URL has no host",
            ));
        }
    };
    if egress_allowed(ip, allow) {
        Ok(())
    } else {
        let host = url.host_str().unwrap_or_default().to_owned();
        Err(EgressRefused { host }.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_table() {
        let cases: &[(&str, bool)] = &[
            // IPv4
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("10.0.0.1", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("172.15.255.255", false),
            ("192.168.1.1", true),
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("93.184.216.34", false),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            // IPv6
            ("::", true),
            ("::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2001:db8::1", true),
            ("3fff::1", true),
            ("100::1", true),
            ("64:ff9b:1::1", true),
            ("2606:4700:4700::1111", false),
            ("2001:4860:4860::8888", false),
            // embedded IPv4
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:93.184.216.34", false),
            ("::127.0.0.1", true),
            ("::10.0.0.1", true),
            ("::ffff:0:127.0.0.1", true),
            ("64:ff9b::10.0.0.1", true),
            ("64:ff9b::169.254.169.254", true),
            ("64:ff9b::93.184.216.34", false),
            ("2002:7f00:1::", true),
            ("2002:a9fe:a9fe::1", true),
            ("2002:5db8:d822::1", false),
        ];
        for (text, want) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_restricted(ip), *want, "{text}");
        }
    }

    #[test]
    fn allow_private_covers_direct_and_embedded_forms() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        for (text, want) in [
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("::1", false),
            ("10.0.0.1", false),
            ("169.254.169.254", false),
            ("93.184.216.34", true),
        ] {
            assert_eq!(
                egress_allowed(text.parse().unwrap(), &allow),
                want,
                "{text}"
            );
        }
        assert!(!egress_allowed("127.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn literal_hosts_are_checked_in_every_spelling() {
        for u in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0/",
        ] {
            let url = Url::parse(u).unwrap();
            let e = check_literal_host(&url, &[]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::SafetyRefused, "{u}");
            assert!(e.message().contains("allow_private"), "{u}: {e}");
        }
        check_literal_host(&Url::parse("http://93.184.216.34/").unwrap(), &[]).unwrap();
        check_literal_host(&Url::parse("http://localhost/").unwrap(), &[]).unwrap();
    }
}
