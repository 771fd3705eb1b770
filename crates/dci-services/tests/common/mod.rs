//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Cursor;
use std::net::SocketAddr;

use anyhow::Context;
use dci_model::ServiceName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A decoded 8-bit RGB PNG: (width, height, rgb bytes).
pub fn decode_png(bytes: &[u8]) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info()?;
    let size = reader.output_buffer_size().ok_or_else(|| anyhow::anyhow!("png too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf)?;
    anyhow::ensure!(info.color_type == png::ColorType::Rgb, "expected rgb, found {:?}", info.color_type);
    anyhow::ensure!(info.bit_depth == png::BitDepth::Eight, "expected 8 bits, found {:?}", info.bit_depth);
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// An HTTP response as read off the socket.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        anyhow::ensure!(self.header("content-type") == Some("application/json"), "not json: {:?}", self.headers);
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// One HTTP/1.1 GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    get_with(addr, path, "").await
}

/// One HTTP/1.1 GET on a fresh connection, with extra header lines (each ending in `\r\n`).
pub async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).context("no status")?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let response = Response { status, headers, body };
    anyhow::ensure!(response.header("transfer-encoding").is_none(), "chunked bodies are not supported here");
    if let Some(len) = response.header("content-length") {
        anyhow::ensure!(len.parse::<usize>()? == response.body.len(), "body length differs from content-length");
    }
    Ok(response)
}

/// Serves `service` on a fresh loopback port.
pub async fn start(service: &str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let name = ServiceName::new(service)?;
    tokio::spawn(async move { dci_services::serve(&name, listener).await });
    Ok(addr)
}

/// An open stream client.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Longest wait for anything the service should send promptly.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Opens `ws://addr/stream?query`.
pub async fn open_stream(addr: SocketAddr, query: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stream?{query}")).await?;
    Ok(ws)
}

/// The next message, waiting at most [`PATIENCE`].
pub async fn next_message(ws: &mut Ws) -> anyhow::Result<tokio_tungstenite::tungstenite::Message> {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(PATIENCE, ws.next()).await.context("no message in time")?;
    Ok(message.context("stream closed")??)
}

/// The next frame (skipping text messages): header and JPEG bytes.
pub async fn next_frame(ws: &mut Ws) -> anyhow::Result<(dci_services::render::FrameHeader, Vec<u8>)> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        if let Message::Binary(bytes) = next_message(ws).await? {
            let (header, jpeg) = dci_services::render::FrameHeader::decode(&bytes)?;
            return Ok((header, jpeg.to_vec()));
        }
    }
}

/// Sends one text message.
pub async fn send_text(ws: &mut Ws, text: &str) -> anyhow::Result<()> {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.into())).await?;
    Ok(())
}

/// The value of an unlabelled sample in the service's `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let response = get(addr, "/metrics").await?;
    anyhow::ensure!(response.status == 200, "metrics: status {}", response.status);
    let text = String::from_utf8(response.body)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no {name} in {text}"))?;
    Ok(line.parse()?)
}

/// Polls `metric` until it reaches `at_least`, for at most [`PATIENCE`].
pub async fn await_metric(addr: SocketAddr, name: &str, at_least: f64) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let v = metric(addr, name).await?;
        if v >= at_least {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{name} stayed at {v}, expected at least {at_least}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Decodes a JPEG to 8-bit RGB: (width, height, rgb).
pub fn decode_jpeg(bytes: &[u8]) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let rgb = decoder.decode()?;
    let info = decoder.info().context("no jpeg info")?;
    anyhow::ensure!(
        info.pixel_format == jpeg_decoder::PixelFormat::RGB24,
        "expected rgb, found {:?}",
        info.pixel_format
    );
    Ok((u32::from(info.width), u32::from(info.height), rgb))
}
