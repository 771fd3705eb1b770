//! The ray tracer as a feature: what the frames contain, and that they are reproducible.

mod common;

use std::num::NonZeroUsize;

use dci_services::render::{
    Camera, CameraError, Image, Ray, Scene, Surface, Vec3, encode_png, render, render_with_threads,
};

fn small(yaw_deg: f64) -> Camera {
    Camera { yaw_deg, width: 96, height: 72, ..Camera::default() }
}

fn luma(p: [u8; 3]) -> f32 {
    0.2126 * f32::from(p[0]) + 0.7152 * f32::from(p[1]) + 0.0722 * f32::from(p[2])
}

fn distance(a: [u8; 3], b: [u8; 3]) -> i32 {
    (0..3).map(|i| (i32::from(a[i]) - i32::from(b[i])).abs()).sum()
}

/// What the primary ray through pixel `(x, y)` hits, and where.
fn probe(scene: &Scene, cam: &Camera, x: u32, y: u32) -> Option<(Surface, Vec3)> {
    let ray = cam.view(scene.center).ray(x, y);
    scene.intersect(&ray).map(|h| (h.surface, ray.at(h.t)))
}

#[test]
fn same_camera_gives_the_same_bytes() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let cam = Camera::default();
    let a = render(&scene, &cam)?;
    let b = render(&scene, &cam)?;
    assert_eq!(a, b);
    assert_eq!(encode_png(&a)?, encode_png(&b)?);
    Ok(())
}

#[test]
fn thread_count_does_not_change_the_image() -> anyhow::Result<()> {
    let scene = Scene::demo();
    // 100 rows: bands of 8 do not divide it, so the last band is short.
    let cam = Camera { width: 120, height: 100, ..Camera::default() };
    let one = render_with_threads(&scene, &cam, NonZeroUsize::MIN)?;
    for threads in [2, 3, 64] {
        let n = NonZeroUsize::new(threads).expect("non-zero");
        assert_eq!(render_with_threads(&scene, &cam, n)?, one, "{threads} threads");
    }
    Ok(())
}

#[test]
fn different_yaw_gives_a_different_image() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let a = render(&scene, &small(30.0))?;
    let b = render(&scene, &small(75.0))?;
    let changed = |x: &Image, y: &Image| x.rgb.chunks(3).zip(y.rgb.chunks(3)).filter(|(p, q)| p != q).count();
    let turned = changed(&a, &b);
    assert!(turned > (96 * 72) / 10, "only {turned} pixels changed");
    // A full turn is the same view, up to rounding in the trigonometry.
    let full_turn = changed(&a, &render(&scene, &small(30.0 + 360.0))?);
    assert!(full_turn < (96 * 72) / 100, "{full_turn} pixels changed after a full turn");
    Ok(())
}

#[test]
fn png_decodes_to_the_rendered_pixels() -> anyhow::Result<()> {
    let scene = Scene::demo();
    for (width, height) in [(16, 16), (33, 17), (320, 240), (17, 200)] {
        let image = render(&scene, &Camera { width, height, ..Camera::default() })?;
        assert_eq!(image.rgb.len(), (width * height * 3) as usize);
        let (w, h, rgb) = common::decode_png(&encode_png(&image)?)?;
        assert_eq!((w, h), (width, height));
        assert!(rgb == image.rgb, "decoded pixels differ for {width}x{height}");
    }
    Ok(())
}

#[test]
fn frame_shows_sky_ground_and_a_sphere_in_the_centre() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let cam = Camera::default();
    let image = render(&scene, &cam)?;
    let px = |x, y| image.pixel(x, y).expect("inside the image");
    let (cx, cy) = (cam.width / 2, cam.height / 2);

    assert_eq!(probe(&scene, &cam, 0, 0), None, "top-left is sky");
    assert!(matches!(probe(&scene, &cam, cx, cam.height - 1), Some((Surface::Ground, _))), "bottom is ground");
    assert!(matches!(probe(&scene, &cam, cx, cy), Some((Surface::Sphere(0), _))), "centre is the middle sphere");

    let (sky, ground, centre) = (px(0, 0), px(cx, cam.height - 1), px(cx, cy));
    assert!(sky[2] > sky[0].saturating_add(20), "sky is blue: {sky:?}");
    for (a, b, what) in [(sky, ground, "sky/ground"), (sky, centre, "sky/centre"), (ground, centre, "ground/centre")] {
        assert!(distance(a, b) > 30, "{what} look alike: {a:?} {b:?}");
    }
    let mut colours: Vec<[u8; 3]> = image.rgb.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 1000, "only {} distinct colours", colours.len());
    Ok(())
}

/// Mean colour of the pixels whose primary ray satisfies `pick`.
fn mean_colour(scene: &Scene, cam: &Camera, image: &Image, pick: impl Fn(Surface, Vec3) -> bool) -> Option<[f32; 3]> {
    let (mut sum, mut n) = ([0.0f32; 3], 0u32);
    for y in 0..cam.height {
        for x in 0..cam.width {
            if let Some((surface, p)) = probe(scene, cam, x, y)
                && pick(surface, p)
            {
                let c = image.pixel(x, y)?;
                (0..3).for_each(|i| sum[i] += f32::from(c[i]));
                n += 1;
            }
        }
    }
    (n > 20).then(|| sum.map(|s| s / n as f32))
}

