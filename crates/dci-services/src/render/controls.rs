//! Interactive camera control for the live stream: input events in, camera out.
//!
//! [`Controls`] is a deterministic state machine: [`Controls::handle`] applies one
//! [`InputMessage`] to the camera and remembers its sequence number, so the
//! frame rendered from [`Controls::camera`] can say which inputs it reflects.
//! No clock, no IO; the WebSocket server ([`super::live`]) and tests drive it.
//!
//! Input arrives as JSON text, one object per WebSocket message:
//!
//! ```json
//! {"seq": 1, "type": "orbit", "dx": 12.0, "dy": -3.0}
//! {"seq": 2, "type": "zoom", "delta": -1.0}
//! {"seq": 3, "type": "key", "key": "ArrowLeft"}
//! {"seq": 4, "type": "reset"}
//! ```
//!
//! `seq` is chosen by the client, counting up from 1.

use serde::{Deserialize, Serialize};

use super::camera::Camera;

/// Degrees of yaw/pitch per pixel of mouse drag.
pub const DEG_PER_PIXEL: f64 = 0.3;
/// Degrees of yaw/pitch per arrow or WASD key press.
pub const DEG_PER_KEY: f64 = 5.0;
/// Factor applied to the distance per zoom step (`distance * ZOOM_STEP^delta`).
pub const ZOOM_STEP: f64 = 1.1;
/// Closest the camera may come to the scene centre (outside the central sphere).
pub const MIN_DISTANCE: f64 = 2.0;
/// Farthest the camera may go.
pub const MAX_DISTANCE: f64 = 60.0;
/// Steepest pitch, up or down, in degrees (inside the camera's -89..=89).
pub const MAX_PITCH: f64 = 89.0;
/// Largest drag (pixels) or zoom (steps) accepted in one message.
pub const MAX_STEP: f64 = 10_000.0;

/// A key the stream reacts to, named as in the browser's `KeyboardEvent.key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// Turn left (yaw down).
    ArrowLeft,
    /// Turn right (yaw up).
    ArrowRight,
    /// Raise the camera (pitch up).
    ArrowUp,
    /// Lower the camera (pitch down).
    ArrowDown,
    /// Move closer (zoom in one step).
    #[serde(rename = "w", alias = "W")]
    W,
    /// Turn left, like [`Key::ArrowLeft`].
    #[serde(rename = "a", alias = "A")]
    A,
    /// Move away (zoom out one step).
    #[serde(rename = "s", alias = "S")]
    S,
    /// Turn right, like [`Key::ArrowRight`].
    #[serde(rename = "d", alias = "D")]
    D,
    /// Back to the initial camera.
    #[serde(rename = "r", alias = "R")]
    R,
}

impl Key {
    /// Every key, for documentation and tests.
    pub const ALL: [Key; 9] =
        [Key::ArrowLeft, Key::ArrowRight, Key::ArrowUp, Key::ArrowDown, Key::W, Key::A, Key::S, Key::D, Key::R];

    /// The key's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Key::ArrowLeft => "ArrowLeft",
            Key::ArrowRight => "ArrowRight",
            Key::ArrowUp => "ArrowUp",
            Key::ArrowDown => "ArrowDown",
            Key::W => "w",
            Key::A => "a",
            Key::S => "s",
            Key::D => "d",
            Key::R => "r",
        }
    }
}

/// One user action.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// A mouse drag of `(dx, dy)` pixels: right turns the camera right, down raises it.
    Orbit {
        /// Horizontal drag, pixels (right is positive).
        dx: f64,
        /// Vertical drag, pixels (down is positive).
        dy: f64,
    },
    /// Zoom by `delta` steps (a wheel notch is 1): negative moves closer.
    Zoom {
        /// Steps; the distance is multiplied by `ZOOM_STEP^delta`.
        delta: f64,
    },
    /// A key press (auto-repeat sends more).
    Key {
        /// Which key.
        key: Key,
    },
    /// Back to the initial camera.
    Reset,
}

/// An input with the client's sequence number, as sent over the WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// Client-chosen, counting up from 1; frames report the highest one applied.
    pub seq: u64,
    /// The action.
    #[serde(flatten)]
    pub input: Input,
}

