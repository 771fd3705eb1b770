//! What the tracer draws: a checkered ground plane, spheres with materials, a
//! directional sun and a sky gradient, plus ray–scene intersection.

use super::math::Vec3;

/// Hits closer than this are treated as self-intersections and ignored.
pub(crate) const EPSILON: f32 = 1e-3;

/// A ray: `origin + t * dir` for `t > 0`; `dir` has length 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ray {
    /// Where the ray starts.
    pub origin: Vec3,
    /// Unit direction.
    pub dir: Vec3,
}

impl Ray {
    /// The point at parameter `t`.
    #[inline(always)]
    pub fn at(&self, t: f32) -> Vec3 {
        self.origin + self.dir * t
    }
}

/// How a surface responds to light.
///
/// The reflected share is `reflectivity + fresnel * (1 - reflectivity) * (1 - cos θ)^5`
/// (Schlick's approximation scaled by `fresnel`); the rest is diffuse.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Material {
    /// Diffuse colour (linear RGB, 0..1).
    pub albedo: Vec3,
    /// Share of light reflected like a mirror at normal incidence (0..1).
    pub reflectivity: f32,
    /// How strongly reflections grow at grazing angles (0 for metals and matte, 1 for plastic).
    pub fresnel: f32,
    /// Colour filter applied to reflections (white for dielectrics, the metal's colour for metals).
    pub tint: Vec3,
    /// Strength of the sun's specular highlight.
    pub specular: f32,
    /// Blinn–Phong exponent: larger is a smaller, sharper highlight.
    pub shininess: i32,
}

impl Material {
    /// A rough, non-reflective surface.
    pub const fn matte(albedo: Vec3) -> Material {
        Material { albedo, reflectivity: 0.0, fresnel: 0.0, tint: Vec3::splat(1.0), specular: 0.08, shininess: 8 }
    }

    /// Coloured plastic: diffuse with a sharp highlight and reflections at grazing angles.
    pub const fn glossy(albedo: Vec3) -> Material {
        Material { albedo, reflectivity: 0.04, fresnel: 1.0, tint: Vec3::splat(1.0), specular: 0.7, shininess: 64 }
    }

    /// A polished metal that reflects most light, filtered by `tint`.
    pub const fn mirror(tint: Vec3) -> Material {
        Material { albedo: Vec3::splat(0.05), reflectivity: 0.85, fresnel: 0.0, tint, specular: 1.0, shininess: 256 }
    }

    /// The share of light reflected when the view direction makes `cos_theta` with the normal.
    #[inline(always)]
    pub fn reflectance(&self, cos_theta: f32) -> f32 {
        if self.fresnel == 0.0 {
            return self.reflectivity;
        }
        let m = 1.0 - cos_theta.clamp(0.0, 1.0);
        let m2 = m * m;
        self.reflectivity + self.fresnel * (1.0 - self.reflectivity) * (m2 * m2 * m)
    }
}

/// A sphere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sphere {
    /// Centre.
    pub center: Vec3,
    /// Radius (> 0).
    pub radius: f32,
    /// Surface.
    pub material: Material,
}

/// The infinite horizontal ground plane, checkered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ground {
    /// The plane is `y = height`.
    pub height: f32,
    /// Edge length of one checker tile.
    pub tile: f32,
    /// Colour of the even tiles.
    pub color_a: Vec3,
    /// Colour of the odd tiles.
    pub color_b: Vec3,
    /// Surface properties; `albedo` is replaced by the tile colour.
    pub material: Material,
}

impl Ground {
    /// The tile colour at a point on the plane.
    #[inline(always)]
    pub fn color_at(&self, p: Vec3) -> Vec3 {
        let i = (p.x / self.tile).floor() as i64 + (p.z / self.tile).floor() as i64;
        if i.rem_euclid(2) == 0 { self.color_a } else { self.color_b }
    }
}

/// A directional light infinitely far away: parallel rays, hard shadows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sun {
    /// Unit vector pointing from the scene towards the sun.
    pub direction: Vec3,
    /// Radiance (linear RGB; may exceed 1).
    pub color: Vec3,
}

/// The background and ambient light.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sky {
    /// Colour straight up.
    pub zenith: Vec3,
    /// Colour at the horizon; also the fog colour.
    pub horizon: Vec3,
    /// Colour seen looking down below the horizon past the ground (only from below it).
    pub nadir: Vec3,
    /// Ambient light from the sky hemisphere (scales `zenith` for up-facing surfaces).
    pub ambient: f32,
    /// Ambient light bounced off the ground (for down-facing surfaces).
    pub bounce: Vec3,
    /// Fog density per unit of distance: the fog share at distance `t` is `1 - exp(-(t * fog_density)²)`.
    pub fog_density: f32,
}

