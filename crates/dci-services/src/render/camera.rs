//! The orbiting camera, its parameters and their validation.
//!
//! One table, [`PARAMS`], names every camera parameter with its range and default;
//! validation, query parsing and the service's self-description all read it, so
//! they cannot disagree.

use super::math::Vec3;
use super::scene::Ray;

/// A camera orbiting a target point (the scene's centre) and looking at it.
///
/// Angles are in degrees. `yaw` turns around the vertical axis (0 looks from +z
/// towards -z), `pitch` raises the camera above the horizon (negative is below).
/// `fov` is the vertical field of view. Check values with [`Camera::validate`];
/// [`super::render`] refuses invalid cameras.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    /// Rotation around the vertical axis, degrees; any finite value (wraps).
    pub yaw_deg: f64,
    /// Elevation above the horizon, degrees, in -89..=89.
    pub pitch_deg: f64,
    /// Distance from the target, in 1..=100 scene units.
    pub distance: f64,
    /// Vertical field of view, degrees, in 10..=120.
    pub fov_deg: f64,
    /// Image width in pixels, 16..=1920.
    pub width: u32,
    /// Image height in pixels, 16..=1920.
    pub height: u32,
}

impl Default for Camera {
    /// The defaults of [`PARAMS`]: yaw 30, pitch 20, distance 8, fov 60, 320x240.
    fn default() -> Self {
        Camera { yaw_deg: 30.0, pitch_deg: 20.0, distance: 8.0, fov_deg: 60.0, width: 320, height: 240 }
    }
}

/// Which camera field a parameter sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// [`Camera::yaw_deg`].
    Yaw,
    /// [`Camera::pitch_deg`].
    Pitch,
    /// [`Camera::distance`].
    Distance,
    /// [`Camera::fov_deg`].
    Fov,
    /// [`Camera::width`].
    Width,
    /// [`Camera::height`].
    Height,
}

