//! Layered configuration: a TOML file, then `AERIE_*` environment variables, then
//! `--set key=value` flags, deserialised strictly (unknown keys are errors) and
//! validated before any port is bound.
//!
//! Every option `a.b.c` of the file can be overridden by the environment variable
//! `AERIE_A__B__C` (sections separated by a double underscore, case-insensitive) or
//! by the flag `--set a.b.c=VALUE`. Values are read as TOML values when they parse as
//! one (`7420`, `true`, `["a","b"]`) and as strings otherwise (`127.0.0.1`, `30s`);
//! where the option is a string, the value is always taken as a string.
//!
//! Errors name the key and where its value came from, so `aerie --set
//! storage.htp_port=1` answers `unknown key "storage.htp_port" (from --set
//! storage.htp_port=1)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Prefix of every environment variable Aerie reads.
pub const ENV_PREFIX: &str = "AERIE_";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("override {origin} is malformed: {message}")]
    BadOverride { origin: String, message: String },
    #[error("unknown key \"{key}\" ({origin}); {expected}")]
    UnknownKey {
        key: String,
        origin: String,
        expected: String,
    },
    #[error("config key \"{key}\" ({origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

impl ConfigError {
    /// A validation failure of one key, for [`Validate`] implementations.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            origin: "after loading".into(),
            message: message.into(),
        }
    }
}

/// Checks of a loaded configuration that types alone cannot express.
pub trait Validate {
    /// Returns the first problem found, naming its key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Where the layers come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file, if any. A named file that does not exist is an error.
    pub file: Option<PathBuf>,
    /// Environment variables (normally `std::env::vars()`); only `AERIE_` variables
    /// whose name contains `__` are read as key overrides.
    pub env: Vec<(String, String)>,
    /// `key=value` overrides from the command line, applied last.
    pub sets: Vec<String>,
}

impl Sources {
    /// The file and flags given, and this process's environment.
    pub fn from_process(file: Option<PathBuf>, sets: Vec<String>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            sets,
        }
    }
}

/// Loads `T` from the layers in `sources`, then applies `adjust` (the binary's
/// dedicated flags such as `--data-dir`) and validates the result.
pub fn load<T>(sources: &Sources, adjust: impl FnOnce(&mut T)) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let defaults = match Value::try_from(T::default()) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    };
    let mut origins = Origins::default();
    let mut table = match &sources.file {
        Some(path) => read_file(path, &mut origins)?,
        None => Table::new(),
    };
    for (name, value) in &sources.env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let origin = format!("from environment variable {name}");
        set_path(&mut table, &defaults, &path, value, &origin, &mut origins)?;
    }
    for set in &sources.sets {
        let origin = format!("from --set {set}");
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride {
                origin: format!("--set {set}"),
                message: "expected KEY=VALUE, e.g. --set storage.http_port=7420".into(),
            })?;
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::BadOverride {
                origin: format!("--set {set}"),
                message: format!("\"{key}\" is not a dotted key path"),
            });
        }
        set_path(&mut table, &defaults, &path, value, &origin, &mut origins)?;
    }
    let mut config: T = deserialize(table, &origins)?;
    adjust(&mut config);
    config.validate()?;
    Ok(config)
}

/// Remembers which layer set each key, for error messages.
#[derive(Default)]
struct Origins(BTreeMap<String, String>);

impl Origins {
    fn of(&self, key: &str) -> String {
        // The most specific recorded prefix of the key names its source.
        let mut probe = key;
        loop {
            if let Some(o) = self.0.get(probe) {
                return o.clone();
            }
            match probe.rfind('.') {
                Some(i) => probe = &probe[..i],
                None => return "default".into(),
            }
        }
    }
}

fn read_file(path: &Path, origins: &mut Origins) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
    record(&table, "", &format!("in {}", path.display()), origins);
    Ok(table)
}

fn record(table: &Table, prefix: &str, origin: &str, origins: &mut Origins) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Value::Table(t) = v {
            record(t, &key, origin, origins);
        }
        origins.0.insert(key, origin.to_owned());
    }
}

