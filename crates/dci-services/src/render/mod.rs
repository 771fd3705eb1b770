//! The `render` service: cloud rendering of a 3D scene for given camera
//! parameters, returned as PNG.
//!
//! The core ([`scene`], [`camera`], [`tracer`], [`encode`]) is pure computation:
//! no IO, no clock, and the same scene and camera always give the same bytes.
//! [`http`] exposes it as an HTTP service.

pub mod camera;
pub mod encode;
pub mod http;
pub mod math;
pub mod scene;
pub mod tracer;

pub use camera::{Camera, CameraError, PARAMS, Param, View};
pub use encode::{EncodeError, encode_png};
pub use math::Vec3;
pub use scene::{Ground, Hit, Material, Ray, Scene, Sky, Sphere, Sun, Surface};
pub use tracer::{Image, render, render_with_threads};