impl Sky {
    /// The background colour seen along unit direction `dir`, including the sun's disk and glow.
    #[inline(always)]
    pub fn color(&self, dir: Vec3, sun: &Sun) -> Vec3 {
        let base = if dir.y >= 0.0 {
            self.horizon.lerp(self.zenith, dir.y.sqrt())
        } else {
            self.horizon.lerp(self.nadir, (-dir.y).sqrt())
        };
        let c = dir.dot(sun.direction);
        if c <= 0.0 {
            return base;
        }
        let glow = sun.color * (0.25 * c.powi(64) + 0.1 * c.powi(8));
        let disk = if c > 0.9995 { sun.color * 6.0 } else { Vec3::ZERO };
        base + glow + disk
    }

    /// Ambient light arriving at a surface with unit normal `n`.
    #[inline(always)]
    pub fn ambient_at(&self, n: Vec3) -> Vec3 {
        self.bounce.lerp(self.zenith * self.ambient, 0.5 + 0.5 * n.y)
    }
}

/// What a ray hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The ground plane.
    Ground,
    /// `Scene::spheres[i]`.
    Sphere(usize),
}

/// The nearest intersection along a ray.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Distance along the ray.
    pub t: f32,
    /// What was hit.
    pub surface: Surface,
}

/// Everything the tracer draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// The point cameras orbit around and look at.
    pub center: Vec3,
    /// The ground plane.
    pub ground: Ground,
    /// The spheres.
    pub spheres: Vec<Sphere>,
    /// The light.
    pub sun: Sun,
    /// Background, ambient light and fog.
    pub sky: Sky,
    /// How many mirror bounces a ray may take after the first hit.
    pub max_bounces: u32,
}

impl Default for Scene {
    fn default() -> Self {
        Scene::demo()
    }
}

impl Scene {
    /// The built-in scene: a polished chrome sphere at the centre, ringed by matte,
    /// plastic and gold spheres on a grey checkerboard under a late-afternoon sun.
    pub fn demo() -> Scene {
        let sphere = |x, y, z, radius, material| Sphere { center: Vec3::new(x, y, z), radius, material };
        Scene {
            center: Vec3::new(0.0, 1.0, 0.0),
            ground: Ground {
                height: 0.0,
                tile: 1.0,
                color_a: Vec3::new(0.75, 0.74, 0.70),
                color_b: Vec3::new(0.05, 0.055, 0.065),
                material: Material {
                    albedo: Vec3::splat(1.0),
                    reflectivity: 0.06,
                    fresnel: 0.5,
                    tint: Vec3::splat(1.0),
                    specular: 0.15,
                    shininess: 32,
                },
            },
            spheres: vec![
                sphere(0.0, 1.0, 0.0, 1.0, Material::mirror(Vec3::new(0.95, 0.95, 0.97))),
                sphere(2.3, 0.7, 0.9, 0.7, Material::glossy(Vec3::new(0.80, 0.08, 0.06))),
                sphere(-2.1, 0.8, 1.1, 0.8, Material::glossy(Vec3::new(0.06, 0.22, 0.85))),
                sphere(-0.7, 0.45, 2.3, 0.45, Material::mirror(Vec3::new(1.0, 0.76, 0.33))),
                sphere(1.4, 0.55, -2.0, 0.55, Material::matte(Vec3::new(0.20, 0.70, 0.25))),
                sphere(1.1, 0.3, 2.1, 0.3, Material::glossy(Vec3::new(0.90, 0.88, 0.82))),
                sphere(-1.6, 0.6, -2.2, 0.6, Material::matte(Vec3::new(0.95, 0.60, 0.10))),
            ],
            sun: Sun { direction: Vec3::new(-0.55, 0.65, 0.52).normalized(), color: Vec3::new(1.25, 1.12, 0.95) },
            sky: Sky {
                zenith: Vec3::new(0.10, 0.28, 0.75),
                horizon: Vec3::new(0.70, 0.80, 0.92),
                nadir: Vec3::new(0.20, 0.20, 0.22),
                ambient: 0.45,
                bounce: Vec3::new(0.16, 0.15, 0.14),
                fog_density: 0.025,
            },
            max_bounces: 3,
        }
    }

    /// The nearest surface the ray hits, if any.
    pub fn intersect(&self, ray: &Ray) -> Option<Hit> {
        Bounded::new(self).intersect(ray)
    }

    /// Whether anything lies along the ray (shadow rays towards the sun).
    pub fn occluded(&self, ray: &Ray) -> bool {
        Bounded::new(self).occluded(ray)
    }
}

/// A scene with one sphere bounding all its spheres, so that the many rays that
/// pass beside the group (sky, distant ground, most shadow and reflection rays)
/// skip testing each sphere. Answers exactly what a plain scan answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounded<'a> {
    pub(crate) scene: &'a Scene,
    center: Vec3,
    radius_sq: f32,
}

