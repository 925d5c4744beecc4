//! A child process owned by a test: spawned in its own process group with its output
//! in a log file, killed and reaped when its owner is dropped.
//!
//! Tests can panic anywhere, so the kill lives in `Drop`; the own process group lets the
//! kill reach anything the service forks. (A parent-death signal would also cover a test
//! binary killed with SIGKILL, but setting one needs `unsafe` `pre_exec` and fires when
//! the spawning *thread* exits, which under the test harness is the wrong moment.)

use std::{
    env,
    fs::{self, File, OpenOptions},
    io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{Error, net::POLL_INTERVAL};

/// How many lines of a service's output an error message quotes.
const LOG_TAIL_LINES: usize = 30;

/// A running (or stopped) service process and where its output goes.
pub(crate) struct ChildProcess {
    what: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout+stderr appended to `log_path`.
    pub(crate) fn spawn(
        what: &'static str,
        mut command: Command,
        log_path: &Path,
    ) -> Result<Self, Error> {
        let open_log =
            || -> io::Result<File> { OpenOptions::new().create(true).append(true).open(log_path) };
        let write_err = |source| Error::WriteFile {
            path: log_path.to_path_buf(),
            source,
        };
        let stdout = open_log().map_err(write_err)?;
        let stderr = open_log().map_err(write_err)?;
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = command.spawn().map_err(|source| Error::Spawn {
            what,
            program: PathBuf::from(command.get_program()),
            source,
        })?;
        tracing::debug!(what, pid = child.id(), "spawned");
        Ok(Self {
            what,
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// The process id while the process has not been stopped.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (neither stopped by us nor exited by itself).
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls `probe` until it says ready, failing early if the process exits and late
    /// after `timeout`.
    pub(crate) fn wait_ready(
        &mut self,
        addr: std::net::SocketAddr,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Error::ExitedEarly {
                    what: self.what,
                    status,
                    log: self.log_tail(),
                });
            }
            if probe() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Error::NotReady {
                    what: self.what,
                    addr,
                    waited: started.elapsed(),
                    log: self.log_tail(),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills the process group with SIGKILL and reaps the process. Does nothing if the
    /// process was already stopped.
    pub(crate) fn kill(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let stop_err = |source| Error::Stop {
            what: self.what,
            pid,
            source,
        };
        // The child leads its own group (process_group(0)), so its pid is the group id.
        let group = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        match killpg(group, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => {
                // Fall back to the child alone; it is what holds the port.
                tracing::warn!(what = self.what, pid, %errno, "killpg failed");
                child.kill().map_err(stop_err)?;
            }
        }
        child.wait().map_err(stop_err)?;
        tracing::debug!(what = self.what, pid, "stopped");
        Ok(())
    }

    /// The last lines the process wrote, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        match fs::read_to_string(&self.log_path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(LOG_TAIL_LINES);
                if lines.is_empty() {
                    "(no output)".to_owned()
                } else {
                    lines[start..].join("\n")
                }
            }
            Err(err) => format!("(could not read {}: {err})", self.log_path.display()),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            tracing::warn!(%err, "could not stop test service");
        }
    }
}

/// Finds an executable by name on `PATH`, then in `extra_dirs`.
pub(crate) fn find_program(name: &'static str, extra_dirs: &[&Path]) -> Result<PathBuf, Error> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(extra_dirs.iter().map(|dir| dir.to_path_buf()));
    for dir in &dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::BinaryNotFound {
        name,
        searched: describe_dirs(&dirs),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `a, b, c` for error messages.
pub(crate) fn describe_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no directories".to_owned();
    }
    dirs.iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_points_at_the_setup_script() {
        let err = find_program("aerie-no-such-service", &[Path::new("/nonexistent")]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("aerie-no-such-service not found"),
            "{message}"
        );
        assert!(message.contains("/nonexistent"), "{message}");
        assert!(message.contains("scripts/setup-test-env.sh"), "{message}");
    }

    #[test]
    fn a_service_that_exits_at_once_is_reported_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'failed to listen on TCP port 1' >&2; exit 71"]);
        let mut process = ChildProcess::spawn("sh", command, &dir.path().join("log")).unwrap();
        let addr = crate::net::loopback(1);
        let err = process
            .wait_ready(addr, Duration::from_secs(5), || false)
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("exited during startup"), "{message}");
        assert!(
            message.contains("failed to listen on TCP port 1"),
            "{message}"
        );
        assert!(!process.is_running());
        process
            .kill()
            .expect("killing an exited process is harmless");
    }
}
