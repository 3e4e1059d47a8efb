//! Which addresses HTTP jobs may reach: every globally routable address, plus exactly what
//! `--allow-net` names. Everything else — loopback, private, shared (CGNAT), link-local (cloud
//! metadata at 169.254.169.254), unique-local, multicast, broadcast, documentation,
//! benchmarking, reserved, and the IPv6 forms that embed such an IPv4 address — is refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// One `--allow-net` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// `10.1.2.0/24`, `127.0.0.1`, `::1`: these addresses, any port.
    Net(IpNet),
    /// `127.0.0.1:3000`, `[::1]:3000`: this address and port only.
    AddrPort(SocketAddr),
    /// `localhost`, `app.internal:8080`: this host name (any port, or that port), whatever it
    /// resolves to.
    Host(String, Option<u16>),
}

impl FromStr for AllowRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty --allow-net entry".into());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(AllowRule::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AllowRule::Net(IpNet::from(ip.to_canonical())));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(AllowRule::AddrPort(SocketAddr::new(
                addr.ip().to_canonical(),
                addr.port(),
            )));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("bad port in --allow-net {s:?}"))?,
                ),
            ),
            None => (s, None),
        };
        let host = normalize_host(host);
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(format!(
                "--allow-net {s:?} is not a CIDR, an address, an address:port, or a host name"
            ));
        }
        Ok(AllowRule::Host(host, port))
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRule::Net(n) => write!(f, "{n}"),
            AllowRule::AddrPort(a) => write!(f, "{a}"),
            AllowRule::Host(h, Some(p)) => write!(f, "{h}:{p}"),
            AllowRule::Host(h, None) => write!(f, "{h}"),
        }
    }
}

/// A name that always means this machine or a cloud's metadata service, whatever a resolver
/// says of it: what it means, and the addresses it stands for (an `--allow-net` rule that
/// opens one of them opens the name too).
pub fn reserved_name(host: &str) -> Option<(&'static str, &'static [IpAddr])> {
    const LOOPBACK: &[IpAddr] = &[
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ];
    const METADATA: &[IpAddr] = &[IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))];
    // Compared in place, without the lower-cased copy `normalize_host` makes: this runs for
    // every request's URL.
    let host = host.trim_end_matches('.');
    let is = |name: &str| host.eq_ignore_ascii_case(name);
    let under_localhost = host.len() > ".localhost".len()
        && host.is_char_boundary(host.len() - ".localhost".len())
        && host[host.len() - ".localhost".len()..].eq_ignore_ascii_case(".localhost");
    if is("localhost") || under_localhost {
        // RFC 6761, section 6.3: localhost and every name beneath it are this machine.
        return Some(("this machine (loopback)", LOOPBACK));
    }
    let metadata = [
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    ];
    metadata
        .iter()
        .any(|m| is(m))
        .then_some(("a cloud's metadata service", METADATA))
}

/// Lower case, no trailing dot: how host names are compared.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Why an address is not reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The outbound address policy: global addresses plus the allow rules.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    rules: Vec<AllowRule>,
}

impl NetPolicy {
    pub fn new(rules: Vec<AllowRule>) -> NetPolicy {
        NetPolicy { rules }
    }

    pub fn parse(entries: &[String]) -> Result<NetPolicy, String> {
        entries
            .iter()
            .map(|e| e.parse())
            .collect::<Result<Vec<_>, _>>()
            .map(NetPolicy::new)
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Whether a host rule names this host (and port): its addresses are then allowed
    /// whatever they are.
    pub fn host_allowed(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.rules.iter().any(|r| match r {
            AllowRule::Host(h, p) => *h == host && p.is_none_or(|p| p == port),
            _ => false,
        })
    }

    /// Judges one address about to be dialled on `port`.
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        let allowed = self.rules.iter().any(|r| match r {
            AllowRule::Net(net) => net.contains(&ip),
            AllowRule::AddrPort(a) => a.ip() == ip && a.port() == port,
            AllowRule::Host(..) => false,
        });
        if allowed {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            // Says what to do about it: a load test of one's own app on this machine meets
            // this first.
            Some(kind) => Err(Refusal(format!(
                "{target} is {kind}, refused: only public addresses are reachable; to reach it, \
                 add --allow-net {target}",
                target = std::net::SocketAddr::new(ip, port)
            ))),
        }
    }
}

/// What kind of non-global address this is; `None` for a globally routable one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, base: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(base)) & mask)
}

/// IANA IPv4 Special-Purpose Address Registry, the entries not globally reachable.
fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        (
            [100, 64, 0, 0],
            10,
            "shared address space, CGNAT (100.64.0.0/10)",
        ),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        (
            [169, 254, 0, 0],
            16,
            "link-local, where cloud metadata lives (169.254.0.0/16)",
        ),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([255, 255, 255, 255], 32, "broadcast (255.255.255.255)"),
        ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
    ];
    TABLE
        .iter()
        .find(|(base, prefix, _)| in_v4(ip, *base, *prefix))
        .map(|(_, _, kind)| *kind)
}

fn in_v6(ip: Ipv6Addr, base: u128, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (base & mask)
}

