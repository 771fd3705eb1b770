//! The live stream over a real WebSocket on loopback: frames are the rendered
//! camera, inputs move it, the simulated user measures it, metrics count it.

mod common;

use common::{await_metric, get, get_with, metric, next_frame, next_message, open_stream, send_text, start};
use dci_services::render::live::MAX_SESSIONS;
use dci_services::render::{
    Camera, Controls, Input, InputMessage, Key, Scene, UserScript, encode_jpeg, render, simulate_user,
};
use tokio_tungstenite::tungstenite::Message;

/// Small frames keep the debug-build tracer fast.
const SMALL: &str = "width=64&height=36&fps=20";

fn small_camera() -> Camera {
    Camera { width: 64, height: 36, ..Camera::default() }
}

#[tokio::test]
async fn frames_are_the_rendered_camera_before_and_after_input() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let mut ws = open_stream(addr, SMALL).await?;
    let scene = Scene::demo();
    let mut controls = Controls::new(small_camera());

    let (first, jpeg) = next_frame(&mut ws).await?;
    assert_eq!((first.input_seq, first.width, first.height), (0, 64, 36));
    assert!(first.frame >= 1);
    assert!(jpeg == encode_jpeg(&render(&scene, &controls.camera())?, 75)?, "first frame differs from a local render");
    let (w, h, rgb) = common::decode_jpeg(&jpeg)?;
    assert_eq!((w, h, rgb.len()), (64, 36, 64 * 36 * 3));

    let mut last = first.frame;
    for (seq, input) in [(1, Input::Key { key: Key::ArrowLeft }), (2, Input::Orbit { dx: -30.0, dy: 12.0 })] {
        let msg = InputMessage { seq, input };
        controls.handle(&msg)?;
        send_text(&mut ws, &msg.to_json()).await?;
        let expected = encode_jpeg(&render(&scene, &controls.camera())?, 75)?;
        loop {
            let (header, jpeg) = next_frame(&mut ws).await?;
            assert!(header.frame > last, "frame numbers increase: {} after {last}", header.frame);
            last = header.frame;
            if header.input_seq == seq {
                assert!(jpeg == expected, "frame after input {seq} differs from a local render");
                break;
            }
            assert!(header.input_seq < seq, "frame says input {} before it was sent", header.input_seq);
        }
    }
    Ok(())
}

