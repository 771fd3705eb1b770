//! The services over real HTTP on loopback.

mod common;

use anyhow::Context;
use common::{get, start};
use dci_model::ServiceName;
use dci_services::render::{Camera, Scene, encode_png, render};
use tokio::net::TcpListener;

#[tokio::test]
async fn frame_returns_the_rendered_png() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let response = get(addr, "/frame?yaw=120&pitch=35&distance=9&fov=55&width=64&height=48").await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/png"));
    let ms: f64 = response.header("x-render-ms").context("no x-render-ms")?.parse()?;
    assert!(ms >= 0.0);
    let (w, h, _) = common::decode_png(&response.body)?;
    assert_eq!((w, h), (64, 48));
    let cam = Camera { yaw_deg: 120.0, pitch_deg: 35.0, distance: 9.0, fov_deg: 55.0, width: 64, height: 48 };
    assert!(response.body == encode_png(&render(&Scene::demo(), &cam)?)?, "served frame differs from a local render");
    Ok(())
}

#[tokio::test]
async fn frame_defaults_to_320_by_240() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let response = get(addr, "/frame").await?;
    assert_eq!(response.status, 200);
    let (w, h, _) = common::decode_png(&response.body)?;
    assert_eq!((w, h), (320, 240));
    Ok(())
}

#[tokio::test]
async fn bad_parameters_give_400_json_naming_the_parameter() -> anyhow::Result<()> {
    let addr = start("render").await?;
    for (query, message) in [
        ("width=5000", "width: expected an integer in 16..=1920, found 5000"),
        ("pitch=90&width=64", "pitch: expected a number in -89..=89, found 90"),
        ("fov=wide", "fov: expected a number in 10..=120, found \"wide\""),
        ("yaw=%4e%61%4e", "yaw: expected a finite number, found NaN"),
        ("zoom=2", "expected a parameter among yaw, pitch, distance, fov, width, height, found \"zoom\""),
    ] {
        let response = get(addr, &format!("/frame?{query}")).await?;
        assert_eq!(response.status, 400, "{query}");
        let body = response.json()?;
        assert_eq!(body, serde_json::json!({ "code": "bad_request", "message": message }), "{query}");
    }
    Ok(())
}

#[tokio::test]
async fn index_health_and_unknown_paths() -> anyhow::Result<()> {
    let addr = start("render").await?;

    let index = get(addr, "/").await?;
    assert_eq!(index.status, 200);
    let doc = index.json()?;
    assert_eq!(doc["service"], "render");
    let paths: Vec<&str> =
        doc["endpoints"].as_array().context("endpoints")?.iter().filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(paths, ["/", "/client", "/health", "/frame", "/stream", "/metrics"]);
    for name in ["yaw", "pitch", "distance", "fov", "width", "height"] {
        assert!(doc["params"][name]["default"].is_number(), "{name} in {doc}");
    }
    assert_eq!(doc["params"]["width"]["expected"], "an integer in 16..=1920");
    let example = doc["example"].as_str().context("example")?;
    assert_eq!(get(addr, example).await?.status, 200, "the documented example works");

    let health = get(addr, "/health").await?;
    assert_eq!((health.status, health.json()?), (200, serde_json::json!({ "ok": true })));

    let missing = get(addr, "/nope").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()?["code"], "not_found");
    Ok(())
}

#[tokio::test]
async fn only_builtin_services_are_served() -> anyhow::Result<()> {
    assert_eq!(dci_services::catalog(), [ServiceName::new("render")?]);
    assert!(dci_services::is_builtin(&ServiceName::new("render")?));
    assert!(!dci_services::is_builtin(&ServiceName::new("llama")?));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let err = dci_services::serve(&ServiceName::new("llama")?, listener).await.map_err(|e| e.to_string());
    assert_eq!(err, Err("service: expected one of render, found \"llama\"".to_string()));
    // `run` refuses before binding, so it prints nothing.
    let err = dci_services::run(&ServiceName::new("llama")?, "127.0.0.1:0".parse()?).await.map_err(|e| e.to_string());
    assert_eq!(err, Err("service: expected one of render, found \"llama\"".to_string()));
    Ok(())
}

#[test]
fn announcement_is_one_line_with_the_bound_address() -> anyhow::Result<()> {
    let mut out = Vec::new();
    dci_services::announce(&mut out, "127.0.0.1:40123".parse()?)?;
    assert_eq!(String::from_utf8(out)?, "listening on http://127.0.0.1:40123\n");
    let mut out = Vec::new();
    dci_services::announce(&mut out, "[::1]:8080".parse()?)?;
    assert_eq!(String::from_utf8(out)?, "listening on http://[::1]:8080\n");
    Ok(())
}
