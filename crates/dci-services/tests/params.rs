//! Camera parameters as they arrive in a query string.

use dci_services::render::{Camera, PARAMS};
use proptest::prelude::*;

fn check(query: &[(&str, &str)], expect: Result<Camera, &str>) {
    let got = Camera::from_query(query.iter().copied()).map_err(|e| e.to_string());
    assert_eq!(got, expect.map_err(str::to_string), "{query:?}");
}

#[test]
fn query_parameters() {
    let d = Camera::default();
    check(&[], Ok(d));
    check(
        &[("yaw", "-45.5"), ("pitch", "-89"), ("distance", "100"), ("fov", "10"), ("width", "1920"), ("height", "16")],
        Ok(Camera { yaw_deg: -45.5, pitch_deg: -89.0, distance: 100.0, fov_deg: 10.0, width: 1920, height: 16 }),
    );
    check(&[("height", "480"), ("yaw", "1e3")], Ok(Camera { height: 480, yaw_deg: 1000.0, ..d }));
    check(&[("width", "5000")], Err("width: expected an integer in 16..=1920, found 5000"));
    check(&[("width", "-5")], Err("width: expected an integer in 16..=1920, found -5"));
    check(&[("width", "320.5")], Err("width: expected an integer in 16..=1920, found \"320.5\""));
    check(&[("width", "")], Err("width: expected an integer in 16..=1920, found \"\""));
    check(&[("height", "99999999999")], Err("height: expected an integer in 16..=1920, found 99999999999"));
    check(&[("pitch", "90")], Err("pitch: expected a number in -89..=89, found 90"));
    check(&[("pitch", "up")], Err("pitch: expected a number in -89..=89, found \"up\""));
    check(&[("distance", "0")], Err("distance: expected a number in 1..=100, found 0"));
    check(&[("fov", "180")], Err("fov: expected a number in 10..=120, found 180"));
    check(&[("fov", "NaN")], Err("fov: expected a number in 10..=120, found NaN"));
    check(&[("yaw", "inf")], Err("yaw: expected a finite number, found inf"));
    check(&[("yaw", "1"), ("yaw", "2")], Err("yaw: expected at most one value, found several"));
    check(&[("zoom", "2")], Err("expected a parameter among yaw, pitch, distance, fov, width, height, found \"zoom\""));
}

#[test]
fn defaults_in_the_table_are_the_default_camera() {
    let d = Camera::default();
    for p in &PARAMS {
        assert_eq!(d.get(p.field), p.default, "{}", p.name);
    }
    assert_eq!(d.validate(), Ok(()));
}

proptest! {
    #[test]
    fn width_is_accepted_exactly_in_range(w in -100_000i64..100_000) {
        let value = w.to_string();
        let got = Camera::from_query([("width", value.as_str())]);
        if (16..=1920).contains(&w) {
            prop_assert_eq!(got.map(|c| c.width), Ok(w as u32));
        } else {
            let message = got.map(|_| ()).map_err(|e| e.to_string()).err().unwrap_or_default();
            prop_assert_eq!(message, format!("width: expected an integer in 16..=1920, found {w}"));
        }
    }

    #[test]
    fn pitch_is_accepted_exactly_in_range(pitch in -200.0f64..200.0) {
        let value = pitch.to_string();
        let got = Camera::from_query([("pitch", value.as_str())]);
        prop_assert_eq!(got.is_ok(), (-89.0..=89.0).contains(&pitch));
        if let Err(e) = got {
            prop_assert!(e.to_string().starts_with("pitch: "), "{}", e);
        }
    }
}
