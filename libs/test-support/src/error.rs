//! The one error type of `test-support`: each variant names the part that failed.

use std::{io, net::SocketAddr, path::PathBuf, process::ExitStatus, time::Duration};

/// Why a real service could not be started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name} not found (looked in {searched}); run scripts/setup-test-env.sh to install it")]
    BinaryNotFound {
        name: &'static str,
        searched: String,
    },

    #[error(
        "zookeeper jar \"{name}\" not found under {searched}; run scripts/setup-test-env.sh to install it"
    )]
    JarNotFound {
        name: &'static str,
        searched: String,
    },

    #[error("cannot provide the aerie binary: {reason}")]
    Build { reason: String },

    #[error("could not pick a free loopback port: {0}")]
    PickPort(#[source] io::Error),

    #[error("could not create a temporary directory for {what}: {source}")]
    TempDir {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("could not write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not spawn {what} ({program}): {source}")]
    Spawn {
        what: &'static str,
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{what} exited during startup with {status}; its output ends with:\n{log}")]
    ExitedEarly {
        what: &'static str,
        status: ExitStatus,
        log: String,
    },

    #[error(
        "{what} did not become ready on {addr} within {waited:?}; its output ends with:\n{log}"
    )]
    NotReady {
        what: &'static str,
        addr: SocketAddr,
        waited: Duration,
        log: String,
    },

    #[error("nothing accepted connections on {addr} within {waited:?}")]
    PortTimeout { addr: SocketAddr, waited: Duration },

    #[error("could not stop {what} (pid {pid}): {source}")]
    Stop {
        what: &'static str,
        pid: u32,
        #[source]
        source: io::Error,
    },

    #[error("{what} on {addr} did not answer: {source}")]
    Request {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}
