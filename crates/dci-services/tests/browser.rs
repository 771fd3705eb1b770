//! The viewer page in a real headless Chromium: it shows the live stream,
//! mouse drags and keys move the camera, and it displays the latency. The page
//! is served from another origin than the stream, as the gateway serves it.
//!
//! Needs Debian's `chromium` (`cargo xtask deps` installs it).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use browser::{Browser, Page};
use common::{await_metric, start};
use dci_services::render::{CLIENT_PAGE, client_query};
use serde_json::Value;
use tokio::net::TcpListener;

/// Serves the viewer page at `/view` on its own port: a different origin from the service.
async fn other_origin() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/view", get(|| async { Html(CLIENT_PAGE) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// What the page shows: its frame hash, inputs sent, latencies measured.
struct Shown {
    hash: String,
    sent: u64,
    latencies: u64,
}

async fn shown(page: &Page) -> anyhow::Result<Shown> {
    let v = page.eval("[dciView.frameHash, dciView.sent, dciView.latencies.length]").await?;
    let hash = v[0].as_str().unwrap_or_default().to_string();
    Ok(Shown { hash, sent: v[1].as_u64().unwrap_or_default(), latencies: v[2].as_u64().unwrap_or_default() })
}

/// Waits until every input sent since `before` is reflected by a shown frame
/// that differs from the one shown then, and its latency was measured.
async fn await_new_view(page: &Page, what: &str, before: &Shown) -> anyhow::Result<()> {
    let condition = format!(
        "dciView.sent > {} && dciView.inputSeqShown >= dciView.sent && dciView.frameHash !== {} \
         && dciView.latencies.length > {}",
        before.sent,
        serde_json::to_string(&before.hash)?,
        before.latencies,
    );
    page.wait_for(what, &condition).await?;
    Ok(())
}

#[tokio::test]
async fn the_viewer_shows_frames_and_moves_the_camera_on_drag_and_keys() -> anyhow::Result<()> {
    let service = start("render").await?;
    let origin = other_origin().await?;
    let browser = Browser::launch().await?;

    let stream = format!("ws://{service}/stream?width=96&height=54&fps=15");
    let page = browser.open(&format!("http://{origin}/view?{}", client_query(&stream))).await?;
    page.wait_for("frames arrive", "window.dciView && dciView.connected && dciView.frames >= 3").await?;
    assert_eq!(page.eval("dciView.url").await?, Value::String(stream.clone()));

    // The canvas shows a picture of the frame's size, not a blank.
    let canvas = page
        .eval(
            "(() => { const c = document.getElementById('view');
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               const colours = new Set();
               for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
               return [c.width, c.height, colours.size]; })()",
        )
        .await?;
    assert_eq!((canvas[0].as_u64(), canvas[1].as_u64()), (Some(96), Some(54)), "{canvas}");
    assert!(canvas[2].as_u64().unwrap_or_default() > 100, "too few colours: {canvas}");
    assert_eq!(page.eval("document.getElementById('latency').textContent").await?, "-");

    // A mouse drag across the canvas orbits the camera.
    let before = shown(&page).await?;
    assert_eq!((before.sent, before.latencies), (0, 0));
    let (x, y) = page.center_of("#view").await?;
    page.drag((x, y), (x + 80.0, y + 20.0), 4).await?;
    await_new_view(&page, "the view changes after a drag", &before).await?;
    let latency = page.wait_for("latency is shown", "document.getElementById('latency').textContent").await?;
    let latency = latency.as_str().unwrap_or_default();
    assert!(latency.ends_with(')') && latency.contains(" ms (median "), "{latency}");
    assert!(page.eval("dciView.latencies.length").await?.as_u64() >= Some(1));

    // So does a key.
    for key in ["ArrowLeft", "w"] {
        let before = shown(&page).await?;
        page.press(key).await?;
        await_new_view(&page, &format!("the view changes after {key}"), &before).await?;
    }
    let fps = page.wait_for("fps is shown", "dciView.fps").await?;
    assert!(fps.as_f64().is_some_and(|f| f > 0.0), "{fps}");
    assert_eq!(page.eval("dciView.error").await?, Value::Null, "log:\n{}", browser.log());

    // The service saw the same inputs.
    let sent = page.eval("dciView.sent").await?.as_u64().unwrap_or_default();
    assert!(sent >= 3, "{sent} inputs sent");
    await_metric(service, "dci_render_inputs_total", sent as f64).await?;

    // The service serves the page itself, pointed at its own stream.
    let own = browser.open(&format!("http://{service}/?width=64&height=36&fps=10")).await?;
    own.wait_for("frames arrive from the page's own origin", "window.dciView && dciView.frames >= 2").await?;
    assert_eq!(
        own.eval("dciView.url").await?,
        Value::String(format!("ws://{service}/stream?fps=10&width=64&height=36"))
    );
    assert_eq!(
        own.eval("[document.getElementById('view').width, document.getElementById('view').height]").await?,
        serde_json::json!([64, 36])
    );

    browser.close().await
}
