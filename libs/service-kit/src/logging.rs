//! `tracing` logs for every mode: a level filter (overridden by `RUST_LOG`) and a
//! text or JSON format.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How and how much to log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A filter such as `info` or `info,collector=debug`; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log level \"{level}\" is not a valid filter: {message}")]
    Filter { level: String, message: String },
}

impl LogConfig {
    /// Checks the filter without installing it.
    pub fn filter(&self) -> Result<EnvFilter, LogError> {
        match std::env::var("RUST_LOG") {
            Ok(env) if !env.is_empty() => EnvFilter::try_new(&env).map_err(|e| LogError::Filter {
                level: env,
                message: e.to_string(),
            }),
            _ => EnvFilter::try_new(&self.level).map_err(|e| LogError::Filter {
                level: self.level.clone(),
                message: e.to_string(),
            }),
        }
    }
}

/// Installs the global subscriber; a second call (tests, all-in-one) is a no-op.
pub fn init(config: &LogConfig) -> Result<(), LogError> {
    let filter = config.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed, which is fine.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
