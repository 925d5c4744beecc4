//! How this machine names itself to peers: its host name, and loopback in
//! place of a wildcard listen address.

use std::net::SocketAddr;

/// This machine's host name: `$HOSTNAME` when set, else the kernel's.
pub fn machine_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// `0.0.0.0:7400` is not an address to connect to: loopback at the same
/// port instead; any other address as it is.
pub fn loopback_if_any(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_become_loopback() {
        let any: SocketAddr = "0.0.0.0:7400".parse().unwrap();
        assert_eq!(loopback_if_any(any), "127.0.0.1:7400".parse().unwrap());
        let any6: SocketAddr = "[::]:7400".parse().unwrap();
        assert_eq!(loopback_if_any(any6), "127.0.0.1:7400".parse().unwrap());
        let other: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(loopback_if_any(other), other);
    }

    #[test]
    fn this_machine_has_a_name() {
        let name = machine_name().expect("a host name");
        assert!(!name.is_empty() && name == name.trim());
    }
}
