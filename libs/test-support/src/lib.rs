//! Real parts for tests: real memcached and ZooKeeper started on picked loopback ports,
//! each owned by a guard that kills its process when the test ends; and a small
//! deterministic generator for test data.
//!
//! The binaries come from Debian packages that `scripts/setup-test-env.sh` installs.
//! Starting is blocking (a few milliseconds for memcached, about a second for
//! ZooKeeper), so it works from plain `#[test]`s and `#[tokio::test]`s alike.

mod aerie;
mod error;
mod memcached;
mod net;
mod process;
mod rng;
mod zookeeper;

pub use aerie::{KillOnDrop, aerie_binary, cpu_seconds};
pub use error::Error;
pub use memcached::Memcached;
pub use net::{pick_port, wait_for_port};
pub use rng::Rng;
pub use zookeeper::ZooKeeper;