impl<'a> Bounded<'a> {
    pub(crate) fn new(scene: &'a Scene) -> Bounded<'a> {
        let n = scene.spheres.len().max(1) as f32;
        let center = scene.spheres.iter().fold(Vec3::ZERO, |acc, s| acc + s.center) * (1.0 / n);
        let radius = scene.spheres.iter().map(|s| (s.center - center).length() + s.radius).fold(0.0, f32::max);
        // Inflated so that rounding can only make the bound test say "maybe", never a wrong "miss".
        let radius = radius * 1.001 + 1e-3;
        Bounded { scene, center, radius_sq: radius * radius }
    }

    /// Whether the ray may touch the bounding sphere (origin inside, or heading into it).
    #[inline(always)]
    fn may_hit_spheres(&self, ray: &Ray) -> bool {
        let oc = ray.origin - self.center;
        let c = oc.dot(oc) - self.radius_sq;
        if c <= 0.0 {
            return true;
        }
        let b = oc.dot(ray.dir);
        b < 0.0 && b * b >= c
    }

    /// The nearest surface the ray hits, if any.
    #[inline(always)]
    pub(crate) fn intersect(&self, ray: &Ray) -> Option<Hit> {
        let mut best = ground_t(&self.scene.ground, ray).map(|t| Hit { t, surface: Surface::Ground });
        if self.may_hit_spheres(ray) {
            let spheres = &self.scene.spheres;
            let mut best_t = match best {
                Some(h) => h.t,
                None => f32::INFINITY,
            };
            // A `while` loop, not an iterator: this crate runs at opt-level 0 in debug builds.
            let mut i = 0;
            while i < spheres.len() {
                if let Some(t) = hit_sphere(&spheres[i], ray, best_t) {
                    best_t = t;
                    best = Some(Hit { t, surface: Surface::Sphere(i) });
                }
                i += 1;
            }
        }
        best
    }

    /// Whether anything lies along the ray.
    #[inline(always)]
    pub(crate) fn occluded(&self, ray: &Ray) -> bool {
        if ground_t(&self.scene.ground, ray).is_some() {
            return true;
        }
        if !self.may_hit_spheres(ray) {
            return false;
        }
        let spheres = &self.scene.spheres;
        let mut i = 0;
        while i < spheres.len() {
            if hit_sphere(&spheres[i], ray, f32::INFINITY).is_some() {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Where the ray meets the ground plane, if ahead of it.
#[inline(always)]
fn ground_t(ground: &Ground, ray: &Ray) -> Option<f32> {
    if ray.dir.y == 0.0 {
        return None;
    }
    let t = (ground.height - ray.origin.y) / ray.dir.y;
    if t > EPSILON { Some(t) } else { None }
}

/// The nearest `t` in `(EPSILON, max_t)` where the ray meets the sphere.
#[inline(always)]
fn hit_sphere(s: &Sphere, ray: &Ray, max_t: f32) -> Option<f32> {
    let oc = ray.origin - s.center;
    let b = oc.dot(ray.dir);
    let c = oc.dot(oc) - s.radius * s.radius;
    let disc = b * b - c;
    if disc < 0.0 {
        return None;
    }
    let root = disc.sqrt();
    let near = -b - root;
    let t = if near > EPSILON { near } else { -b + root };
    if t > EPSILON && t < max_t { Some(t) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: test every sphere.
    fn scan(scene: &Scene, ray: &Ray) -> Option<Hit> {
        let mut best = ground_t(&scene.ground, ray).map(|t| Hit { t, surface: Surface::Ground });
        for (i, s) in scene.spheres.iter().enumerate() {
            if let Some(t) = hit_sphere(s, ray, best.map_or(f32::INFINITY, |h| h.t)) {
                best = Some(Hit { t, surface: Surface::Sphere(i) });
            }
        }
        best
    }

    fn vec3(range: f32) -> impl Strategy<Value = Vec3> {
        (-range..range, -range..range, -range..range).prop_map(|(x, y, z)| Vec3::new(x, y, z))
    }

    proptest! {
        #[test]
        fn bounded_intersection_agrees_with_a_full_scan(origin in vec3(12.0), towards in vec3(3.0)) {
            let scene = Scene::demo();
            // Aim near the sphere group so that hits, misses and grazes all occur.
            let dir = (towards + scene.center - origin).normalized();
            prop_assume!(dir.length() > 0.5);
            let ray = Ray { origin, dir };
            let bounded = Bounded::new(&scene);
            prop_assert_eq!(bounded.intersect(&ray), scan(&scene, &ray));
            prop_assert_eq!(bounded.occluded(&ray), scan(&scene, &ray).is_some());
        }
    }
}