#[tokio::test]
async fn bad_inputs_get_an_error_reply_and_the_stream_goes_on() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let mut ws = open_stream(addr, SMALL).await?;
    let cases: [(Message, &str); 5] = [
        (Message::Text("{\"seq\":0,\"type\":\"reset\"}".into()), "seq: expected an integer from 1, found 0"),
        (
            Message::Text("{\"seq\":1,\"type\":\"orbit\",\"dx\":1e9,\"dy\":0}".into()),
            "dx: expected a finite number in -10000..=10000, found 1000000000",
        ),
        (
            Message::Text("{\"seq\":1,\"type\":\"key\",\"key\":\"q\"}".into()),
            "input: expected {\"seq\": n, \"type\": \"orbit\"|\"zoom\"|\"key\"|\"reset\", ...} with known keys, \
             found an error: unknown variant `q`, expected one of `ArrowLeft`, `ArrowRight`, `ArrowUp`, \
             `ArrowDown`, `W`, `w`, `A`, `a`, `S`, `s`, `D`, `d`, `R`, `r` at line 1 column 32",
        ),
        (
            Message::Text("hello".into()),
            "input: expected {\"seq\": n, \"type\": \"orbit\"|\"zoom\"|\"key\"|\"reset\", ...} with known keys, \
             found an error: expected value at line 1 column 1",
        ),
        (Message::Binary(vec![1, 2, 3].into()), "input: expected a JSON text message, found 3 binary bytes"),
    ];
    for (message, expect) in cases {
        futures_util::SinkExt::send(&mut ws, message).await?;
        let reply = loop {
            if let Message::Text(text) = next_message(&mut ws).await? {
                break text;
            }
        };
        let reply: serde_json::Value = serde_json::from_str(reply.as_str())?;
        assert_eq!(reply, serde_json::json!({ "error": expect }));
    }
    send_text(&mut ws, "{\"seq\":1,\"type\":\"zoom\",\"delta\":-2}").await?;
    while next_frame(&mut ws).await?.0.input_seq < 1 {}
    assert_eq!(metric(addr, "dci_render_inputs_rejected_total").await?, 5.0);
    assert_eq!(metric(addr, "dci_render_inputs_total").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn the_simulated_user_sees_every_input_change_the_view() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let script = UserScript { warmup_frames: 2, frames_between_inputs: 1, ..UserScript::standard(6) };
    let report = simulate_user(&format!("ws://{addr}/stream?{SMALL}"), &script).await?;

    assert_eq!(report.stalled, None);
    assert_eq!(report.service_errors, Vec::<String>::new());
    assert_eq!((report.width, report.height), (64, 36));
    assert_eq!(report.inputs.len(), 6);
    assert_eq!((report.inputs_answered, report.inputs_changed_view), (6, 6));
    for (i, outcome) in report.inputs.iter().enumerate() {
        assert_eq!(outcome.seq, i as u64 + 1);
        assert_eq!(outcome.changed, Some(true), "{outcome:?}");
    }
    // Warm-up, one answer and one more frame per input, at least.
    assert!(report.frames >= 2 + 6 * 2, "{} frames", report.frames);
    let latency = report.input_to_frame.expect("answered inputs have latencies");
    assert_eq!(latency.samples, 6);
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    let intervals = report.frame_interval.expect("several frames");
    assert_eq!(intervals.samples as u64, report.frames - 1);
    assert!(report.fps > 0.0 && report.seconds > 0.0);
    assert_eq!(report.server_frame_time.expect("frames").samples as u64, report.frames);

    // The service counted the same session from its side.
    assert_eq!(metric(addr, "dci_render_inputs_total").await?, 6.0);
    await_metric(addr, "dci_render_input_to_frame_seconds_count", 6.0).await?;
    assert!(metric(addr, "dci_render_frames_total").await? >= report.frames as f64);
    assert!(metric(addr, "dci_render_frame_seconds_count").await? >= report.frames as f64);
    assert_eq!(metric(addr, "dci_render_sessions_total").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn the_simulated_user_reports_what_cannot_connect() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let err = simulate_user(&format!("ws://{addr}/stream?fps=500"), &UserScript::default()).await.map(|_| ());
    let err = err.expect_err("fps out of range is refused").to_string();
    assert!(err.starts_with(&format!("connect to ws://{addr}/stream?fps=500: ")), "{err}");
    assert!(err.contains("400"), "{err}");
    Ok(())
}

#[tokio::test]
async fn bad_stream_requests_get_400_json() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (query, message) in [
        ("fps=0", "fps: expected an integer in 1..=60, found 0"),
        ("quality=101", "quality: expected an integer in 1..=100, found 101"),
        ("fps=10&fps=20", "fps: expected at most one value, found several"),
        ("width=99999", "width: expected an integer in 16..=1920, found 99999"),
        (
            "zoom=2",
            "query: expected a parameter among fps, quality, yaw, pitch, distance, fov, width, height, found \"zoom\"",
        ),
    ] {
        let response = get_with(addr, &format!("/stream?{query}"), upgrade).await?;
        assert_eq!(response.status, 400, "{query}");
        assert_eq!(response.json()?, serde_json::json!({ "code": "bad_request", "message": message }), "{query}");
    }
    let plain = get(addr, "/stream").await?;
    assert_eq!(plain.status, 400);
    let message = plain.json()?["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with("expected a websocket upgrade request, found a plain request"), "{message}");
    Ok(())
}

#[tokio::test]
async fn sessions_beyond_the_limit_are_refused_until_one_ends() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let tiny = "width=16&height=16&fps=1";
    let mut open = Vec::new();
    for _ in 0..MAX_SESSIONS {
        let mut ws = open_stream(addr, tiny).await?;
        next_frame(&mut ws).await?;
        open.push(ws);
    }
    let refused = open_stream(addr, tiny).await.map(|_| ()).expect_err("one session too many").to_string();
    assert!(refused.contains("503"), "{refused}");
    assert_eq!(metric(addr, "dci_render_sessions_refused_total").await?, 1.0);
    assert_eq!(metric(addr, "dci_render_sessions_active").await?, MAX_SESSIONS as f64);

    let mut first = open.remove(0);
    futures_util::SinkExt::close(&mut first).await?;
    drop(first);
    // The server notices the close asynchronously: retry until a new session is accepted.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    let mut ws = loop {
        match open_stream(addr, tiny).await {
            Ok(ws) => break ws,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("503"), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    };
    next_frame(&mut ws).await?;
    Ok(())
}

#[tokio::test]
async fn browsers_get_the_viewer_page_and_programs_get_json() -> anyhow::Result<()> {
    let addr = start("render").await?;
    let html = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n";
    let page = get_with(addr, "/", html).await?;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.body, dci_services::render::CLIENT_PAGE.as_bytes());
    assert_eq!(get(addr, "/client").await?.body, page.body);
    assert_eq!(get(addr, "/").await?.json()?["service"], "render");
    assert_eq!(get_with(addr, "/", "Accept: application/json\r\n").await?.json()?["service"], "render");

    let metrics = get(addr, "/metrics").await?;
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    let text = String::from_utf8(metrics.body)?;
    for name in [
        "dci_render_frames_total",
        "dci_render_frames_dropped_total",
        "dci_render_inputs_total",
        "dci_render_sessions_active",
        "dci_render_frame_seconds_count",
        "dci_render_input_to_frame_seconds_count",
    ] {
        assert!(text.lines().any(|l| l == format!("{name} 0")), "{name} 0 in {text}");
    }
    assert!(text.contains("# TYPE dci_render_frame_seconds histogram"));
    assert!(text.contains("dci_render_input_to_frame_seconds_bucket{le=\"+Inf\"} 0"));
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_frames_dropped_not_queued() -> anyhow::Result<()> {
    let addr = start("render").await?;
    // A small receive buffer makes the connection back up after a few frames.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket.connect(addr).await?;
    let url = format!("ws://{addr}/stream?width=160&height=90&fps=30&quality=95");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    let (first, _) = next_frame(&mut ws).await?;

    // Not reading: the service must drop frames rather than queue them.
    await_metric(addr, "dci_render_frames_dropped_total", 10.0).await?;
    // Reading again: what was in flight arrives, then the newest frame: the dropped ones are missing.
    let mut numbers = vec![first.frame];
    while numbers.len() < 50 && !numbers.windows(2).any(|w| w[1] > w[0] + 1) {
        numbers.push(next_frame(&mut ws).await?.0.frame);
    }
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "frames arrive in order: {numbers:?}");
    let skipped: u64 = numbers.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert!(skipped >= 10, "expected a gap of at least the 10 dropped frames, found {numbers:?}");
    Ok(())
}
