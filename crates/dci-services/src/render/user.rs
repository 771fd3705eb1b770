//! The scripted simulated user (SPEC R-CK4): connects to a live stream like a
//! viewer would, sends a script of inputs, and measures what it sees: frame
//! rate, frame intervals, input-to-frame latency (from sending an input to
//! receiving the first frame whose header says it reflects it), and whether
//! each input changed the picture. The checker runs it against containers in
//! service; `dci bench services` reports its figures.
//!
//! Timing is measured with the local clock on the client side, so it includes
//! the network and the service's queueing, as a user experiences it. A real
//! user's inputs fall at any moment between two frames, and where they fall
//! matters (an input just after the camera was read waits a whole extra
//! frame), so each input is sent at a different phase of the frame interval:
//! input `i` waits `frac(i * 0.618...)` of the recent median interval after
//! the last frame (a low-discrepancy sequence: deterministic, evenly spread),
//! receiving frames meanwhile.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::controls::{Input, InputMessage, Key};
use super::stream::{FrameError, FrameHeader};

/// What the simulated user does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserScript {
    /// Inputs sent one after another; each waits for the frame that answers the previous one.
    pub inputs: Vec<Input>,
    /// Frames to watch before the first input (at least 1 is always awaited).
    pub warmup_frames: u32,
    /// Frames to watch after each input is answered, before the next one.
    pub frames_between_inputs: u32,
    /// Longest wait for a frame (also for connecting); a longer gap ends the run as stalled.
    pub frame_timeout: Duration,
}

impl UserScript {
    /// A script of `inputs` inputs cycling through drags, keys and zooms, each of
    /// which moves the demo camera visibly and which together stay in range.
    pub fn standard(inputs: usize) -> UserScript {
        const CYCLE: [Input; 8] = [
            Input::Orbit { dx: 40.0, dy: 10.0 },
            Input::Key { key: Key::ArrowRight },
            Input::Zoom { delta: -1.0 },
            Input::Key { key: Key::ArrowUp },
            Input::Orbit { dx: -25.0, dy: -10.0 },
            Input::Zoom { delta: 1.0 },
            Input::Key { key: Key::A },
            Input::Key { key: Key::ArrowDown },
        ];
        UserScript {
            inputs: CYCLE.iter().copied().cycle().take(inputs).collect(),
            warmup_frames: 3,
            frames_between_inputs: 2,
            frame_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for UserScript {
    /// [`UserScript::standard`] with 8 inputs.
    fn default() -> Self {
        UserScript::standard(8)
    }
}

/// Order statistics of a set of durations, in milliseconds (nearest-rank percentiles).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many durations.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Summary {
    /// The summary of `samples`, or `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Some(Summary {
            samples: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50)),
            p99_ms: ms(percentile(&sorted, 99)),
            max_ms: ms(max),
        })
    }
}

/// The nearest-rank `pct`-th percentile of non-empty, sorted `sorted`.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (pct * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// What happened to one scripted input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputOutcome {
    /// The sequence number it was sent with.
    pub seq: u64,
    /// The input.
    pub input: Input,
    /// From sending it to receiving the first frame reflecting it; `None` if none came.
    pub latency_ms: Option<f64>,
    /// Whether that frame differs from the last frame received before the input.
    pub changed: Option<bool>,
}

/// What the simulated user measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserReport {
    /// The stream's URL.
    pub url: String,
    /// Frame size, from the last frame's header.
    pub width: u16,
    /// Frame height.
    pub height: u16,
    /// Frames received.
    pub frames: u64,
    /// From the first frame to the last, seconds.
    pub seconds: f64,
    /// Frames per second over that span (0 with fewer than two frames).
    pub fps: f64,
    /// Time between consecutive frames.
    pub frame_interval: Option<Summary>,
    /// Input-to-frame latency of the answered inputs.
    pub input_to_frame: Option<Summary>,
    /// The service's render + encode time per frame, from the frame headers.
    pub server_frame_time: Option<Summary>,
    /// Every input sent, in order.
    pub inputs: Vec<InputOutcome>,
    /// Inputs answered by a frame.
    pub inputs_answered: usize,
    /// Inputs whose answering frame differed from the frame before.
    pub inputs_changed_view: usize,
    /// Error messages the service sent back.
    pub service_errors: Vec<String>,
    /// Set when the run ended early because no frame came within the timeout.
    pub stalled: Option<String>,
}