#[test]
fn spheres_show_their_material_colour() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let cam = Camera { width: 160, height: 120, ..Camera::default() };
    let image = render(&scene, &cam)?;
    // (sphere index, dominant channel)
    for (index, channel) in [(1, 0), (2, 2), (4, 1)] {
        let albedo = scene.spheres[index].material.albedo;
        let mean = mean_colour(&scene, &cam, &image, |s, _| s == Surface::Sphere(index))
            .ok_or_else(|| anyhow::anyhow!("sphere {index} ({albedo:?}) is not visible"))?;
        for other in (0..3).filter(|&c| c != channel) {
            assert!(
                mean[channel] > mean[other] + 25.0,
                "sphere {index}: {mean:?} should be dominated by channel {channel}"
            );
        }
    }
    Ok(())
}

#[test]
fn ground_is_checkered_and_spheres_cast_hard_shadows() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let cam = Camera { width: 160, height: 120, pitch_deg: 35.0, ..Camera::default() };
    let image = render(&scene, &cam)?;
    let shadowed = |p: Vec3| scene.occluded(&Ray { origin: p + Vec3::new(0.0, 1e-3, 0.0), dir: scene.sun.direction });
    let light_tile = |p: Vec3| scene.ground.color_at(p) == scene.ground.color_a;
    let near = |p: Vec3| p.x.abs() < 6.0 && p.z.abs() < 6.0;

    let lit_light =
        mean_colour(&scene, &cam, &image, |s, p| s == Surface::Ground && near(p) && light_tile(p) && !shadowed(p));
    let lit_dark =
        mean_colour(&scene, &cam, &image, |s, p| s == Surface::Ground && near(p) && !light_tile(p) && !shadowed(p));
    let shade_light =
        mean_colour(&scene, &cam, &image, |s, p| s == Surface::Ground && near(p) && light_tile(p) && shadowed(p));
    let (Some(lit_light), Some(lit_dark), Some(shade_light)) = (lit_light, lit_dark, shade_light) else {
        anyhow::bail!("expected lit light tiles, lit dark tiles and shadowed light tiles in view");
    };
    let l = |c: [f32; 3]| luma([c[0] as u8, c[1] as u8, c[2] as u8]);
    assert!(l(lit_light) > l(lit_dark) + 80.0, "checker contrast: {lit_light:?} vs {lit_dark:?}");
    assert!(l(lit_light) > l(shade_light) + 50.0, "shadow contrast: {lit_light:?} vs {shade_light:?}");
    Ok(())
}

#[test]
fn bad_cameras_are_rejected_naming_the_field() {
    let ok = Camera::default();
    let cases: [(Camera, &str); 12] = [
        (Camera { width: 5000, ..ok }, "width: expected an integer in 16..=1920, found 5000"),
        (Camera { width: 15, ..ok }, "width: expected an integer in 16..=1920, found 15"),
        (Camera { height: 0, ..ok }, "height: expected an integer in 16..=1920, found 0"),
        (Camera { height: 1921, ..ok }, "height: expected an integer in 16..=1920, found 1921"),
        (Camera { pitch_deg: 89.5, ..ok }, "pitch: expected a number in -89..=89, found 89.5"),
        (Camera { pitch_deg: -90.0, ..ok }, "pitch: expected a number in -89..=89, found -90"),
        (Camera { distance: 0.5, ..ok }, "distance: expected a number in 1..=100, found 0.5"),
        (Camera { distance: f64::INFINITY, ..ok }, "distance: expected a number in 1..=100, found inf"),
        (Camera { fov_deg: 9.0, ..ok }, "fov: expected a number in 10..=120, found 9"),
        (Camera { fov_deg: f64::NAN, ..ok }, "fov: expected a number in 10..=120, found NaN"),
        (Camera { yaw_deg: f64::NAN, ..ok }, "yaw: expected a finite number, found NaN"),
        (Camera { yaw_deg: f64::NEG_INFINITY, ..ok }, "yaw: expected a finite number, found -inf"),
    ];
    let scene = Scene::demo();
    for (cam, message) in cases {
        assert_eq!(cam.validate().map_err(|e| e.to_string()), Err(message.to_string()), "{cam:?}");
        assert!(matches!(render(&scene, &cam), Err(CameraError::Invalid { .. })), "{cam:?}");
    }
    for cam in [
        Camera { width: 16, height: 1920, ..ok },
        Camera { pitch_deg: -89.0, distance: 1.0, fov_deg: 120.0, ..ok },
        Camera { pitch_deg: 89.0, distance: 100.0, fov_deg: 10.0, yaw_deg: -7200.5, ..ok },
    ] {
        assert_eq!(cam.validate(), Ok(()), "{cam:?}");
    }
}

#[test]
fn extreme_but_valid_cameras_render() -> anyhow::Result<()> {
    let scene = Scene::demo();
    for (pitch_deg, distance, fov_deg) in
        [(-89.0, 1.0, 120.0), (89.0, 100.0, 10.0), (0.0, 1.0, 10.0), (-30.0, 6.0, 70.0)]
    {
        let cam = Camera { pitch_deg, distance, fov_deg, width: 24, height: 16, ..Camera::default() };
        let image = render(&scene, &cam)?;
        assert_eq!(image.rgb.len(), 24 * 16 * 3);
    }
    Ok(())
}

#[test]
fn encoding_refuses_a_buffer_of_the_wrong_size() {
    let image = Image { width: 4, height: 4, rgb: vec![0; 47] };
    let err = encode_png(&image).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(err, Err("image data: expected 48 bytes for 4x4 rgb, found 47".to_string()));
}