/// Sets `path` in `table` to `raw`, typed after the default value at the same path.
fn set_path(
    table: &mut Table,
    defaults: &Table,
    path: &[String],
    raw: &str,
    origin: &str,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let key = path.join(".");
    let default = lookup(defaults, path);
    let value = match default {
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        _ => parse_value(raw),
    };
    let mut cur = table;
    for (i, part) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur.insert(part.clone(), value);
            break;
        }
        let entry = cur
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Invalid {
                    key: path[..=i].join("."),
                    origin: origin.to_owned(),
                    message: format!("is a value, so \"{key}\" cannot be set under it"),
                });
            }
        };
    }
    origins.0.insert(key, origin.to_owned());
    Ok(())
}

fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    if rest.is_empty() {
        return Some(v);
    }
    match v {
        Value::Table(t) => lookup(t, rest),
        _ => None,
    }
}

/// A flag or variable value as TOML when it is one, else as a string.
fn parse_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    match doc.parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn deserialize<T: DeserializeOwned>(table: Table, origins: &Origins) -> Result<T, ConfigError> {
    let de = Value::Table(table);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        unknown_key(&path, &inner, origins).unwrap_or_else(|| {
            let key = if path == "." {
                "(top level)".into()
            } else {
                path
            };
            ConfigError::Invalid {
                origin: origins.of(&key),
                key,
                message: inner,
            }
        })
    })
}

/// serde reports an unknown field as "unknown field `x`, expected one of ...", with
/// the path of the table that holds it; turn that into the full key.
fn unknown_key(path: &str, message: &str, origins: &Origins) -> Option<ConfigError> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let key = if path == "." || path.is_empty() {
        field.to_owned()
    } else {
        // serde_path_to_error already appends the unknown field to the path.
        if path.ends_with(field) {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    Some(ConfigError::UnknownKey {
        origin: origins.of(&key),
        key,
        expected: expected.trim_start_matches(", ").to_owned(),
    })
}

/// Settings of the servers every service runs: an HTTP port (API and admin) and a
/// gRPC port, with the limits of the standard tower stacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP port for the API and the admin endpoints; 0 picks a free port.
    pub http_port: u16,
    /// gRPC port; 0 picks a free port.
    pub grpc_port: u16,
    /// Longest a request may run before it is answered with a deadline error; a
    /// shorter client deadline (`grpc-timeout`) wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests served at once per protocol; more are shed at once (HTTP 503, gRPC
    /// RESOURCE_EXHAUSTED) rather than queued.
    pub max_concurrent_requests: usize,
    /// Largest request body (HTTP) or message (gRPC) accepted, in bytes.
    pub max_request_bytes: usize,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl ServerConfig {
    /// Defaults with the given ports.
    pub fn with_ports(http_port: u16, grpc_port: u16) -> Self {
        Self {
            http_port,
            grpc_port,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            max_request_bytes: 16 * 1024 * 1024,
            grace_period: Duration::from_secs(10),
        }
    }

    /// Checks the limits, naming keys under `section`.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{section}.request_timeout"),
                "must be longer than zero",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::invalid(
                format!("{section}.max_request_bytes"),
                "must be at least 1024",
            ));
        }
        if self.http_port != 0 && self.http_port == self.grpc_port {
            return Err(ConfigError::invalid(
                format!("{section}.grpc_port"),
                format!("{} is also the HTTP port", self.grpc_port),
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::with_ports(0, 0)
    }
}

/// Settings shared by every service of one process (the top level of the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Common {
    /// Address every server binds.
    pub listen_host: String,
    /// Where embedded storage and other local state live.
    pub data_dir: PathBuf,
    /// Prometheus file_sd targets file (JSON or YAML) for the collector; empty: none.
    pub targets: PathBuf,
    /// memcached servers for the query span cache; empty: no cache.
    pub memcached: Vec<String>,
    /// ZooKeeper ensemble for server sets, membership and leader election; empty: none.
    pub zookeeper: Vec<String>,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            listen_host: "0.0.0.0".into(),
            data_dir: PathBuf::from("./data"),
            targets: PathBuf::new(),
            memcached: Vec::new(),
            zookeeper: Vec::new(),
        }
    }
}