/// Why the simulated user could not run.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The WebSocket connection could not be opened.
    #[error("connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The service sent something that is not a frame.
    #[error("stream: {0}")]
    Frame(#[from] FrameError),
    /// The connection failed after opening.
    #[error("stream: {0}")]
    Socket(String),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One frame as received.
struct Received {
    header: FrameHeader,
    jpeg: Vec<u8>,
    at: Instant,
}

/// Everything measured so far.
struct Run {
    frames: Vec<(Instant, FrameHeader)>,
    last_jpeg: Vec<u8>,
    errors: Vec<String>,
}

/// Connects to `ws_url` (e.g. `ws://127.0.0.1:8080/stream?fps=30`), plays
/// `script` and reports. A stall (no frame within `script.frame_timeout`)
/// ends the run early with a partial report saying so; only failing to
/// connect, a broken connection or a malformed frame are errors.
pub async fn simulate_user(ws_url: &str, script: &UserScript) -> Result<UserReport, UserError> {
    let connect = tokio::time::timeout(script.frame_timeout, connect_async(ws_url));
    let mut socket = match connect.await {
        Ok(Ok((socket, _response))) => socket,
        Ok(Err(e)) => return Err(UserError::Connect { url: ws_url.to_string(), reason: e.to_string() }),
        Err(_) => {
            let reason = format!("expected a handshake within {:?}, found none", script.frame_timeout);
            return Err(UserError::Connect { url: ws_url.to_string(), reason });
        }
    };
    let mut run = Run { frames: Vec::new(), last_jpeg: Vec::new(), errors: Vec::new() };
    let mut outcomes = Vec::new();
    let stalled = play(&mut socket, script, &mut run, &mut outcomes).await?;
    let _ = socket.close(None).await;
    Ok(report(ws_url, run, outcomes, stalled))
}

/// Plays the script; returns `Some(why)` if it stalled.
async fn play(
    socket: &mut Socket,
    script: &UserScript,
    run: &mut Run,
    outcomes: &mut Vec<InputOutcome>,
) -> Result<Option<String>, UserError> {
    for _ in 0..script.warmup_frames.max(1) {
        if let Some(why) = watch(socket, script, run).await? {
            return Ok(Some(why));
        }
    }
    for (i, &input) in script.inputs.iter().enumerate() {
        let seq = i as u64 + 1;
        let send_at = Instant::now() + recent_interval(&run.frames).mul_f64(phase(seq));
        while let Some(frame) = next_frame(socket, send_at, &mut run.errors).await? {
            record(run, frame);
        }
        let before = run.last_jpeg.clone();
        let sent = Instant::now();
        let message = InputMessage { seq, input }.to_json();
        socket.send(Message::Text(message.into())).await.map_err(|e| UserError::Socket(e.to_string()))?;
        outcomes.push(InputOutcome { seq, input, latency_ms: None, changed: None });
        loop {
            let Some(frame) = next_frame(socket, sent + script.frame_timeout, &mut run.errors).await? else {
                return Ok(Some(format!("no frame within {:?} after input {seq}", script.frame_timeout)));
            };
            let answered = frame.header.input_seq >= seq;
            record(run, frame);
            if answered {
                let outcome = outcomes.last_mut().expect("pushed above");
                outcome.latency_ms = Some(run.frames.last().map_or(0.0, |f| ms(f.0 - sent)));
                outcome.changed = Some(run.last_jpeg != before);
                break;
            }
        }
        for _ in 0..script.frames_between_inputs {
            if let Some(why) = watch(socket, script, run).await? {
                return Ok(Some(why));
            }
        }
    }
    Ok(None)
}

/// Waits for one frame and records it; `Some(why)` on a stall.
async fn watch(socket: &mut Socket, script: &UserScript, run: &mut Run) -> Result<Option<String>, UserError> {
    match next_frame(socket, Instant::now() + script.frame_timeout, &mut run.errors).await? {
        Some(frame) => {
            record(run, frame);
            Ok(None)
        }
        None => Ok(Some(format!("no frame within {:?} after frame {}", script.frame_timeout, run.frames.len()))),
    }
}

fn record(run: &mut Run, frame: Received) {
    run.frames.push((frame.at, frame.header));
    run.last_jpeg = frame.jpeg;
}

/// Where in the frame interval input `seq` is sent: `frac(seq * (golden ratio - 1))`, in `0..1`.
fn phase(seq: u64) -> f64 {
    (seq as f64 * 0.618_033_988_749_895).fract()
}

/// The median of the last 16 frame intervals (zero with fewer than two frames).
fn recent_interval(frames: &[(Instant, FrameHeader)]) -> Duration {
    let recent = &frames[frames.len().saturating_sub(17)..];
    let mut intervals: Vec<Duration> = recent.windows(2).map(|w| w[1].0 - w[0].0).collect();
    intervals.sort_unstable();
    intervals.get(intervals.len() / 2).copied().unwrap_or_default()
}

/// The next frame, collecting text messages (service errors) on the way; `None` once `deadline` passes.
async fn next_frame(
    socket: &mut Socket,
    deadline: Instant,
    errors: &mut Vec<String>,
) -> Result<Option<Received>, UserError> {
    loop {
        let message = match tokio::time::timeout_at(deadline.into(), socket.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(UserError::Socket("the service closed the stream".to_string())),
            Ok(Some(Err(e))) => return Err(UserError::Socket(e.to_string())),
            Ok(Some(Ok(m))) => m,
        };
        match message {
            Message::Binary(bytes) => {
                let at = Instant::now();
                let (header, jpeg) = FrameHeader::decode(&bytes)?;
                return Ok(Some(Received { header, jpeg: jpeg.to_vec(), at }));
            }
            Message::Text(text) => errors.push(text.to_string()),
            Message::Close(frame) => {
                let why = frame.map_or_else(|| "no reason".to_string(), |f| f.reason.to_string());
                return Err(UserError::Socket(format!("the service closed the stream: {why}")));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(url: &str, run: Run, inputs: Vec<InputOutcome>, stalled: Option<String>) -> UserReport {
    let intervals: Vec<Duration> = run.frames.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let span = match (run.frames.first(), run.frames.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => Duration::ZERO,
    };
    let fps = if span.is_zero() { 0.0 } else { intervals.len() as f64 / span.as_secs_f64() };
    let latencies: Vec<Duration> =
        inputs.iter().filter_map(|o| o.latency_ms).map(|m| Duration::from_secs_f64(m / 1000.0)).collect();
    let server: Vec<Duration> = run
        .frames
        .iter()
        .map(|(_, h)| Duration::from_micros(u64::from(h.render_us) + u64::from(h.encode_us)))
        .collect();
    let (width, height) = run.frames.last().map_or((0, 0), |(_, h)| (h.width, h.height));
    UserReport {
        url: url.to_string(),
        width,
        height,
        frames: run.frames.len() as u64,
        seconds: span.as_secs_f64(),
        fps,
        frame_interval: Summary::of(&intervals),
        input_to_frame: Summary::of(&latencies),
        server_frame_time: Summary::of(&server),
        inputs_answered: inputs.iter().filter(|o| o.latency_ms.is_some()).count(),
        inputs_changed_view: inputs.iter().filter(|o| o.changed == Some(true)).count(),
        inputs,
        service_errors: run.errors,
        stalled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&ms(&[7])).expect("one sample");
        assert_eq!((one.samples, one.p50_ms, one.p99_ms, one.max_ms), (1, 7.0, 7.0, 7.0));
        // 1..=100 shuffled: p50 is 50, p99 is 99.
        let hundred: Vec<u64> = (1..=100).map(|i| (i * 37) % 100 + 1).collect();
        let s = Summary::of(&ms(&hundred)).expect("samples");
        assert_eq!((s.samples, s.p50_ms, s.p99_ms, s.max_ms), (100, 50.0, 99.0, 100.0));
        // Few samples: p99 is the largest.
        let s = Summary::of(&ms(&[30, 10, 20])).expect("samples");
        assert_eq!((s.p50_ms, s.p99_ms), (20.0, 30.0));
    }

    #[test]
    fn input_phases_spread_evenly_over_the_frame_interval() {
        let mut phases: Vec<f64> = (1..=100).map(phase).collect();
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        phases.sort_by(f64::total_cmp);
        // Every tenth of the interval gets between 8 and 12 of the 100 inputs.
        for decile in 0..10 {
            let lo = f64::from(decile) / 10.0;
            let n = phases.iter().filter(|&&p| lo <= p && p < lo + 0.1).count();
            assert!((8..=12).contains(&n), "decile {decile}: {n}");
        }
    }

    #[test]
    fn the_standard_script_cycles_and_returns_to_its_pitch_and_distance() {
        use crate::render::{Camera, Controls};
        let script = UserScript::standard(16);
        assert_eq!(script.inputs.len(), 16);
        assert_eq!(script.inputs[..8], script.inputs[8..]);
        let start = Camera::default();
        let mut controls = Controls::new(start);
        for (i, &input) in script.inputs.iter().enumerate() {
            let before = controls.camera();
            controls.handle(&InputMessage { seq: i as u64 + 1, input }).expect("valid input");
            assert_ne!(controls.camera(), before, "input {i} ({input:?}) moves the camera");
        }
        let end = controls.camera();
        assert!((end.pitch_deg - start.pitch_deg).abs() < 1e-9 && (end.distance - start.distance).abs() < 1e-9);
    }
}
