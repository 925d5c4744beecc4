//! Loopback ports: picking a free one and waiting until something listens on one.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use crate::Error;

/// How long one connection attempt may take while polling a port.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause between two polls of a port that is not ready yet.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A loopback port that was free a moment ago: binds `127.0.0.1:0`, reads the port
/// the kernel chose, and releases it.
///
/// Another process may take the port before the caller binds it; the service guards
/// of this crate retry on a fresh port when that happens.
pub fn pick_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::PickPort)?;
    let port = listener.local_addr().map_err(Error::PickPort)?.port();
    Ok(port)
}

/// Waits until `addr` accepts TCP connections, for at most `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(Error::PortTimeout {
                addr,
                waited: started.elapsed(),
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// `127.0.0.1:port`.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