impl Common {
    /// Checks host and address lists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen_host.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::invalid(
                "listen_host",
                format!("\"{}\" is not an IP address", self.listen_host),
            ));
        }
        for (key, list) in [
            ("memcached", &self.memcached),
            ("zookeeper", &self.zookeeper),
        ] {
            for addr in list {
                if !is_host_port(addr) {
                    return Err(ConfigError::invalid(
                        key,
                        format!("\"{addr}\" is not HOST:PORT"),
                    ));
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        Ok(())
    }
}

/// Splits a comma-separated `HOST:PORT[,…]` flag value.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Top {
        data_dir: String,
        storage: Section,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        server: ServerConfig,
        name: String,
    }

    impl Validate for Top {
        fn validate(&self) -> Result<(), ConfigError> {
            self.storage.server.validate("storage.server")
        }
    }

    fn sources(file: &str, env: &[(&str, &str)], sets: &[&str]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aerie.toml");
        std::fs::write(&path, file).unwrap();
        let s = Sources {
            file: Some(path),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
        };
        (dir, s)
    }

    #[test]
    fn layers_apply_in_order() {
        let (_d, s) = sources(
            "data_dir = \"/a\"\n[storage.server]\nhttp_port = 1000\ngrpc_port = 1001\n",
            &[
                ("AERIE_STORAGE__SERVER__HTTP_PORT", "2000"),
                ("AERIE_STORAGE__NAME", "123"),
                ("AERIE_SCYLLA_NODES", "ignored"),
            ],
            &[
                "storage.server.grpc_port=3001",
                "storage.server.request_timeout=5s",
            ],
        );
        let t: Top = load(&s, |_| {}).unwrap();
        assert_eq!(t.data_dir, "/a");
        assert_eq!(t.storage.server.http_port, 2000);
        assert_eq!(t.storage.server.grpc_port, 3001);
        assert_eq!(t.storage.name, "123", "string options stay strings");
        assert_eq!(t.storage.server.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let (_d, s) = sources("[storage.server]\nhttp_prot = 1\n", &[], &[]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(
            e.contains("unknown key \"storage.server.http_prot\""),
            "{e}"
        );
        assert!(e.contains("aerie.toml"), "{e}");
        assert!(e.contains("http_port"), "lists the expected keys: {e}");
    }

    #[test]
    fn unknown_key_from_flag_and_env_are_named() {
        let (_d, s) = sources("", &[], &["storage.htp_port=1"]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("\"storage.htp_port\""), "{e}");
        assert!(e.contains("--set storage.htp_port=1"), "{e}");
        let (_d, s) = sources("", &[("AERIE_STORAGE__NAM", "x")], &[]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("AERIE_STORAGE__NAM"), "{e}");
    }

    #[test]
    fn bad_port_is_named() {
        let (_d, s) = sources("[storage.server]\nhttp_port = 70000\n", &[], &[]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("storage.server.http_port"), "{e}");
        let (_d, s) = sources("", &[], &["storage.server.grpc_port=abc"]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("storage.server.grpc_port"), "{e}");
    }

    #[test]
    fn missing_file_and_bad_syntax_name_the_file() {
        let s = Sources {
            file: Some("/nonexistent/aerie.toml".into()),
            ..Default::default()
        };
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/aerie.toml"), "{e}");
        let (_d, s) = sources("[storage\n", &[], &[]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let (_d, s) = sources("", &[], &["storage.server.max_concurrent_requests=0"]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("storage.server.max_concurrent_requests"), "{e}");
    }

    #[test]
    fn malformed_set_is_rejected() {
        let (_d, s) = sources("", &[], &["storage.server.http_port"]);
        let e = load::<Top>(&s, |_| {}).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn common_checks_addresses() {
        let mut c = Common {
            memcached: vec!["localhost".into()],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("memcached"));
        c.memcached = vec!["127.0.0.1:11211".into()];
        c.listen_host = "nowhere".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("listen_host")
        );
        assert_eq!(split_list("a:1, b:2,,"), vec!["a:1", "b:2"]);
    }
}
