//! The live stream's wire format: the options a client opens it with and the
//! header in front of every frame. Pure data and parsing, no IO.
//!
//! Each frame is one binary WebSocket message: a [`HEADER_LEN`]-byte header
//! (all integers little-endian) followed by a baseline JPEG:
//!
//! | bytes  | field        | meaning                                                    |
//! |--------|--------------|------------------------------------------------------------|
//! | 0..4   | magic        | `DCIF`                                                     |
//! | 4..12  | `frame`      | u64, frame number in this session, from 1                  |
//! | 12..20 | `input_seq`  | u64, highest input `seq` applied before rendering (0: none)|
//! | 20..24 | `render_us`  | u32, ray-tracing time, microseconds                        |
//! | 24..28 | `encode_us`  | u32, JPEG encoding time, microseconds                      |
//! | 28..30 | `width`      | u16, pixels                                                |
//! | 30..32 | `height`     | u16, pixels                                                |

use super::camera::{Camera, CameraError, PARAMS};

/// Bytes before the JPEG in every frame message.
pub const HEADER_LEN: usize = 32;
/// The first four bytes of every frame message.
pub const MAGIC: [u8; 4] = *b"DCIF";

/// What precedes each JPEG on the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame number in this session, from 1.
    pub frame: u64,
    /// Highest input sequence number applied to the camera before this frame (0: none).
    pub input_seq: u64,
    /// Ray-tracing time, microseconds.
    pub render_us: u32,
    /// JPEG encoding time, microseconds.
    pub encode_us: u32,
    /// Image width, pixels.
    pub width: u16,
    /// Image height, pixels.
    pub height: u16,
}

/// Why a frame message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a header.
    #[error("frame: expected at least {HEADER_LEN} bytes, found {0}")]
    Short(usize),
    /// Wrong magic.
    #[error("frame: expected magic DCIF, found {0:?}")]
    Magic([u8; 4]),
}

impl FrameHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..12].copy_from_slice(&self.frame.to_le_bytes());
        b[12..20].copy_from_slice(&self.input_seq.to_le_bytes());
        b[20..24].copy_from_slice(&self.render_us.to_le_bytes());
        b[24..28].copy_from_slice(&self.encode_us.to_le_bytes());
        b[28..30].copy_from_slice(&self.width.to_le_bytes());
        b[30..32].copy_from_slice(&self.height.to_le_bytes());
        b
    }

    /// Splits a frame message into its header and JPEG bytes.
    pub fn decode(message: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
        let Some((head, jpeg)) = message.split_first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Short(message.len()));
        };
        let magic = [head[0], head[1], head[2], head[3]];
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let u64_at = |i: usize| u64::from_le_bytes(std::array::from_fn(|k| head[i + k]));
        let u32_at = |i: usize| u32::from_le_bytes(std::array::from_fn(|k| head[i + k]));
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let header = FrameHeader {
            frame: u64_at(4),
            input_seq: u64_at(12),
            render_us: u32_at(20),
            encode_us: u32_at(24),
            width: u16_at(28),
            height: u16_at(30),
        };
        Ok((header, jpeg))
    }
}

/// How a client opens the stream: the query string of `GET /stream`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamParams {
    /// The initial camera, including the frame size.
    pub camera: Camera,
    /// Frames per second the server aims for (it sends fewer if rendering is slower).
    pub fps: u32,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

/// Frame width when the query does not say.
pub const DEFAULT_WIDTH: u32 = 320;
/// Frame height when the query does not say.
pub const DEFAULT_HEIGHT: u32 = 180;
/// Target frame rate when the query does not say.
pub const DEFAULT_FPS: u32 = 30;
/// Highest target frame rate accepted.
pub const MAX_FPS: u32 = 60;
/// JPEG quality when the query does not say.
pub const DEFAULT_QUALITY: u8 = 75;

impl Default for StreamParams {
    fn default() -> Self {
        StreamParams {
            camera: Camera { width: DEFAULT_WIDTH, height: DEFAULT_HEIGHT, ..Camera::default() },
            fps: DEFAULT_FPS,
            quality: DEFAULT_QUALITY,
        }
    }
}

impl StreamParams {
    /// Parses query pairs: `fps` (1..=60), `quality` (1..=100) and the camera
    /// parameters of [`PARAMS`] (the size defaults to 320x180 here). Unknown
    /// and repeated names are refused.
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<StreamParams, CameraError> {
        let mut out = StreamParams::default();
        let (mut fps, mut quality) = (None, None);
        let mut camera_pairs = Vec::new();
        let (mut width_given, mut height_given) = (false, false);
        for (name, value) in pairs {
            match name {
                "fps" => set_once(&mut fps, "fps", parse_int(value, "fps", 1, MAX_FPS)?)?,
                "quality" => set_once(&mut quality, "quality", parse_int(value, "quality", 1, 100)?)?,
                _ => {
                    if !PARAMS.iter().any(|p| p.name == name) {
                        return Err(CameraError::Invalid {
                            param: "query",
                            expected: "a parameter among fps, quality, yaw, pitch, distance, fov, width, height".into(),
                            found: format!("{name:?}"),
                        });
                    }
                    width_given |= name == "width";
                    height_given |= name == "height";
                    camera_pairs.push((name, value));
                }
            }
        }
        let camera = Camera::from_query(camera_pairs)?;
        out.camera = Camera {
            width: if width_given { camera.width } else { DEFAULT_WIDTH },
            height: if height_given { camera.height } else { DEFAULT_HEIGHT },
            ..camera
        };
        out.fps = fps.unwrap_or(DEFAULT_FPS);
        // `parse_int` checked 1..=100.
        out.quality = quality.map_or(DEFAULT_QUALITY, |q| q as u8);
        Ok(out)
    }
}

fn parse_int(value: &str, param: &'static str, min: u32, max: u32) -> Result<u32, CameraError> {
    let invalid =
        |found: String| CameraError::Invalid { param, expected: format!("an integer in {min}..={max}"), found };
    let n: i64 = value.parse().map_err(|_| invalid(format!("{value:?}")))?;
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| invalid(n.to_string()))
}

fn set_once(slot: &mut Option<u32>, param: &'static str, v: u32) -> Result<(), CameraError> {
    if slot.replace(v).is_some() {
        return Err(CameraError::Repeated(param));
    }
    Ok(())
}