/// IANA IPv6 Special-Purpose Address Registry. Forms that carry an IPv4 address (mapped,
/// NAT64, 6to4) are judged by that address; global unicast is 2000::/3 only.
fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let embedded = |shift: u32| Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // ::ffff:a.b.c.d is canonicalized to IPv4 before we get here.
    if in_v6(ip, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return classify_v4(embedded(0))
            .map(|_| "NAT64 form of a non-public IPv4 address (64:ff9b::/96)");
    }
    const TABLE: &[(u128, u32, &str)] = &[
        (0, 96, "IPv4-compatible, deprecated (::/96)"),
        (
            0x0064_ff9b_0001_0000_0000_0000_0000_0000,
            48,
            "NAT64 local use (64:ff9b:1::/48)",
        ),
        (
            0x0100_0000_0000_0000_0000_0000_0000_0000,
            64,
            "discard-only (100::/64)",
        ),
        (
            0x2001_0000_0000_0000_0000_0000_0000_0000,
            32,
            "Teredo (2001::/32)",
        ),
        (
            0x2001_0db8_0000_0000_0000_0000_0000_0000,
            32,
            "documentation (2001:db8::/32)",
        ),
        (
            0x2001_0000_0000_0000_0000_0000_0000_0000,
            23,
            "IETF protocol assignments (2001::/23)",
        ),
        (
            0x3fff_0000_0000_0000_0000_0000_0000_0000,
            20,
            "documentation (3fff::/20)",
        ),
        (
            0x5f00_0000_0000_0000_0000_0000_0000_0000,
            16,
            "segment routing (5f00::/16)",
        ),
        (
            0xfc00_0000_0000_0000_0000_0000_0000_0000,
            7,
            "unique-local (fc00::/7)",
        ),
        (
            0xfe80_0000_0000_0000_0000_0000_0000_0000,
            10,
            "link-local (fe80::/10)",
        ),
        (
            0xfec0_0000_0000_0000_0000_0000_0000_0000,
            10,
            "site-local, deprecated (fec0::/10)",
        ),
        (
            0xff00_0000_0000_0000_0000_0000_0000_0000,
            8,
            "multicast (ff00::/8)",
        ),
    ];
    if let Some((_, _, kind)) = TABLE
        .iter()
        .find(|(base, prefix, _)| in_v6(ip, *base, *prefix))
    {
        return Some(kind);
    }
    if in_v6(ip, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return classify_v4(embedded(80))
            .map(|_| "6to4 form of a non-public IPv4 address (2002::/16)");
    }
    if !in_v6(ip, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return Some("reserved (outside global unicast 2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        classify(s.parse().unwrap()).is_some()
    }

    #[test]
    fn special_purpose_addresses_are_refused_and_public_ones_pass() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "3fff::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:0:7f00:1",
            "4000::1",
        ] {
            assert!(refused(s), "{s} should be refused");
        }
        for s in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(!refused(s), "{s} should be allowed");
        }
    }

    #[test]
    fn allow_rules_open_exactly_what_they_name() {
        let p = NetPolicy::parse(&[
            "127.0.0.1:3000".into(),
            "10.0.0.0/30".into(),
            "app.internal".into(),
            "db:5432".into(),
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.check(ip("127.0.0.1"), 3000).is_ok());
        assert!(
            p.check(ip("::ffff:127.0.0.1"), 3000).is_ok(),
            "the mapped form is the same address"
        );
        assert!(p.check(ip("127.0.0.1"), 3001).is_err(), "another port");
        assert!(p.check(ip("127.0.0.2"), 3000).is_err(), "the neighbour");
        assert!(p.check(ip("10.0.0.3"), 1).is_ok());
        assert!(p.check(ip("10.0.0.4"), 1).is_err());
        assert!(p.host_allowed("APP.internal.", 80));
        assert!(p.host_allowed("db", 5432));
        assert!(!p.host_allowed("db", 5433));
        assert!(!p.host_allowed("other", 80));
    }

    #[test]
    fn names_of_this_machine_and_of_metadata_services_are_known_by_name() {
        for name in ["localhost", "LOCALHOST.", "app.localhost", "a.b.localhost."] {
            assert_eq!(
                reserved_name(name).map(|r| r.0),
                Some("this machine (loopback)"),
                "{name}"
            );
        }
        for name in ["metadata.google.internal", "metadata", "instance-data."] {
            assert_eq!(
                reserved_name(name).map(|r| r.0),
                Some("a cloud's metadata service"),
                "{name}"
            );
        }
        for name in [
            "localhost.example.com",
            "mylocalhost",
            "example.com",
            "metadata.example",
        ] {
            assert_eq!(reserved_name(name), None, "{name}");
        }
    }

    #[test]
    fn allow_rules_parse_every_documented_form() {
        for (s, want) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("::1", "::1/128"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::1]:8080"),
            ("LocalHost", "localhost"),
            ("api.test:443", "api.test:443"),
        ] {
            assert_eq!(s.parse::<AllowRule>().unwrap().to_string(), want, "{s}");
        }
        for bad in ["", "http://x", "a b", "host:99999", "10.0.0.0/33"] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad:?}");
        }
    }
}
