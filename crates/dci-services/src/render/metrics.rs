//! What the render service measures about itself, exported at `GET /metrics`
//! in Prometheus text format (as the model servers do): frame time, server-side
//! input-to-frame latency, and counts of frames, inputs and sessions.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets; `+Inf` is implied.
pub const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5];

/// A cumulative histogram of durations with fixed [`BUCKETS`], safe to share between threads.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram in Prometheus text format.
    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The render service's counters, shared by every session and request.
#[derive(Debug, Default)]
pub struct RenderMetrics {
    /// Frames sent to stream clients.
    pub frames: AtomicU64,
    /// Frames rendered but replaced by a newer one before a slow client took them.
    pub frames_dropped: AtomicU64,
    /// Input messages applied.
    pub inputs: AtomicU64,
    /// Input messages refused (malformed or out of range).
    pub inputs_rejected: AtomicU64,
    /// Stream sessions opened.
    pub sessions: AtomicU64,
    /// Stream sessions open now.
    pub sessions_active: AtomicU64,
    /// Stream sessions refused because the service was at its session limit.
    pub sessions_refused: AtomicU64,
    /// Still frames served by `GET /frame`.
    pub stills: AtomicU64,
    /// Time to ray-trace and encode one stream frame.
    pub frame_time: Histogram,
    /// From an input's arrival to the moment the first frame reflecting it was written to the socket.
    pub input_to_frame: Histogram,
}

impl RenderMetrics {
    /// Everything, in Prometheus text format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let counters = [
            ("dci_render_frames_total", "Stream frames sent to clients.", &self.frames),
            (
                "dci_render_frames_dropped_total",
                "Stream frames replaced before a slow client took them.",
                &self.frames_dropped,
            ),
            ("dci_render_inputs_total", "Input events applied to a camera.", &self.inputs),
            (
                "dci_render_inputs_rejected_total",
                "Input events refused as malformed or out of range.",
                &self.inputs_rejected,
            ),
            ("dci_render_sessions_total", "Stream sessions opened.", &self.sessions),
            (
                "dci_render_sessions_refused_total",
                "Stream sessions refused at the session limit.",
                &self.sessions_refused,
            ),
            ("dci_render_stills_total", "Still PNG frames served by GET /frame.", &self.stills),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let name = "dci_render_sessions_active";
        let _ = writeln!(
            out,
            "# HELP {name} Stream sessions open now.\n# TYPE {name} gauge\n{name} {}",
            self.sessions_active.load(Ordering::Relaxed)
        );
        self.frame_time.write(&mut out, "dci_render_frame_seconds", "Time to ray-trace and encode one stream frame.");
        self.input_to_frame.write(
            &mut out,
            "dci_render_input_to_frame_seconds",
            "From an input's arrival to the first frame reflecting it written to the socket.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 40, 40, 4000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.write(&mut out, "x", "help");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# HELP x help");
        assert_eq!(lines[1], "# TYPE x histogram");
        assert_eq!(lines[2], "x_bucket{le=\"0.001\"} 2");
        assert_eq!(lines[3], "x_bucket{le=\"0.0025\"} 2");
        assert_eq!(lines[4], "x_bucket{le=\"0.005\"} 3");
        assert_eq!(lines[8], "x_bucket{le=\"0.05\"} 5");
        assert_eq!(lines[15], "x_bucket{le=\"2.5\"} 5");
        assert_eq!(lines[16], "x_bucket{le=\"+Inf\"} 6");
        assert_eq!(lines[17], "x_sum 4.084");
        assert_eq!(lines[18], "x_count 6");
        assert_eq!(h.count(), 6);
    }
}
