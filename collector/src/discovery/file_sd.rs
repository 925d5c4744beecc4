//! The static targets file in Prometheus `file_sd` format (JSON, or YAML when named
//! `*.yml`/`*.yaml`), reloaded when it
//! changes (a bad new version is logged and counted; the last good one stays).
//!
//! ```json
//! [{"targets": ["host:port"], "labels": {"job": "web", "__metrics_path__": "/admin/metrics.json"}}]
//! ```
//! `job` (or `service`) gives the service; `instance` (or `source`) the source, else the
//! target address; `__scheme__`, `__metrics_path__`, `__scrape_interval__` and
//! `__scrape_timeout__` set how it is scraped; `role` (comma-separated) names the
//! roles its sources are members of; other labels are kept as metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use service_kit::Shutdown;
use stats::Counter;

use super::{Target, TargetSet, role_name};

/// Why a targets file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    #[error("cannot read targets file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("targets file {path} is not file_sd JSON or YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("targets file {path}, group {group}: {message}")]
    Group {
        path: PathBuf,
        group: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Defaults for labels a group does not set.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Scrape interval.
    pub interval: Duration,
    /// Scrape timeout.
    pub timeout: Duration,
}

fn duration(label: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{label} \"{v}\" is not a duration: {e}"))
}

/// Whether `path` names a YAML file (`.yml` / `.yaml`); other files are JSON.
fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

/// Parses a file_sd document: YAML when the file is named `*.yml`/`*.yaml`, else JSON.
pub fn parse(path: &Path, text: &str, defaults: Defaults) -> Result<Vec<Target>, FileSdError> {
    let syntax = |message: String| FileSdError::Syntax {
        path: path.to_owned(),
        message,
    };
    let groups: Vec<Group> = if is_yaml(path) {
        let value = super::yaml::to_json(text).map_err(syntax)?;
        serde_json::from_value(value).map_err(|e| syntax(e.to_string()))?
    } else {
        serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
    };
    let mut out = Vec::new();
    for (gi, g) in groups.into_iter().enumerate() {
        let err = |message: String| FileSdError::Group {
            path: path.to_owned(),
            group: gi,
            message,
        };
        let l = &g.labels;
        let service = l
            .get("service")
            .or_else(|| l.get("job"))
            .cloned()
            .ok_or_else(|| err("no \"job\" or \"service\" label".into()))?;
        let scheme = l.get("__scheme__").map_or("http", String::as_str);
        if scheme != "http" && scheme != "https" {
            return Err(err(format!("__scheme__ \"{scheme}\" is not http or https")));
        }
        let path_label = l.get("__metrics_path__").map_or("/metrics", String::as_str);
        if !path_label.starts_with('/') {
            return Err(err(format!(
                "__metrics_path__ \"{path_label}\" does not start with '/'"
            )));
        }
        let interval = match l.get("__scrape_interval__") {
            Some(v) => duration("__scrape_interval__", v).map_err(err)?,
            None => defaults.interval,
        };
        let timeout = match l.get("__scrape_timeout__") {
            Some(v) => duration("__scrape_timeout__", v).map_err(err)?,
            None => defaults.timeout.min(interval.mul_f64(0.8)),
        };
        if interval.is_zero() || timeout.is_zero() || timeout >= interval {
            return Err(err(format!(
                "scrape timeout {} must be positive and shorter than the interval {}",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            )));
        }
        let roles: Vec<String> = l
            .get("role")
            .map(|r| {
                r.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(role_name)
                    .collect()
            })
            .unwrap_or_default();
        let labels: BTreeMap<String, String> = l
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("__")
                    && !matches!(
                        k.as_str(),
                        "job" | "service" | "instance" | "source" | "role"
                    )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for addr in &g.targets {
            if addr.is_empty() || addr.contains('/') || addr.chars().any(char::is_whitespace) {
                return Err(err(format!("target \"{addr}\" is not host:port")));
            }
            let source = l
                .get("source")
                .or_else(|| l.get("instance"))
                .cloned()
                .unwrap_or_else(|| addr.clone());
            out.push(Target {
                service: service.clone(),
                source,
                url: format!("{scheme}://{addr}{path_label}"),
                interval,
                timeout,
                roles: roles.clone(),
                labels: labels.clone(),
                local: false,
            });
        }
    }
    Ok(out)
}

