//! Property tests of the guards, each judged by an oracle written apart from the guard's own
//! tables: the standard library's address predicates plus the IANA registries' prefixes as
//! text, and the kernel's own view of an opened file's path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use fanout::guard::files;
use fanout::guard::net::NetPolicy;
use ipnet::IpNet;
use proptest::prelude::*;

/// Not globally reachable, per the IANA special-purpose registries (the "Globally Reachable:
/// False" rows), written as text.
const NOT_GLOBAL_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
];
const NOT_GLOBAL_V6: &[&str] = &[
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
];

fn oracle_v4_global(ip: Ipv4Addr) -> bool {
    let listed = NOT_GLOBAL_V4
        .iter()
        .any(|n| n.parse::<IpNet>().unwrap().contains(&IpAddr::V4(ip)));
    !(listed
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast())
}

fn oracle_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => oracle_v4_global(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return oracle_v4_global(v4);
            }
            let seg = v6.segments();
            // NAT64 and 6to4 reach the IPv4 address they carry.
            if "64:ff9b::/96".parse::<IpNet>().unwrap().contains(&ip) {
                return oracle_v4_global(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ));
            }
            if seg[0] == 0x2002 {
                return oracle_v4_global(Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                ));
            }
            let listed = NOT_GLOBAL_V6
                .iter()
                .any(|n| n.parse::<IpNet>().unwrap().contains(&ip));
            // Only 2000::/3 is allocated for global unicast; multicast is never a fetch target.
            let global_unicast = (seg[0] & 0xe000) == 0x2000;
            global_unicast && !listed && !v6.is_multicast()
        }
    }
}

/// Addresses biased towards the interesting places: special prefixes and their edges, and the
/// IPv6 forms that carry an IPv4 address.
fn any_ip() -> impl Strategy<Value = IpAddr> {
    let v4_special = prop_oneof![
        Just([0u8, 0, 0, 0]),
        Just([10, 0, 0, 0]),
        Just([100, 64, 0, 0]),
        Just([127, 0, 0, 0]),
        Just([169, 254, 0, 0]),
        Just([172, 16, 0, 0]),
        Just([192, 0, 0, 0]),
        Just([192, 168, 0, 0]),
        Just([198, 18, 0, 0]),
        Just([224, 0, 0, 0]),
        Just([240, 0, 0, 0]),
        Just([255, 255, 255, 255]),
        Just([100, 128, 0, 0]),
        Just([172, 32, 0, 0]),
        Just([198, 20, 0, 0]),
    ];
    let v4 = prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (v4_special, any::<u16>()).prop_map(|(b, low)| {
            Ipv4Addr::from(u32::from(Ipv4Addr::from(b)) ^ (low as u32 & 0x3ff))
        }),
    ];
    let v6 = prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        (any::<u16>(), any::<u128>())
            .prop_map(|(top, rest)| Ipv6Addr::from(((top as u128) << 112) | (rest >> 16))),
        (
            prop_oneof![
                Just(0x2000u16),
                Just(0x2001),
                Just(0x2002),
                Just(0x2606),
                Just(0xfd00),
                Just(0xfe80),
                Just(0xff02),
                Just(0x0064),
                Just(0x3fff)
            ],
            any::<u128>()
        )
            .prop_map(|(top, rest)| Ipv6Addr::from(((top as u128) << 112) | (rest >> 16))),
        v4.clone().prop_map(|v| v.to_ipv6_mapped()),
        v4.clone()
            .prop_map(|v| Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u32::from(v) as u128)),
        v4.clone()
            .prop_map(|v| Ipv6Addr::from((0x2002_u128 << 112) | ((u32::from(v) as u128) << 80))),
        v4.clone()
            .prop_map(|v| Ipv6Addr::from(u32::from(v) as u128)),
    ];
    prop_oneof![v4.prop_map(IpAddr::V4), v6.prop_map(IpAddr::V6)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn any_address_the_guard_allows_is_global(ip in any_ip(), port in any::<u16>()) {
        let policy = NetPolicy::default();
        if policy.check(ip, port).is_ok() {
            prop_assert!(oracle_global(ip), "{ip} was allowed but is not global");
        }
    }

    #[test]
    fn allowing_one_address_changes_nothing_for_any_other(rule in any_ip(), ip in any_ip(), port in any::<u16>()) {
        let rule = rule.to_canonical();
        prop_assume!(rule != ip.to_canonical());
        let open = NetPolicy::parse(&[rule.to_string()]).unwrap();
        let with_port = NetPolicy::parse(&[std::net::SocketAddr::new(rule, port).to_string()]).unwrap();
        let strict = NetPolicy::default();
        prop_assert_eq!(open.check(ip, port).is_ok(), strict.check(ip, port).is_ok());
        prop_assert_eq!(with_port.check(ip, port).is_ok(), strict.check(ip, port).is_ok());
        prop_assert_eq!(with_port.check(rule, port.wrapping_add(1)).is_ok(), strict.check(rule, port.wrapping_add(1)).is_ok());
    }
}

/// A root with ways out (symlinks to outside, absolute and relative) and ways around inside.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::symlink;
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(top.path().join("secret.txt"), "secret").unwrap();
    std::fs::write(root.join("ok.txt"), "ok").unwrap();
    std::fs::write(root.join("a/b/in.txt"), "in").unwrap();
    symlink(top.path().join("secret.txt"), root.join("abs-out")).unwrap();
    symlink("../secret.txt", root.join("rel-out")).unwrap();
    symlink(top.path(), root.join("dir-out")).unwrap();
    symlink("../../ok.txt", root.join("a/b/up-in")).unwrap();
    symlink("/etc", root.join("a/etc")).unwrap();
    let root = std::fs::canonicalize(&root).unwrap();
    (top, root)
}

fn path_strategy() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just(".."),
        Just("."),
        Just("a"),
        Just("b"),
        Just("ok.txt"),
        Just("in.txt"),
        Just("secret.txt"),
        Just("abs-out"),
        Just("rel-out"),
        Just("dir-out"),
        Just("up-in"),
        Just("etc"),
        Just("passwd"),
        Just(""),
    ];
    (any::<bool>(), prop::collection::vec(part, 1..7)).prop_map(|(absolute, parts)| {
        format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn any_file_the_guard_opens_is_beneath_the_root(path in path_strategy()) {
        let (_top, root) = fixture();
        let dir = cap_std::fs::Dir::open_ambient_dir(&root, cap_std::ambient_authority()).unwrap();
        if let Ok(file) = files::open(&dir, &path) {
            // The kernel's own name for what was opened.
            let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
            prop_assert!(real.starts_with(&root), "{path:?} opened {}", real.display());
        }
    }
}
