//! The live stream over WebSocket (`GET /stream`): the IO around [`Controls`]
//! and the tracer.
//!
//! Each session runs three tasks: a reader applies input messages to the
//! session's [`Controls`]; a renderer ticks at the requested frame rate, renders
//! the current camera on the blocking pool and puts the JPEG into a
//! one-frame slot; a writer sends whatever frame is in the slot. A slow client
//! therefore never makes frames pile up: a newer frame replaces the unsent one
//! (counted as dropped), and memory per session stays at two frames. The
//! session ends when any task ends (client gone, socket error).
//!
//! Frames are rendered at a fixed rate whether or not the camera moves (the
//! frame rate is what a viewer and the checker measure). An input is applied
//! at once but shows in the next frame that starts after it: input-to-frame
//! latency is about half a frame period plus one render, plus the network.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::MissedTickBehavior;

use super::camera::Camera;
use super::controls::{Controls, InputMessage};
use super::encode::encode_jpeg;
use super::metrics::RenderMetrics;
use super::scene::Scene;
use super::stream::{FrameHeader, HEADER_LEN, StreamParams};
use super::tracer::render;

/// Stream sessions served at once; further clients get `503`.
pub const MAX_SESSIONS: usize = 4;
/// Largest input message accepted, bytes.
pub const MAX_INPUT_BYTES: usize = 4096;
/// Inputs waiting for their first frame that a session remembers (for latency);
/// older ones are forgotten when a client floods inputs faster than frames.
const PENDING_INPUTS: usize = 1024;

/// What every session shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) scene: Arc<Scene>,
    /// Frames rendered at once, across sessions and `GET /frame`.
    pub(crate) frames: Arc<Semaphore>,
    pub(crate) sessions: Arc<Semaphore>,
    pub(crate) metrics: Arc<RenderMetrics>,
}

/// A rendered frame waiting to be sent.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frame {
    pub(crate) input_seq: u64,
    pub(crate) bytes: Bytes,
}

/// Holds at most one frame: the newest. `put` replaces, `take` waits.
#[derive(Debug, Default)]
pub(crate) struct FrameSlot {
    frame: Mutex<Option<Frame>>,
    ready: Notify,
}

impl FrameSlot {
    /// Stores `frame`; returns whether it replaced one that was never taken.
    pub(crate) fn put(&self, frame: Frame) -> bool {
        let old = self.frame.lock().unwrap_or_else(PoisonError::into_inner).replace(frame);
        self.ready.notify_one();
        old.is_some()
    }

    /// The newest frame, waiting for one if the slot is empty.
    pub(crate) async fn take(&self) -> Frame {
        loop {
            if let Some(f) = self.frame.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return f;
            }
            self.ready.notified().await;
        }
    }
}

/// Input arrival times, until a frame reflecting them is sent. Time is an input.
#[derive(Debug, Default)]
pub(crate) struct LatencyTracker {
    pending: VecDeque<(u64, Instant)>,
}

impl LatencyTracker {
    /// Input `seq` arrived at `at`. Sequence numbers not above the last one are
    /// ignored (an earlier arrival already covers them).
    pub(crate) fn received(&mut self, seq: u64, at: Instant) {
        if self.pending.back().is_some_and(|&(last, _)| seq <= last) {
            return;
        }
        if self.pending.len() == PENDING_INPUTS {
            self.pending.pop_front();
        }
        self.pending.push_back((seq, at));
    }

    /// A frame reflecting every input up to `input_seq` was sent at `at`: the
    /// latencies of the inputs it answers, oldest first.
    pub(crate) fn shown(&mut self, input_seq: u64, at: Instant) -> Vec<Duration> {
        let mut out = Vec::new();
        while let Some(&(seq, t)) = self.pending.front() {
            if seq > input_seq {
                break;
            }
            out.push(at.saturating_duration_since(t));
            self.pending.pop_front();
        }
        out
    }
}

