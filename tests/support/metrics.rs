//! Reading a job's `/metrics` and waiting on it: HTTP, Prometheus text,
//! and "drained" (every input committed, no lag on any internal partition).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kstreams_testkit::committed_offsets;

use super::{Job, free_port};

/// An HTTP response as seen by [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET http://<addr><path>` with a plain HTTP/1.1 request; `None` if the
/// listener cannot be reached (not up yet, or gone).
pub fn http_get(addr: &str, path: &str) -> Option<HttpResponse> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// The samples of metric `name` in a Prometheus text exposition: labels and value.
pub fn metric_samples(text: &str, name: &str) -> Vec<(HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        out.push((labels, value));
    }
    out
}

/// The sum of the samples of metric `name` in a Prometheus text exposition
/// whose labels contain every `label="value"` of `filters` (a value ending
/// in `*` matches by prefix). `None` if no sample matched.
pub fn metric_sum(text: &str, name: &str, filters: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = metric_samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            filters.iter().all(|(k, want)| match labels.get(*k) {
                Some(v) => match want.strip_suffix('*') {
                    Some(prefix) => v.starts_with(prefix),
                    None => v == want,
                },
                None => false,
            })
        })
        .map(|(_, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// The samples of `name` summed over the job's `/metrics` at `addr`.
pub fn scrape_sum(addr: &str, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics")?.body;
    metric_sum(&text, name, &[])
}

/// A loopback `host:port` for a job's `--metrics-listen`.
pub fn metrics_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Why the internal (repartition) topics of `app` are not drained, given
/// the `/metrics` texts of its live jobs: every partition that holds
/// records must report a consumer lag, and it must be 0. A partition
/// whose task is missing (closed, or not created yet) reports none, so it
/// counts as not drained. (The lag is measured from the consumer's
/// position, which moves past commit markers, unlike a committed offset.)
pub fn internal_lag_gaps(bs: &str, app: &str, texts: &[String]) -> Vec<String> {
    let prefix = format!("{app}-");
    let mut lags: HashMap<(String, i32), f64> = HashMap::new();
    for text in texts {
        for (labels, v) in metric_samples(text, "kstreams_consumer_lag") {
            if let (Some(t), Some(p)) = (labels.get("topic"), labels.get("partition"))
                && t.starts_with(&prefix)
                && let Ok(p) = p.parse::<i32>()
            {
                *lags.entry((t.clone(), p)).or_default() += v;
            }
        }
    }
    let mut why = Vec::new();
    let internal = kstreams_testkit::topic_names(bs)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.starts_with(&prefix) && t.ends_with("-repartition"));
    for t in internal {
        for (p, e) in kstreams_testkit::end_offsets(bs, &t).unwrap_or_default() {
            match lags.get(&(t.clone(), p)) {
                _ if e == 0 => {}
                Some(l) if *l == 0.0 => {}
                l => why.push(format!("{t}/{p}: lag {l:?}")),
            }
        }
    }
    why
}

/// Waits until group `app` has committed `want[p]` records of every
/// partition `p` of `input` and the job (serving `/metrics` on `metrics`)
/// has drained its internal topics ([`internal_lag_gaps`]), twice in a
/// row. Fails if the job exits or nothing settles within 180 s.
pub fn wait_drained(
    bs: &str,
    app: &str,
    input: &str,
    want: &[usize],
    job: &mut Job,
    metrics: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut settled = 0;
    while settled < 2 {
        assert!(job.is_running(), "job exited early:\n{}", job.log_tail(40));
        // Right after start the group may have no coordinator yet: ask again.
        let committed = committed_offsets(bs, app, input).unwrap_or_default();
        let mut why = Vec::new();
        if !want
            .iter()
            .enumerate()
            .all(|(p, n)| committed.get(&(p as i32)) == Some(&(*n as i64)))
        {
            why.push(format!("input committed {committed:?} of {want:?}"));
        }
        match http_get(metrics, "/metrics") {
            Some(r) => why.extend(internal_lag_gaps(bs, app, &[r.body])),
            None => why.push("no /metrics".to_string()),
        }
        settled = if why.is_empty() { settled + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "not drained within 180 s: {why:?}\n{}",
            job.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
}
