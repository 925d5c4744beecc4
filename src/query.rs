//! `aerie query`: a command-line client of the query-federator's HTTP API
//! (Prometheus JSON envelope), printing a table or the raw JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::QueryArgs;

/// Sends the query and prints the answer.
pub async fn run(args: &QueryArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/');
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .to_string();
    let (url, params): (String, Vec<(&str, &str)>) = match &args.start {
        Some(start) => (
            format!("{base}/api/v1/query_range"),
            vec![
                ("query", args.expr.as_str()),
                ("start", start.as_str()),
                ("end", args.end.as_deref().unwrap_or(&now)),
                ("step", args.step.as_str()),
            ],
        ),
        None => (
            format!("{base}/api/v1/query"),
            vec![("query", args.expr.as_str()), ("time", now.as_str())],
        ),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build an HTTP client")?;
    let resp = client
        .post(&url)
        .form(&params)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the query-federator at {base} (is aerie running?)")
        })?;
    let status = resp.status();
    let body = resp.text().await.context("cannot read the answer")?;
    let json: Option<Value> = serde_json::from_str(&body).ok();
    if args.json {
        println!("{body}");
    }
    match json {
        Some(v) if v["status"] == "success" => {
            if !args.json {
                print_table(&v["data"]);
            }
            // A partial answer says so, even when the JSON goes to stdout.
            for w in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            Ok(())
        }
        Some(v) if v["status"] == "error" => bail!(
            "query failed ({}): {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or("no message")
        ),
        _ => bail!(
            "the query-federator at {url} answered {status}: {}",
            body.trim()
        ),
    }
}

/// One line per point: the series key, the time (Unix seconds) and the value.
fn print_table(data: &Value) {
    let empty = Vec::new();
    let results = data["result"].as_array().unwrap_or(&empty);
    if results.is_empty() {
        println!("(no series)");
    }
    for r in results {
        let m = &r["metric"];
        let key = format!(
            "{} {} {}",
            m["service"].as_str().unwrap_or("-"),
            m["source"].as_str().unwrap_or("-"),
            m["metric"].as_str().unwrap_or("-")
        );
        let points: Vec<&Value> = match (r.get("values"), r.get("value")) {
            (Some(Value::Array(vs)), _) => vs.iter().collect(),
            (_, Some(v)) => vec![v],
            _ => Vec::new(),
        };
        for p in points {
            println!("{key}\t{}\t{}", p[0], p[1].as_str().unwrap_or("?"));
        }
    }
}