/// Decrements the active-sessions gauge when the session ends.
struct Active(Arc<RenderMetrics>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.sessions_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one session until the client leaves.
pub(crate) async fn session(socket: WebSocket, params: StreamParams, shared: Shared, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    shared.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    shared.metrics.sessions_active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(shared.metrics.clone());

    let (sink, stream) = socket.split();
    let controls = Arc::new(Mutex::new(Controls::new(params.camera)));
    let tracker = Arc::new(Mutex::new(LatencyTracker::default()));
    let slot = Arc::new(FrameSlot::default());
    let (replies, replies_rx) = mpsc::channel(8);

    let mut reader = tokio::spawn(read_loop(stream, controls.clone(), tracker.clone(), replies, shared.clone()));
    let mut renderer = tokio::spawn(render_loop(params, controls, slot.clone(), shared.clone()));
    let mut writer = tokio::spawn(write_loop(sink, slot, replies_rx, tracker, shared));
    let why = tokio::select! {
        r = &mut reader => r.map_or_else(|e| e.to_string(), |()| "client closed".to_string()),
        r = &mut renderer => r.unwrap_or_else(|e| e.to_string()),
        r = &mut writer => r.unwrap_or_else(|e| e.to_string()),
    };
    reader.abort();
    renderer.abort();
    writer.abort();
    tracing::debug!(%why, "stream session ended");
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    controls: Arc<Mutex<Controls>>,
    tracker: Arc<Mutex<LatencyTracker>>,
    replies: mpsc::Sender<Message>,
    shared: Shared,
) {
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(b) => {
                reject(
                    &replies,
                    &shared,
                    format!("input: expected a JSON text message, found {} binary bytes", b.len()),
                );
                continue;
            }
        };
        let at = Instant::now();
        let applied = InputMessage::parse(text.as_str()).and_then(|msg| {
            // Counted and timed before the renderer can see the new camera.
            let mut controls = controls.lock().unwrap_or_else(PoisonError::into_inner);
            controls.handle(&msg)?;
            tracker.lock().unwrap_or_else(PoisonError::into_inner).received(msg.seq, at);
            shared.metrics.inputs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        if let Err(e) = applied {
            reject(&replies, &shared, e.to_string());
        }
    }
}

/// Counts a refused input and tells the client why (dropped if the client is not reading).
fn reject(replies: &mpsc::Sender<Message>, shared: &Shared, message: String) {
    shared.metrics.inputs_rejected.fetch_add(1, Ordering::Relaxed);
    let _ = replies.try_send(Message::Text(json!({ "error": message }).to_string().into()));
}

/// Renders frames at the requested rate until the session ends; returns why it stopped.
async fn render_loop(
    params: StreamParams,
    controls: Arc<Mutex<Controls>>,
    slot: Arc<FrameSlot>,
    shared: Shared,
) -> String {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / params.fps.max(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut number = 0u64;
    loop {
        tick.tick().await;
        let (camera, input_seq) = {
            let c = controls.lock().unwrap_or_else(PoisonError::into_inner);
            (c.camera(), c.applied())
        };
        let Ok(permit) = shared.frames.clone().acquire_owned().await else {
            return "render pool closed".to_string();
        };
        let scene = shared.scene.clone();
        let quality = params.quality;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            render_frame(&scene, &camera, quality)
        });
        let (jpeg, render_time, encode_time) = match job.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return e,
            Err(e) => return format!("render task failed: {e}"),
        };
        number += 1;
        shared.metrics.frame_time.observe(render_time + encode_time);
        let header = FrameHeader {
            frame: number,
            input_seq,
            render_us: micros(render_time),
            encode_us: micros(encode_time),
            // The camera was validated: both sides are at most 1920.
            width: camera.width as u16,
            height: camera.height as u16,
        };
        let mut bytes = Vec::with_capacity(HEADER_LEN + jpeg.len());
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&jpeg);
        if slot.put(Frame { input_seq, bytes: bytes.into() }) {
            shared.metrics.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Ray-traces and encodes one frame: the JPEG and the time each step took.
fn render_frame(scene: &Scene, camera: &Camera, quality: u8) -> Result<(Vec<u8>, Duration, Duration), String> {
    let t0 = Instant::now();
    let image = render(scene, camera).map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let jpeg = encode_jpeg(&image, quality).map_err(|e| e.to_string())?;
    Ok((jpeg, t1 - t0, t1.elapsed()))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Sends frames (newest first) and error replies until the socket fails; returns why.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    slot: Arc<FrameSlot>,
    mut replies: mpsc::Receiver<Message>,
    tracker: Arc<Mutex<LatencyTracker>>,
    shared: Shared,
) -> String {
    loop {
        tokio::select! {
            biased;
            Some(reply) = replies.recv() => {
                if let Err(e) = sink.send(reply).await {
                    return format!("send: {e}");
                }
            }
            frame = slot.take() => {
                if let Err(e) = sink.send(Message::Binary(frame.bytes)).await {
                    return format!("send: {e}");
                }
                let at = Instant::now();
                shared.metrics.frames.fetch_add(1, Ordering::Relaxed);
                let answered = tracker.lock().unwrap_or_else(PoisonError::into_inner).shown(frame.input_seq, at);
                for latency in answered {
                    shared.metrics.input_to_frame.observe(latency);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(input_seq: u64) -> Frame {
        Frame { input_seq, bytes: Bytes::from(vec![input_seq as u8]) }
    }

    #[tokio::test]
    async fn the_slot_keeps_only_the_newest_frame() {
        let slot = FrameSlot::default();
        assert!(!slot.put(frame(1)), "empty slot: nothing dropped");
        assert!(slot.put(frame(2)), "unsent frame 1 is dropped");
        assert!(slot.put(frame(3)), "unsent frame 2 is dropped");
        assert_eq!(slot.take().await, frame(3));
        assert!(!slot.put(frame(4)), "frame 3 was taken: nothing dropped");
        assert_eq!(slot.take().await, frame(4));
    }

    #[tokio::test]
    async fn take_waits_for_a_put() {
        let slot = Arc::new(FrameSlot::default());
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.take().await }
        });
        slot.put(frame(7));
        assert_eq!(waiter.await.expect("waiter"), frame(7));
    }

    #[test]
    fn latency_is_measured_from_each_input_to_the_first_frame_reflecting_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut tracker = LatencyTracker::default();
        tracker.received(1, ms(0));
        tracker.received(2, ms(10));
        tracker.received(2, ms(12)); // repeated seq: the first arrival counts
        tracker.received(3, ms(20));
        assert_eq!(tracker.shown(0, ms(25)), [], "a frame before any input answers nothing");
        assert_eq!(tracker.shown(2, ms(30)), [Duration::from_millis(30), Duration::from_millis(20)]);
        assert_eq!(tracker.shown(2, ms(40)), [], "already answered");
        assert_eq!(tracker.shown(9, ms(50)), [Duration::from_millis(30)]);
    }

    #[test]
    fn the_tracker_forgets_the_oldest_inputs_when_flooded() {
        let t0 = Instant::now();
        let mut tracker = LatencyTracker::default();
        for seq in 1..=(PENDING_INPUTS as u64 + 10) {
            tracker.received(seq, t0);
        }
        assert_eq!(tracker.shown(u64::MAX, t0).len(), PENDING_INPUTS);
    }
}
