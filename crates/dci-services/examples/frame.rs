//! Renders one frame of the built-in scene to a PNG file and prints how long it took.
//!
//! `cargo run -p dci-services --example frame -- out.png [yaw] [pitch] [distance] [fov] [width] [height]`

use std::time::Instant;

use dci_services::render::{Camera, PARAMS, Scene, encode_png, render};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "frame.png".to_string());
    let values: Vec<String> = args.collect();
    let pairs: Vec<(&str, &str)> = PARAMS.iter().map(|p| p.name).zip(values.iter().map(String::as_str)).collect();
    let cam = Camera::from_query(pairs)?;
    let start = Instant::now();
    let image = render(&Scene::demo(), &cam)?;
    let took = start.elapsed();
    std::fs::write(&out, encode_png(&image)?)?;
    println!("{out}: {}x{} in {:.1} ms", image.width, image.height, took.as_secs_f64() * 1000.0);
    Ok(())
}
