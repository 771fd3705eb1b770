//! A minimal 3-vector for the ray tracer.
//!
//! Every operation is `#[inline(always)]`: this crate is built at opt-level 0 in
//! debug builds, and the tracer's inner loop is nothing but these operations.

use std::ops::{Add, Mul, Neg, Sub};

/// A point, direction or linear RGB colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vec3 {
    /// x (or red).
    pub x: f32,
    /// y (or green); y points up in scenes.
    pub y: f32,
    /// z (or blue).
    pub z: f32,
}

impl Vec3 {
    /// The zero vector / black.
    pub const ZERO: Vec3 = Vec3::new(0.0, 0.0, 0.0);

    /// A vector from its components.
    #[inline(always)]
    pub const fn new(x: f32, y: f32, z: f32) -> Vec3 {
        Vec3 { x, y, z }
    }

    /// A grey colour / a vector with three equal components.
    #[inline(always)]
    pub const fn splat(v: f32) -> Vec3 {
        Vec3 { x: v, y: v, z: v }
    }

    /// Dot product.
    #[inline(always)]
    pub fn dot(self, o: Vec3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    /// Cross product.
    #[inline(always)]
    pub fn cross(self, o: Vec3) -> Vec3 {
        Vec3::new(self.y * o.z - self.z * o.y, self.z * o.x - self.x * o.z, self.x * o.y - self.y * o.x)
    }

    /// Euclidean length.
    #[inline(always)]
    pub fn length(self) -> f32 {
        self.dot(self).sqrt()
    }

    /// This vector scaled to length 1 (the zero vector stays zero).
    #[inline(always)]
    pub fn normalized(self) -> Vec3 {
        let len = self.length();
        if len > 0.0 { self * (1.0 / len) } else { self }
    }

    /// Component-wise product (colour filtering).
    #[inline(always)]
    pub fn mul_elem(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x * o.x, self.y * o.y, self.z * o.z)
    }

    /// Linear interpolation: `self` at `t = 0`, `o` at `t = 1`.
    #[inline(always)]
    pub fn lerp(self, o: Vec3, t: f32) -> Vec3 {
        self + (o - self) * t
    }

    /// This direction mirrored about the unit normal `n`.
    #[inline(always)]
    pub fn reflect(self, n: Vec3) -> Vec3 {
        self - n * (2.0 * self.dot(n))
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    #[inline(always)]
    fn add(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for Vec3 {
    type Output = Vec3;
    #[inline(always)]
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f32> for Vec3 {
    type Output = Vec3;
    #[inline(always)]
    fn mul(self, s: f32) -> Vec3 {
        Vec3::new(self.x * s, self.y * s, self.z * s)
    }
}

impl Neg for Vec3 {
    type Output = Vec3;
    #[inline(always)]
    fn neg(self) -> Vec3 {
        Vec3::new(-self.x, -self.y, -self.z)
    }
}
