//! The `render` service: cloud rendering of a 3D scene, as still PNG frames
//! for given camera parameters and as a live JPEG stream over WebSocket that
//! reacts to the viewer's input (SPEC R-SV1).
//!
//! The core ([`scene`], [`camera`], [`tracer`], [`encode`], [`controls`],
//! [`stream`]) is pure computation: no IO, no clock, and the same scene and
//! camera always give the same bytes; [`controls`] turns input events into
//! cameras. [`http`] and [`live`] expose it as an HTTP and WebSocket service
//! with [`metrics`]; [`client`] is the browser viewer page and [`user`] the
//! scripted simulated user that measures a stream from outside (SPEC R-CK4).

pub mod camera;
pub mod client;
pub mod controls;
pub mod encode;
pub mod http;
pub mod live;
pub mod math;
pub mod metrics;
pub mod scene;
pub mod stream;
pub mod tracer;
pub mod user;

pub use camera::{Camera, CameraError, PARAMS, Param, View};
pub use client::{CLIENT_PAGE, client_query};
pub use controls::{Controls, Input, InputError, InputMessage, Key};
pub use encode::{EncodeError, encode_jpeg, encode_png};
pub use math::Vec3;
pub use scene::{Ground, Hit, Material, Ray, Scene, Sky, Sphere, Sun, Surface};
pub use stream::{FrameError, FrameHeader, StreamParams};
pub use tracer::{Image, render, render_with_threads};
pub use user::{InputOutcome, Summary, UserError, UserReport, UserScript, simulate_user};