/// The values a parameter accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// Any finite number.
    AnyFinite,
    /// A finite number in `min..=max`.
    Number {
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// An integer in `min..=max`.
    Integer {
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
}

impl Range {
    /// What the range accepts, in words, e.g. `an integer in 16..=1920`.
    pub fn expected(&self) -> String {
        match *self {
            Range::AnyFinite => "a finite number".to_string(),
            Range::Number { min, max } => format!("a number in {min}..={max}"),
            Range::Integer { min, max } => format!("an integer in {min}..={max}"),
        }
    }

    fn accepts(&self, v: f64) -> bool {
        match *self {
            Range::AnyFinite => v.is_finite(),
            Range::Number { min, max } => v.is_finite() && min <= v && v <= max,
            Range::Integer { min, max } => v.fract() == 0.0 && f64::from(min) <= v && v <= f64::from(max),
        }
    }
}

/// One camera parameter as it appears in a query string.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Param {
    /// The query-string name, also used in error messages.
    pub name: &'static str,
    /// The camera field it sets.
    pub field: Field,
    /// Accepted values.
    pub range: Range,
    /// Value when absent.
    pub default: f64,
    /// Unit of the value.
    pub unit: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Every camera parameter, in the order they are documented.
pub const PARAMS: [Param; 6] = [
    Param {
        name: "yaw",
        field: Field::Yaw,
        range: Range::AnyFinite,
        default: 30.0,
        unit: "degrees",
        description: "rotation of the camera around the vertical axis through the scene centre",
    },
    Param {
        name: "pitch",
        field: Field::Pitch,
        range: Range::Number { min: -89.0, max: 89.0 },
        default: 20.0,
        unit: "degrees",
        description: "elevation of the camera above the horizon (negative looks from below the ground)",
    },
    Param {
        name: "distance",
        field: Field::Distance,
        range: Range::Number { min: 1.0, max: 100.0 },
        default: 8.0,
        unit: "scene units",
        description: "distance from the camera to the scene centre",
    },
    Param {
        name: "fov",
        field: Field::Fov,
        range: Range::Number { min: 10.0, max: 120.0 },
        default: 60.0,
        unit: "degrees",
        description: "vertical field of view",
    },
    Param {
        name: "width",
        field: Field::Width,
        range: Range::Integer { min: 16, max: 1920 },
        default: 320.0,
        unit: "pixels",
        description: "image width",
    },
    Param {
        name: "height",
        field: Field::Height,
        range: Range::Integer { min: 16, max: 1920 },
        default: 240.0,
        unit: "pixels",
        description: "image height",
    },
];

/// Why camera parameters are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    /// A value is malformed or out of range.
    #[error("{param}: expected {expected}, found {found}")]
    Invalid {
        /// The parameter's name (see [`PARAMS`]).
        param: &'static str,
        /// What is allowed.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A parameter was given more than once.
    #[error("{0}: expected at most one value, found several")]
    Repeated(&'static str),
    /// A parameter name is not one of [`PARAMS`].
    #[error("expected a parameter among yaw, pitch, distance, fov, width, height, found {0:?}")]
    Unknown(String),
}

impl Camera {
    /// The current value of a field, as a number.
    pub fn get(&self, field: Field) -> f64 {
        match field {
            Field::Yaw => self.yaw_deg,
            Field::Pitch => self.pitch_deg,
            Field::Distance => self.distance,
            Field::Fov => self.fov_deg,
            Field::Width => f64::from(self.width),
            Field::Height => f64::from(self.height),
        }
    }

    /// Checks every field against [`PARAMS`]; the error names the first bad field.
    pub fn validate(&self) -> Result<(), CameraError> {
        for p in &PARAMS {
            let v = self.get(p.field);
            if !p.range.accepts(v) {
                return Err(CameraError::Invalid { param: p.name, expected: p.range.expected(), found: v.to_string() });
            }
        }
        Ok(())
    }

    /// Builds a camera from query-string pairs (already percent-decoded); absent
    /// parameters take their defaults. Unknown and repeated names are refused.
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Camera, CameraError> {
        let mut cam = Camera::default();
        let mut seen = [false; PARAMS.len()];
        for (name, value) in pairs {
            let Some(i) = PARAMS.iter().position(|p| p.name == name) else {
                return Err(CameraError::Unknown(name.to_string()));
            };
            let p = &PARAMS[i];
            if std::mem::replace(&mut seen[i], true) {
                return Err(CameraError::Repeated(p.name));
            }
            let invalid = |found: String| CameraError::Invalid { param: p.name, expected: p.range.expected(), found };
            match p.range {
                Range::Integer { min, max } => {
                    let n: i64 = value.parse().map_err(|_| invalid(format!("{value:?}")))?;
                    let n = u32::try_from(n)
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| invalid(n.to_string()))?;
                    cam.set_integer(p.field, n);
                }
                Range::AnyFinite | Range::Number { .. } => {
                    let v: f64 = value.parse().map_err(|_| invalid(format!("{value:?}")))?;
                    if !p.range.accepts(v) {
                        return Err(invalid(v.to_string()));
                    }
                    cam.set_number(p.field, v);
                }
            }
        }
        cam.validate()?;
        Ok(cam)
    }

    fn set_integer(&mut self, field: Field, v: u32) {
        match field {
            Field::Width => self.width = v,
            Field::Height => self.height = v,
            other => self.set_number(other, f64::from(v)),
        }
    }

    fn set_number(&mut self, field: Field, v: f64) {
        match field {
            Field::Yaw => self.yaw_deg = v,
            Field::Pitch => self.pitch_deg = v,
            Field::Distance => self.distance = v,
            Field::Fov => self.fov_deg = v,
            // Integer fields only come from integer ranges; a fractional value cannot reach here.
            Field::Width | Field::Height => {}
        }
    }

    /// Where the camera is and how it looks at `target`.
    pub fn view(&self, target: Vec3) -> View {
        let (yaw, pitch) = (self.yaw_deg.to_radians(), self.pitch_deg.to_radians());
        let offset = Vec3::new((pitch.cos() * yaw.sin()) as f32, pitch.sin() as f32, (pitch.cos() * yaw.cos()) as f32)
            * self.distance as f32;
        let origin = target + offset;
        let forward = (target - origin).normalized();
        let right = forward.cross(Vec3::new(0.0, 1.0, 0.0)).normalized();
        let up = right.cross(forward);
        let half_h = (self.fov_deg.to_radians() * 0.5).tan() as f32;
        let half_w = half_h * self.width as f32 / self.height.max(1) as f32;
        View { origin, forward, right, up, half_w, half_h, width: self.width, height: self.height }
    }
}

/// A camera placed in a scene: turns pixel coordinates into primary rays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    /// Camera position.
    pub origin: Vec3,
    /// Unit viewing direction (through the image centre).
    pub forward: Vec3,
    /// Unit vector to the right in the image.
    pub right: Vec3,
    /// Unit vector up in the image.
    pub up: Vec3,
    half_w: f32,
    half_h: f32,
    width: u32,
    height: u32,
}

impl View {
    /// The ray through the centre of pixel `(x, y)`; `(0, 0)` is the top-left pixel.
    #[inline(always)]
    pub fn ray(&self, x: u32, y: u32) -> Ray {
        let sx = (2.0 * (x as f32 + 0.5) / self.width as f32 - 1.0) * self.half_w;
        let sy = (1.0 - 2.0 * (y as f32 + 0.5) / self.height as f32) * self.half_h;
        Ray { origin: self.origin, dir: (self.forward + self.right * sx + self.up * sy).normalized() }
    }
}
