//! The ray tracer: primary rays, hard sun shadows, Blinn–Phong highlights,
//! mirror reflections with a Fresnel term, distance fog, tone mapping and gamma.

use std::num::NonZeroUsize;

use super::camera::{Camera, CameraError, View};
use super::math::Vec3;
use super::scene::{Bounded, EPSILON, Ray, Scene, Surface};

/// Rows rendered as one unit of work; bands are dealt to threads round-robin so
/// that cheap sky rows and expensive ground rows are shared evenly.
const BAND_ROWS: usize = 8;

/// Exposure before tone mapping.
const EXPOSURE: f32 = 0.9;

/// An 8-bit sRGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes: red, green, blue.
    pub rgb: Vec<u8>,
}

impl Image {
    /// The colour of pixel `(x, y)`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.rgb.get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }
}

/// Renders `scene` as seen by `cam`, using the machine's cores.
///
/// The result depends only on the scene and the camera, never on the number of threads.
pub fn render(scene: &Scene, cam: &Camera) -> Result<Image, CameraError> {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(8);
    render_with_threads(scene, cam, NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN))
}

/// Renders `scene` as seen by `cam` on `threads` threads (1 renders on the caller's thread).
pub fn render_with_threads(scene: &Scene, cam: &Camera, threads: NonZeroUsize) -> Result<Image, CameraError> {
    cam.validate()?;
    let scene = &Bounded::new(scene);
    let view = cam.view(scene.scene.center);
    let (width, height) = (cam.width, cam.height);
    let row_bytes = width as usize * 3;
    let mut rgb = vec![0u8; row_bytes * height as usize];
    let bands: Vec<(u32, &mut [u8])> =
        rgb.chunks_mut(row_bytes * BAND_ROWS).enumerate().map(|(i, band)| ((i * BAND_ROWS) as u32, band)).collect();
    let threads = threads.get().min(bands.len()).max(1);
    if threads == 1 {
        for (y0, band) in bands {
            render_band(scene, &view, width, y0, band);
        }
    } else {
        let mut per_thread: Vec<Vec<(u32, &mut [u8])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, band) in bands.into_iter().enumerate() {
            per_thread[i % threads].push(band);
        }
        std::thread::scope(|s| {
            for work in per_thread {
                let view = &view;
                s.spawn(move || {
                    for (y0, band) in work {
                        render_band(scene, view, width, y0, band);
                    }
                });
            }
        });
    }
    Ok(Image { width, height, rgb })
}

/// Fills `band`, whose first row is image row `y0`.
fn render_band(scene: &Bounded<'_>, view: &View, width: u32, y0: u32, band: &mut [u8]) {
    for (dy, row) in band.chunks_exact_mut(width as usize * 3).enumerate() {
        let y = y0 + dy as u32;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let c = trace(scene, &view.ray(x as u32, y), 0);
            px[0] = to_srgb8(c.x);
            px[1] = to_srgb8(c.y);
            px[2] = to_srgb8(c.z);
        }
    }
}

/// Linear radiance arriving along `ray`; `depth` counts the bounces so far.
fn trace(bounded: &Bounded<'_>, ray: &Ray, depth: u32) -> Vec3 {
    let scene = bounded.scene;
    let Some(hit) = bounded.intersect(ray) else {
        return scene.sky.color(ray.dir, &scene.sun);
    };
    let p = ray.at(hit.t);
    let (normal, albedo, material) = match hit.surface {
        Surface::Ground => (Vec3::new(0.0, 1.0, 0.0), scene.ground.color_at(p), &scene.ground.material),
        Surface::Sphere(i) => {
            let s = &scene.spheres[i];
            ((p - s.center) * (1.0 / s.radius), s.material.albedo, &s.material)
        }
    };
    // Shade the side the ray arrived on (matters only when looking from below the ground).
    let n = if normal.dot(ray.dir) > 0.0 { -normal } else { normal };
    let lift = p + n * EPSILON;

    let to_sun = scene.sun.direction;
    let n_dot_l = n.dot(to_sun);
    let lit = n_dot_l > 0.0 && !bounded.occluded(&Ray { origin: lift, dir: to_sun });

    let mut light = scene.sky.ambient_at(n);
    if lit {
        light = light + scene.sun.color * n_dot_l;
    }
    let mut color = albedo.mul_elem(light);

    let cos_view = -ray.dir.dot(n);
    let r = material.reflectance(cos_view);
    if r > 0.001 && depth < scene.max_bounces {
        let reflected = trace(bounded, &Ray { origin: lift, dir: ray.dir.reflect(n) }, depth + 1);
        color = color * (1.0 - r) + reflected.mul_elem(material.tint) * r;
    }
    if lit && material.specular > 0.0 {
        let half = (to_sun - ray.dir).normalized();
        let n_dot_h = n.dot(half).max(0.0);
        color = color + scene.sun.color * (material.specular * n_dot_h.powi(material.shininess));
    }

    // Squared exponential fog: crisp nearby, hazy towards the horizon.
    let d = hit.t * scene.sky.fog_density;
    let fog = 1.0 - (-d * d).exp();
    color.lerp(scene.sky.horizon, fog)
}

/// Tone-maps a linear value (Narkowicz's fit of the ACES filmic curve) and
/// encodes it with gamma 2.2.
#[inline(always)]
fn to_srgb8(v: f32) -> u8 {
    let x = v.max(0.0) * EXPOSURE;
    let mapped = (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14);
    (mapped.powf(1.0 / 2.2) * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}