/// Loads the file at `path`.
pub fn load(path: &Path, defaults: Defaults) -> Result<Vec<Target>, FileSdError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileSdError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, defaults)
}

/// Watches `path`, publishing its targets as provider `file_sd` whenever its content
/// changes, until `shutdown`.
pub async fn watch(
    path: PathBuf,
    defaults: Defaults,
    every: Duration,
    set: Arc<TargetSet>,
    errors: Counter,
    shutdown: Shutdown,
) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        match tokio::fs::read(&path).await {
            Ok(bytes) if last.as_ref() != Some(&bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                match parse(&path, &text, defaults) {
                    Ok(targets) => {
                        tracing::info!(path = %path.display(), targets = targets.len(), "targets file loaded");
                        set.set("file_sd", targets);
                    }
                    Err(e) => {
                        errors.incr();
                        tracing::error!(error = %e, "targets file not loaded; keeping the last good targets");
                    }
                }
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(e) => {
                if last.is_some() {
                    errors.incr();
                    tracing::error!(path = %path.display(), error = %e, "cannot read the targets file; keeping the last good targets");
                    last = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    };

    #[test]
    fn labels_shape_targets() {
        let text = r#"[{"targets":["10.0.0.1:9990","h2:9990"],"labels":{"job":"web","__metrics_path__":"/admin/metrics.json","__scrape_interval__":"15s","role":"frontend, role.edge","dc":"east"}},
                      {"targets":["db:9100"],"labels":{"job":"node","instance":"db-1","__scheme__":"https","__scrape_timeout__":"2s"}}]"#;
        let t = parse(Path::new("t.json"), text, D).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].url, "http://10.0.0.1:9990/admin/metrics.json");
        assert_eq!(t[0].source, "10.0.0.1:9990");
        assert_eq!(t[0].interval, Duration::from_secs(15));
        assert_eq!(t[0].timeout, Duration::from_secs(10));
        assert_eq!(t[0].roles, vec!["role.frontend", "role.edge"]);
        assert_eq!(t[0].labels.get("dc").map(String::as_str), Some("east"));
        assert_eq!(t[2].url, "https://db:9100/metrics");
        assert_eq!(t[2].source, "db-1");
        assert_eq!(t[2].timeout, Duration::from_secs(2));
        assert!(t[0].offset() < t[0].interval);
    }

    #[test]
    fn errors_name_the_group() {
        let e = |s: &str| parse(Path::new("t.json"), s, D).unwrap_err().to_string();
        assert_eq!(
            e(r#"[{"targets":["a:1"],"labels":{}}]"#),
            "targets file t.json, group 0: no \"job\" or \"service\" label"
        );
        assert!(e(r#"[{"targets":["a:1"],"labels":{"job":"x","__scrape_interval__":"5s"}}, {"targets":["b:1"],"labels":{"job":"x","__scrape_timeout__":"2m"}}]"#).contains("group 1: scrape timeout 2m must be positive and shorter than the interval 1m"));
        assert!(e("[{").starts_with("targets file t.json is not file_sd JSON"));
    }

    #[test]
    fn yaml_files_read_like_json_ones() {
        let text = "- targets: ['h:1']\n  labels:\n    job: web\n    __scrape_interval__: 15s\n";
        let t = parse(Path::new("t.yml"), text, D).unwrap();
        assert_eq!(t[0].url, "http://h:1/metrics");
        assert_eq!(t[0].interval, Duration::from_secs(15));
        let e = parse(Path::new("t.yaml"), "- targets: ['h:1'\n", D)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("targets file t.yaml is not file_sd JSON or YAML: line 1"),
            "{e}"
        );
    }
}
