//! A real standalone ZooKeeper on a picked loopback port, with its own fresh data
//! directory, for membership, server-set and leader-election tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let zk = test_support::ZooKeeper::start()?;
//! let client = zookeeper_client::Client::connect(&zk.connect_string()).await?;
//! # Ok(()) }
//! ```
//!
//! It runs `org.apache.zookeeper.server.ZooKeeperServerMain` from the Debian package's
//! jars with `tickTime=500`, so session timeouts are clamped to 1-10 s and ephemeral
//! nodes of a dead session vanish quickly.

use std::{
    env, fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Error,
    net::{loopback, pick_port},
    process::{ChildProcess, describe_dirs, find_program},
};

const WHAT: &str = "zookeeper";
/// A cold JVM start is 1-1.5 s; a busy 2-core machine can take much longer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh ports to try when the picked one was taken before ZooKeeper bound it.
const START_ATTEMPTS: usize = 3;
/// Where Debian (and a tarball unpacked under /usr/share/zookeeper) keeps the jars.
const JAR_DIRS: [&str; 3] = [
    "/usr/share/java",
    "/usr/share/zookeeper",
    "/usr/share/zookeeper/lib",
];

const LOG4J_PROPERTIES: &str = "\
log4j.rootLogger=WARN, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.Target=System.err
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n
";

/// A running standalone ZooKeeper, killed when dropped; its temporary directory
/// (configuration, data, log) is removed after the kill.
pub struct ZooKeeper {
    process: ChildProcess,
    java: PathBuf,
    classpath: String,
    port: u16,
    /// Dropped after `process`, so the JVM is gone before its files are removed.
    dir: TempDir,
}

