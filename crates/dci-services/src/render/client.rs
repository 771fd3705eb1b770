//! The browser viewer of the live stream: one self-contained HTML page (no
//! build step, no external resources) that shows the frames of `GET /stream`
//! on a canvas, sends mouse drags, the wheel and keys as inputs, and displays
//! frame rate and input-to-frame latency.
//!
//! The render service serves it at `/client` (and at `/` to browsers). Any
//! other origin may serve it too, e.g. the gateway: `?ws=ws://host:port/stream?fps=30`
//! (URL-encoded) points it at a service's stream; without `ws` it opens the
//! stream of the origin that served it, passing on `fps`, `quality`, `width`,
//! `height` and the camera parameters from its own query.
//!
//! The page keeps its state in `window.dciView` (`connected`, `frames`,
//! `frameNumber`, `frameHash`, `inputSeqShown`, `sent`, `latencyMs`,
//! `latencies`, `fps`, `renderMs`, `error`) so tests and scripts can read it.

/// The page's HTML.
pub const CLIENT_PAGE: &str = include_str!("client.html");

/// The page's query string that points it at `ws_url`, percent-encoded, e.g.
/// `ws=ws%3A%2F%2F127.0.0.1%3A8080%2Fstream%3Ffps%3D30`: append it to
/// wherever the page is served (`/view?` + this).
pub fn client_query(ws_url: &str) -> String {
    let mut out = String::from("ws=");
    for b in ws_url.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_percent_encodes_the_url() {
        assert_eq!(
            client_query("ws://127.0.0.1:8080/stream?fps=30&width=96"),
            "ws=ws%3A%2F%2F127.0.0.1%3A8080%2Fstream%3Ffps%3D30%26width%3D96"
        );
    }
}
