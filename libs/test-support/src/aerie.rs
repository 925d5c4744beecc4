//! The `aerie` executable for tests and benches that run services as separate
//! processes (found next to the running binary, built when missing), a guard that
//! kills such a process, and the CPU time a process used.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::Error;

/// The `aerie` binary beside the running executable (same profile), built with
/// `cargo build --release --bin aerie` in `workspace` when it is missing.
pub fn aerie_binary(workspace: &Path) -> Result<PathBuf, Error> {
    let me = std::env::current_exe().map_err(|e| Error::Build {
        reason: format!("cannot locate the running executable: {e}"),
    })?;
    let bin = me
        .parent()
        .map(|d| d.join("aerie"))
        .ok_or_else(|| Error::Build {
            reason: "the running executable has no directory".into(),
        })?;
    if !bin.exists() {
        eprintln!("building the aerie binary (cargo build --release --bin aerie)");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "aerie"])
            .current_dir(workspace)
            .status()
            .map_err(|e| Error::Build {
                reason: format!("cannot run cargo: {e}"),
            })?;
        if !status.success() || !bin.exists() {
            return Err(Error::Build {
                reason: format!(
                    "cargo build exited with {status}; {} missing",
                    bin.display()
                ),
            });
        }
    }
    Ok(bin)
}

/// A child process killed and reaped when dropped, so a failing test or bench never
/// leaves it running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU seconds process `pid` has used so far (Linux `/proc`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it don't.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Linux reports them in USER_HZ ticks, 100 per second on every architecture.
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_grow_with_work() {
        let me = std::process::id();
        let before = cpu_seconds(me).unwrap();
        let began = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(me).unwrap() > before);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