impl ZooKeeper {
    /// Starts ZooKeeper on a free loopback port and waits until `ruok` answers `imok`
    /// and the server reports that it serves requests.
    pub fn start() -> Result<Self, Error> {
        let java = find_java()?;
        let classpath = zookeeper_classpath()?;
        let dir = tempfile::Builder::new()
            .prefix("aerie-zookeeper-")
            .tempdir()
            .map_err(|source| Error::TempDir { what: WHAT, source })?;
        let data_dir = dir.path().join("data");
        fs::create_dir(&data_dir).map_err(|source| Error::WriteFile {
            path: data_dir.clone(),
            source,
        })?;
        write_file(&dir.path().join("log4j.properties"), LOG4J_PROPERTIES)?;

        let mut attempt = 1;
        loop {
            let port = pick_port()?;
            write_file(&dir.path().join("zoo.cfg"), &zoo_cfg(&data_dir, port))?;
            match spawn_ready(&java, &classpath, port, dir.path()) {
                Ok(process) => {
                    return Ok(Self {
                        process,
                        java,
                        classpath,
                        port,
                        dir,
                    });
                }
                Err(err @ Error::ExitedEarly { .. }) if attempt < START_ATTEMPTS => {
                    tracing::debug!(%err, port, "zookeeper did not start; trying another port");
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `127.0.0.1:PORT`, as ZooKeeper clients take it.
    pub fn connect_string(&self) -> String {
        self.socket_addr().to_string()
    }

    /// The address as a `SocketAddr`.
    pub fn socket_addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The client port (kept across `stop` and `restart`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JVM's process id, or `None` after `stop`.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's data directory (snapshots and transaction log).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the JVM is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends a four-letter command (`ruok`, `srvr`, `stat`, `mntr`) and returns the answer.
    pub fn four_letter_word(&self, command: &str) -> Result<String, Error> {
        let addr = self.socket_addr();
        four_letter_word(addr, command).map_err(|source| Error::Request {
            what: WHAT,
            addr,
            source,
        })
    }

    /// Kills the JVM (SIGKILL) and reaps it, to simulate an outage. The data directory
    /// is kept for `restart`.
    pub fn stop(&mut self) -> Result<(), Error> {
        self.process.kill()
    }

    /// Starts ZooKeeper again on the same port and data directory (znodes and sessions
    /// that have not expired survive) and waits until it serves. Stops the running one
    /// first if needed.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.process.kill()?;
        self.process = spawn_ready(&self.java, &self.classpath, self.port, self.dir.path())?;
        Ok(())
    }
}

impl std::fmt::Debug for ZooKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeper")
            .field("connect_string", &self.connect_string())
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn zoo_cfg(data_dir: &Path, port: u16) -> String {
    format!(
        "tickTime=500\n\
         initLimit=10\n\
         syncLimit=5\n\
         dataDir={data_dir}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=ruok,srvr,stat,mntr,cons,dump\n",
        data_dir = data_dir.display(),
    )
}

fn spawn_ready(java: &Path, classpath: &str, port: u16, dir: &Path) -> Result<ChildProcess, Error> {
    let mut command = Command::new(java);
    command
        .current_dir(dir)
        // Small heap, quick start, no hsperfdata files left in /tmp.
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-XX:-UsePerfData")
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            dir.join("log4j.properties").display()
        ))
        // Test data is throwaway: no fsync per write, no 64 MB log preallocation.
        .args(["-Dzookeeper.forceSync=no", "-Dzookeeper.preAllocSize=1024"])
        .arg("-Dzookeeper.jmx.log4j.disable=true")
        .args(["-cp", classpath])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(dir.join("zoo.cfg"));
    let mut process = ChildProcess::spawn(WHAT, command, &dir.join("zookeeper.log"))?;
    let addr = loopback(port);
    process.wait_ready(addr, READY_TIMEOUT, || is_serving(addr))?;
    Ok(process)
}

/// `ruok` answers `imok` as soon as the port is open; `srvr` tells whether the server
/// has loaded its data and serves requests.
fn is_serving(addr: SocketAddr) -> bool {
    let imok = four_letter_word(addr, "ruok").is_ok_and(|answer| answer == "imok");
    imok && four_letter_word(addr, "srvr").is_ok_and(|answer| answer.contains("Mode:"))
}

fn four_letter_word(addr: SocketAddr, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

fn find_java() -> Result<PathBuf, Error> {
    let java_home = env::var_os("JAVA_HOME").map(|home| PathBuf::from(home).join("bin"));
    let mut extra: Vec<&Path> = Vec::new();
    if let Some(bin) = &java_home {
        extra.push(bin);
    }
    extra.push(Path::new("/usr/bin"));
    find_program("java", &extra)
}

/// The server jar plus logging jars. Debian's `zookeeper.jar` lists its other
/// dependencies (jute, netty, slf4j-api, ...) in its manifest's `Class-Path`; a
/// tarball layout keeps them in `lib/`, which is added whole when present.
fn zookeeper_classpath() -> Result<String, Error> {
    let dirs: Vec<PathBuf> = JAR_DIRS.iter().map(PathBuf::from).collect();
    let server = find_jar("zookeeper", &dirs).ok_or_else(|| Error::JarNotFound {
        name: "zookeeper",
        searched: describe_dirs(&dirs),
    })?;
    let mut jars = vec![server];
    // Optional: without a log4j binding slf4j logs nothing, which the server survives.
    for name in ["zookeeper-jute", "slf4j-log4j12", "log4j-1.2"] {
        jars.extend(find_jar(name, &dirs));
    }
    if let Ok(entries) = fs::read_dir("/usr/share/zookeeper/lib") {
        let mut lib: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "jar"))
            .collect();
        lib.sort();
        jars.extend(lib);
    }
    let parts: Vec<String> = jars.iter().map(|jar| jar.display().to_string()).collect();
    Ok(parts.join(":"))
}

/// `DIR/NAME.jar` in the first directory that has it, else the highest versioned
/// `NAME-<digit>...jar` in any of them.
fn find_jar(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if let Some(exact) = dirs
        .iter()
        .map(|dir| dir.join(format!("{name}.jar")))
        .find(|path| path.is_file())
    {
        return Some(exact);
    }
    let prefix = format!("{name}-");
    dirs.iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|file| file.to_str())
                .and_then(|file| file.strip_prefix(&prefix))
                .is_some_and(|rest| {
                    rest.starts_with(|c: char| c.is_ascii_digit()) && rest.ends_with(".jar")
                })
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_jar_is_found_when_the_plain_name_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "zookeeper-3.7.1.jar",
            "zookeeper-3.8.0.jar",
            "zookeeper-jute-3.8.0.jar",
        ] {
            fs::write(dir.path().join(file), b"").unwrap();
        }
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(
            find_jar("zookeeper", &dirs),
            Some(dir.path().join("zookeeper-3.8.0.jar"))
        );
        assert_eq!(
            find_jar("zookeeper-jute", &dirs),
            Some(dir.path().join("zookeeper-jute-3.8.0.jar"))
        );
        fs::write(dir.path().join("zookeeper.jar"), b"").unwrap();
        assert_eq!(
            find_jar("zookeeper", &dirs),
            Some(dir.path().join("zookeeper.jar"))
        );
        assert_eq!(find_jar("log4j-1.2", &dirs), None);
    }
}
