//! Toxiproxy's `-proxy-metrics` byte counters, served as Prometheus text on GET /metrics.
//!
//! Toxiproxy adds a connection's bytes when the connection ends; these counters grow as bytes flow.

use crate::model::Direction;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes read from the source and written to the destination, per direction.
#[derive(Default)]
pub struct ProxyCounters {
    pub received: [AtomicU64; 2],
    pub sent: [AtomicU64; 2],
}

/// Proxy name, listener, upstream: one series per label set, kept after the proxy changes (as counters are).
type Labels = (String, String, String);

pub struct Metrics {
    pub proxy_metrics: bool,
    pub runtime_metrics: bool,
    series: Mutex<BTreeMap<Labels, Arc<ProxyCounters>>>,
}

impl Metrics {
    pub fn new(proxy_metrics: bool, runtime_metrics: bool) -> Self {
        Self { proxy_metrics, runtime_metrics, series: Mutex::default() }
    }

    /// GET /metrics exists only when some metrics were asked for, as in Toxiproxy.
    pub fn route_enabled(&self) -> bool {
        self.proxy_metrics || self.runtime_metrics
    }

    pub fn counters(&self, proxy: &str, listener: &str, upstream: &str) -> Arc<ProxyCounters> {
        let key = (proxy.to_owned(), listener.to_owned(), upstream.to_owned());
        self.series.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.proxy_metrics {
            return out;
        }
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        type Family = (&'static str, &'static str, fn(&ProxyCounters) -> &[AtomicU64; 2]);
        let families: [Family; 2] = [
            ("received_bytes_total", "Bytes read from the source of each direction.", |c| &c.received),
            ("sent_bytes_total", "Bytes written to the destination of each direction.", |c| &c.sent),
        ];
        for (name, help, values) in families {
            let _ = writeln!(out, "# HELP toxiproxy_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE toxiproxy_proxy_{name} counter");
            for ((proxy, listener, upstream), counters) in series.iter() {
                for direction in Direction::ALL {
                    let value = values(counters)[direction as usize].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "toxiproxy_proxy_{name}{{direction=\"{}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}} {value}",
                        direction.as_str(),
                        escape(listener),
                        escape(proxy),
                        escape(upstream),
                    );
                }
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new(true, false);
        let counters = metrics.counters("p\"1", "[::]:8666", "up:80");
        counters.sent[Direction::Downstream as usize].fetch_add(42, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("# TYPE toxiproxy_proxy_sent_bytes_total counter"), "{text}");
        assert!(
            text.contains(
                "toxiproxy_proxy_sent_bytes_total{direction=\"downstream\",listener=\"[::]:8666\",proxy=\"p\\\"1\",upstream=\"up:80\"} 42"
            ),
            "{text}"
        );
        assert!(Metrics::new(false, false).render().is_empty());
    }
}
