//! The network files the VMM expects in the container. Guest traffic leaves through the
//! kernel's TSI (AF_INET sockets carried over vsock), so DNS goes to a public resolver
//! and 198.18.0.1 is the guest's own address.

/// The guest's address on the VMM's fake link (`smnet0` on supermachine's kernels).
pub const GUEST_ADDR: [u8; 4] = [198, 18, 0, 1];
pub const GUEST_PREFIX: u8 = 30;

/// `/etc/resolv.conf`: the resolver TSI reaches; an IPv6 one too when the host has IPv6.
pub fn resolv_conf(host_ipv6: Option<bool>) -> String {
    let mut text = String::from("nameserver 1.1.1.1\n");
    if host_ipv6 == Some(true) {
        text.push_str("nameserver 2606:4700:4700::1111\n");
    }
    text.push_str("options timeout:2 attempts:2\n");
    text
}

/// `/etc/hosts`: the image's lines, plus localhost and the host name where missing.
pub fn hosts(existing: &str, hostname: Option<&str>) -> String {
    let names_of = |ip: &str| -> Vec<String> {
        existing
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(ip)).then(|| f.map(str::to_string).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    };
    let mut text = existing.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !names_of("127.0.0.1").iter().any(|n| n == "localhost") {
        text.push_str("127.0.0.1\tlocalhost\n");
    }
    if !names_of("::1").iter().any(|n| n == "localhost") {
        text.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    }
    if let Some(name) = hostname {
        let known = existing
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .any(|l| l.split_whitespace().skip(1).any(|n| n == name));
        if !known {
            text.push_str(&format!("127.0.1.1\t{name}\n"));
        }
    }
    text
}

/// `/etc/gai.conf`: without host IPv6, getaddrinfo must try IPv4 first, or programs
/// wait on IPv6 connects that cannot work. `None` leaves the image's file alone.
pub fn gai_conf(host_ipv6: Option<bool>) -> Option<String> {
    (host_ipv6 != Some(true)).then(|| {
        "# Written by init-oci: the host has no IPv6, prefer IPv4.\nprecedence ::ffff:0:0/96  100\n"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_host_ipv6() {
        assert_eq!(
            resolv_conf(None),
            "nameserver 1.1.1.1\noptions timeout:2 attempts:2\n"
        );
        assert!(resolv_conf(Some(true)).contains("2606:4700:4700::1111"));
        assert!(!resolv_conf(Some(false)).contains("2606"));
    }

    #[test]
    fn hosts_adds_only_what_is_missing() {
        let full = "127.0.0.1 localhost\n::1 localhost\n";
        assert_eq!(hosts(full, None), full);
        let text = hosts("10.0.0.1 db # comment", Some("box"));
        assert_eq!(
            text,
            "10.0.0.1 db # comment\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbox\n"
        );
        assert!(
            !hosts("127.0.0.1 localhost box\n::1 localhost\n", Some("box")).contains("127.0.1.1")
        );
        // A commented-out localhost does not count.
        assert!(hosts("#127.0.0.1 localhost\n", None).contains("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn gai_conf_prefers_ipv4_unless_the_host_has_ipv6() {
        assert!(gai_conf(Some(false))
            .unwrap()
            .contains("precedence ::ffff:0:0/96  100"));
        assert!(gai_conf(None).is_some());
        assert_eq!(gai_conf(Some(true)), None);
    }
}
