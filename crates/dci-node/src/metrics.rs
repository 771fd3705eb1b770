//! The process-wide Prometheus recorder behind `/metrics` (R-UX5).

use std::sync::{Arc, OnceLock};

use dci_gateway::server::MetricsRender;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process and returns a renderer.
pub fn install() -> MetricsRender {
    let handle = HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone();
    Arc::new(move || handle.as_ref().map(|h| h.render()).unwrap_or_default())
}
