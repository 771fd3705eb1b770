//! The gateway serves the render viewer for a running render session
//! (R-SV1): deploy `render` on a devnet, open the gateway's `/view/<session>`
//! in a real headless Chromium, watch the frames arrive straight from the
//! container's stream, drag and press keys, and see the view change.
//!
//! Needs Debian's `chromium` (`cargo xtask deps` installs it).

#[path = "../../dci-services/tests/common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::{Devnet, cli_json, free_port};
use dci_gateway::api::SessionInfo;
use serde_json::Value;

/// What the page shows now: frame hash and inputs sent.
async fn shown(page: &browser::Page) -> anyhow::Result<(String, u64)> {
    let v = page.eval("[dciView.frameHash, dciView.sent]").await?;
    Ok((v[0].as_str().unwrap_or_default().to_owned(), v[1].as_u64().unwrap_or_default()))
}

/// Waits until every input sent is answered by a frame other than `before`'s.
async fn await_new_view(page: &browser::Page, what: &str, before: &(String, u64)) -> anyhow::Result<()> {
    let condition = format!(
        "dciView.sent > {} && dciView.inputSeqShown >= dciView.sent && dciView.frameHash !== {}",
        before.1,
        serde_json::to_string(&before.0)?
    );
    page.wait_for(what, &condition).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_viewer_of_a_render_session() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_owned();
    let port = free_port();
    let net = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Devnet::start(&dir, port, 1)).await?
    };
    let api = format!("http://127.0.0.1:{port}");
    let session: SessionInfo = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || cli_json(&dir, &["deploy", "render"])).await?
    };
    let view = session.view_path.clone().expect("a render session has a viewer");
    assert_eq!(view, format!("/view/{}", session.id));

    // Unknown sessions have no viewer.
    let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
    let missing = http.get(format!("{api}/view/{}", "0".repeat(32))).send().await?;
    assert_eq!(missing.status().as_u16(), 404);
    // The page is pointed at the container's stream by a redirect.
    let redirect = http.get(format!("{api}{view}?width=96&height=54&fps=15")).send().await?;
    assert_eq!(redirect.status().as_u16(), 303);

    let browser = Browser::launch().await?;
    let page = browser.open(&format!("{api}{view}?width=96&height=54&fps=15")).await?;
    page.wait_for("frames arrive", "window.dciView && dciView.connected && dciView.frames >= 3").await?;
    let stream = format!("{}/stream?width=96&height=54&fps=15", session.endpoint.replacen("http://", "ws://", 1));
    assert_eq!(page.eval("dciView.url").await?, Value::String(stream));
    assert_eq!(page.eval("location.origin").await?, Value::String(api.clone()), "served by the gateway");

    // A drag orbits the camera; keys move it too.
    let before = shown(&page).await?;
    let (x, y) = page.center_of("#view").await?;
    page.drag((x, y), (x + 80.0, y + 20.0), 4).await?;
    await_new_view(&page, "the view changes after a drag", &before).await?;
    for key in ["ArrowLeft", "w"] {
        let before = shown(&page).await?;
        page.press(key).await?;
        await_new_view(&page, &format!("the view changes after {key}"), &before).await?;
    }
    assert_eq!(page.eval("dciView.error").await?, Value::Null, "log:\n{}", browser.log());
    browser.close().await?;

    // A stopped session has no viewer any more.
    let stopped: SessionInfo = {
        let (dir, id) = (dir.clone(), session.id.clone());
        tokio::task::spawn_blocking(move || cli_json(&dir, &["stop", &id])).await?
    };
    assert_eq!(stopped.status, dci_gateway::api::SessionStatus::Stopped);
    assert_eq!(http.get(format!("{api}{view}")).send().await?.status().as_u16(), 404);
    drop(net);
    Ok(())
}
