//! A real memcached on a picked loopback port, for cache tests.
//!
//! ```no_run
//! let cache = test_support::Memcached::start()?;
//! let client = memcache::connect(cache.url().as_str())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Error,
    net::{loopback, pick_port},
    process::{ChildProcess, find_program},
};

const WHAT: &str = "memcached";
/// memcached listens within ~0.1 s; this leaves room for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports to try when the picked one was taken before memcached bound it.
const START_ATTEMPTS: usize = 3;

/// A running memcached (`-l 127.0.0.1 -p PORT -U 0 -m 64`), killed when dropped.
pub struct Memcached {
    process: ChildProcess,
    program: PathBuf,
    port: u16,
    /// Holds the log file; dropped after `process`, so after the kill.
    dir: TempDir,
}

impl Memcached {
    /// Starts memcached on a free loopback port and waits until it answers `version`.
    pub fn start() -> Result<Self, Error> {
        let program = find_program(WHAT, &[Path::new("/usr/bin"), Path::new("/usr/sbin")])?;
        let dir = tempfile::Builder::new()
            .prefix("aerie-memcached-")
            .tempdir()
            .map_err(|source| Error::TempDir { what: WHAT, source })?;
        let mut attempt = 1;
        loop {
            let port = pick_port()?;
            match spawn_ready(&program, port, dir.path()) {
                Ok(process) => {
                    return Ok(Self {
                        process,
                        program,
                        port,
                        dir,
                    });
                }
                Err(err @ Error::ExitedEarly { .. }) if attempt < START_ATTEMPTS => {
                    tracing::debug!(%err, port, "memcached did not start; trying another port");
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.socket_addr().to_string()
    }

    /// The address as a `SocketAddr`.
    pub fn socket_addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The port memcached listens on (kept across `stop` and `restart`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `memcache://127.0.0.1:PORT`, as the `memcache` crate's `connect` takes it.
    pub fn url(&self) -> String {
        format!("memcache://{}", self.addr())
    }

    /// The process id, or `None` after `stop`.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether memcached is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Kills memcached (SIGKILL) and reaps it, to simulate an outage. The port stays
    /// reserved for `restart` only by convention: nothing else in the test should bind it.
    pub fn stop(&mut self) -> Result<(), Error> {
        self.process.kill()
    }

    /// Starts memcached again on the same port, empty, and waits until it answers.
    /// Stops the running one first if needed.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.process.kill()?;
        self.process = spawn_ready(&self.program, self.port, self.dir.path())?;
        Ok(())
    }
}

impl std::fmt::Debug for Memcached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memcached")
            .field("addr", &self.addr())
            .field("pid", &self.pid())
            .finish()
    }
}

fn spawn_ready(program: &Path, port: u16, dir: &Path) -> Result<ChildProcess, Error> {
    let mut command = Command::new(program);
    command.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-m",
        "64",
    ]);
    // memcached refuses to run as root without a user to switch to.
    command.args(["-u", "nobody"]);
    let mut process = ChildProcess::spawn(WHAT, command, &dir.join("memcached.log"))?;
    let addr = loopback(port);
    process.wait_ready(addr, READY_TIMEOUT, || answers_version(addr))?;
    Ok(process)
}

/// Whether a memcached on `addr` answers the text protocol's `version` command.
fn answers_version(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"version\r\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.starts_with("VERSION "))
    };
    attempt().unwrap_or(false)
}