impl InputMessage {
    /// Parses one JSON text message.
    pub fn parse(text: &str) -> Result<InputMessage, InputError> {
        let msg: InputMessage = serde_json::from_str(text).map_err(|e| InputError::Malformed(e.to_string()))?;
        msg.check()?;
        Ok(msg)
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing plain numbers and enum tags cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), InputError> {
        if self.seq == 0 {
            return Err(InputError::Seq);
        }
        let out_of_range = |name: &'static str, v: f64| {
            (!(v.is_finite() && v.abs() <= MAX_STEP)).then(|| InputError::Value { name, found: v.to_string() })
        };
        let bad = match self.input {
            Input::Orbit { dx, dy } => out_of_range("dx", dx).or_else(|| out_of_range("dy", dy)),
            Input::Zoom { delta } => out_of_range("delta", delta),
            Input::Key { .. } | Input::Reset => None,
        };
        bad.map_or(Ok(()), Err)
    }
}

/// Why an input message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not JSON of the expected shape.
    #[error(
        "input: expected {{\"seq\": n, \"type\": \"orbit\"|\"zoom\"|\"key\"|\"reset\", ...}} with known keys, found an error: {0}"
    )]
    Malformed(String),
    /// `seq` was 0.
    #[error("seq: expected an integer from 1, found 0")]
    Seq,
    /// A number out of range.
    #[error("{name}: expected a finite number in -10000..=10000, found {found}")]
    Value {
        /// The field.
        name: &'static str,
        /// Its value.
        found: String,
    },
}

/// The camera of one live session and the last input applied to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Controls {
    initial: Camera,
    camera: Camera,
    applied: u64,
}

impl Controls {
    /// Controls starting at `initial` (clamped into the ranges above), no input applied.
    pub fn new(initial: Camera) -> Controls {
        let initial = clamp(initial);
        Controls { initial, camera: initial, applied: 0 }
    }

    /// The camera to render now.
    pub fn camera(&self) -> Camera {
        self.camera
    }

    /// The highest sequence number applied so far (0 before any input).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one input. Every valid message counts as applied (its `seq`
    /// becomes [`Controls::applied`] if higher), even if it leaves the camera
    /// where it was, e.g. pitching up at the limit; the camera stays valid.
    pub fn handle(&mut self, msg: &InputMessage) -> Result<(), InputError> {
        msg.check()?;
        let c = &mut self.camera;
        match msg.input {
            Input::Orbit { dx, dy } => {
                c.yaw_deg += dx * DEG_PER_PIXEL;
                c.pitch_deg += dy * DEG_PER_PIXEL;
            }
            Input::Zoom { delta } => c.distance *= ZOOM_STEP.powf(delta),
            Input::Key { key } => match key {
                Key::ArrowLeft | Key::A => c.yaw_deg -= DEG_PER_KEY,
                Key::ArrowRight | Key::D => c.yaw_deg += DEG_PER_KEY,
                Key::ArrowUp => c.pitch_deg += DEG_PER_KEY,
                Key::ArrowDown => c.pitch_deg -= DEG_PER_KEY,
                Key::W => c.distance /= ZOOM_STEP,
                Key::S => c.distance *= ZOOM_STEP,
                Key::R => *c = self.initial,
            },
            Input::Reset => *c = self.initial,
        }
        self.camera = clamp(self.camera);
        self.applied = self.applied.max(msg.seq);
        Ok(())
    }
}

/// Keeps yaw in `0..360`, pitch and distance in their interactive ranges.
fn clamp(mut c: Camera) -> Camera {
    c.yaw_deg = if c.yaw_deg.is_finite() { c.yaw_deg.rem_euclid(360.0) } else { 0.0 };
    c.pitch_deg = if c.pitch_deg.is_finite() { c.pitch_deg.clamp(-MAX_PITCH, MAX_PITCH) } else { 0.0 };
    c.distance = if c.distance.is_finite() { c.distance.clamp(MIN_DISTANCE, MAX_DISTANCE) } else { MIN_DISTANCE };
    c
}
