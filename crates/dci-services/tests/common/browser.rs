//! A headless Chromium for tests, driven over the Chrome DevTools Protocol.
//!
//! Self-contained so other crates' tests can include it with
//! `#[path = "../../dci-services/tests/common/browser.rs"] mod browser;`. It needs
//! these (dev-)dependencies: `anyhow`, `futures-util`, `serde_json`, `tempfile`,
//! `tokio` (full) and `tokio-tungstenite`.
//!
//! The protocol client is the few commands the tests use (open a page, evaluate
//! JavaScript, dispatch real mouse and key input), over one WebSocket: a CDP
//! crate would bring the whole generated protocol for that. Chromium comes
//! from Debian's `chromium` package, which `cargo xtask deps` installs; it is
//! started with the flags that keep it off the network (see ENVIRONMENT.md).
//! Every wait polls with a deadline; nothing sleeps to synchronize.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for the browser to start, a command to answer, or a condition to hold.
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(30);

/// Recent lines of output kept for error messages.
const LOG_LINES: usize = 40;

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;
type Log = Arc<Mutex<VecDeque<String>>>;

fn push_log(log: &Log, line: String) {
    let mut log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if log.len() == LOG_LINES {
        log.pop_front();
    }
    log.push_back(line);
}

/// A running headless Chromium; killed when dropped (prefer [`Browser::close`]).
pub struct Browser {
    child: Child,
    cdp: Arc<Cdp>,
    /// Chromium's stderr and the pages' console messages and exceptions.
    log: Log,
    _profile: tempfile::TempDir,
}

/// The DevTools connection: commands out, answers matched by id.
struct Cdp {
    sink: tokio::sync::Mutex<Sink>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Cdp {
    /// Sends a command (to a page when `session` is given) and waits for its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, tx);
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.sink.lock().await.send(Message::Text(command.to_string().into())).await?;
        let answer = tokio::time::timeout(BROWSER_PATIENCE, rx)
            .await
            .with_context(|| format!("{method}: no answer within {BROWSER_PATIENCE:?}"))?
            .map_err(|_| anyhow!("{method}: the browser connection closed"))?;
        answer.map_err(|e| anyhow!("{method}: {e}"))
    }
}

/// Where Debian's chromium is, or an error saying how to install it.
pub fn chromium_path() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|dir| dir.join("chromium")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/bin/chromium")]).find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("chromium: expected the chromium browser on PATH, found none; `cargo xtask deps` installs it (Debian package chromium)")
    })
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and connects to it.
    pub async fn launch() -> anyhow::Result<Browser> {
        let program = chromium_path()?;
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--mute-audio",
                "--window-size=1024,768",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;

        // Chromium prints its DevTools URL on stderr; keep draining stderr afterwards.
        let log: Log = Arc::default();
        let mut lines = BufReader::new(child.stderr.take().context("chromium stderr")?).lines();
        let find_url = async {
            while let Some(line) = lines.next_line().await? {
                push_log(&log, line.clone());
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("ws://")) {
                    return Ok::<_, anyhow::Error>(Some(url.to_string()));
                }
            }
            Ok(None)
        };
        let url = match tokio::time::timeout(BROWSER_PATIENCE, find_url).await {
            Ok(Ok(Some(url))) => url,
            outcome => {
                let why = match outcome {
                    Ok(Ok(_)) => "it exited".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("nothing within {BROWSER_PATIENCE:?}"),
                };
                bail!(
                    "chromium: expected \"DevTools listening on ws://...\" on stderr, found {why}; output:\n{}",
                    dump(&log)
                );
            }
        };
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    push_log(&log, line);
                }
            }
        });

        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.context("connect to chromium")?;
        let (sink, mut stream) = socket.split();
        let pending: Pending = Arc::default();
        tokio::spawn({
            let pending = pending.clone();
            let log = log.clone();
            async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    if let Some(id) = v["id"].as_u64() {
                        let waiter = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
                        if let Some(waiter) = waiter {
                            let answer = match v.get("error") {
                                Some(e) => Err(e.to_string()),
                                None => Ok(v["result"].clone()),
                            };
                            let _ = waiter.send(answer);
                        }
                    } else if let Some(line) = page_event(&v) {
                        push_log(&log, line);
                    }
                }
                // Dropping the waiters tells every caller the connection closed.
                pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
            }
        });
        let cdp = Arc::new(Cdp { sink: tokio::sync::Mutex::new(sink), pending, next_id: AtomicU64::new(1) });
        Ok(Browser { child, cdp, log, _profile: profile })
    }

    /// Opens `url` in a new tab (without waiting for it to load: poll with [`Page::wait_for`]).
    pub async fn open(&self, url: &str) -> anyhow::Result<Page> {
        let target = self.cdp.call(None, "Target.createTarget", json!({ "url": url })).await?;
        let target_id = target["targetId"].as_str().context("Target.createTarget: no targetId")?;
        let attached =
            self.cdp.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await?;
        let session = attached["sessionId"].as_str().context("Target.attachToTarget: no sessionId")?.to_string();
        let page = Page { cdp: self.cdp.clone(), log: self.log.clone(), session };
        page.call("Runtime.enable", json!({})).await?;
        // Key events go to the focused page; headless has no window focus to give.
        page.call("Emulation.setFocusEmulationEnabled", json!({ "enabled": true })).await?;
        Ok(page)
    }

    /// Recent browser output and page console messages, for error reports.
    pub fn log(&self) -> String {
        dump(&self.log)
    }

    /// Asks the browser to quit and waits for it (killing it if it does not).
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = self.cdp.call(None, "Browser.close", json!({})).await;
        if tokio::time::timeout(BROWSER_PATIENCE, self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

fn dump(log: &Log) -> String {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect::<Vec<_>>().join("\n")
}

/// A console message or uncaught exception of a page, as one line.
fn page_event(v: &Value) -> Option<String> {
    match v["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = v["params"]["args"]
                .as_array()?
                .iter()
                .map(|a| a.get("value").map_or_else(|| a["description"].to_string(), Value::to_string))
                .collect();
            Some(format!("console.{}: {}", v["params"]["type"].as_str().unwrap_or("log"), args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let details = &v["params"]["exceptionDetails"];
            Some(format!("exception: {} {}", details["text"], details["exception"]["description"]))
        }
        _ => None,
    }
}

/// One tab.
pub struct Page {
    cdp: Arc<Cdp>,
    log: Log,
    session: String,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Evaluates a JavaScript expression (awaiting promises) and returns its value as JSON.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let answer = self.call("Runtime.evaluate", params).await?;
        if let Some(e) = answer.get("exceptionDetails") {
            bail!("{expression}: threw {}", e["exception"]["description"].as_str().unwrap_or(&e.to_string()));
        }
        Ok(answer["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expression` until it is truthy (not null, false, 0 or ""), for at most
    /// [`BROWSER_PATIENCE`]; returns its value. `what` names the condition in errors.
    pub async fn wait_for(&self, what: &str, expression: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + BROWSER_PATIENCE;
        loop {
            // Errors while the page loads (e.g. a global not defined yet) count as "not yet".
            let value = self.eval(expression).await.unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{what}: expected `{expression}` to hold within {BROWSER_PATIENCE:?}, found {value}; browser log:\n{}",
                    dump(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A PNG screenshot of the viewport, base64-encoded (for debugging failures).
    pub async fn screenshot_base64(&self) -> anyhow::Result<String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        Ok(shot["data"].as_str().context("Page.captureScreenshot: no data")?.to_string())
    }

    /// The centre of the element matching `selector`, in viewport pixels.
    pub async fn center_of(&self, selector: &str) -> anyhow::Result<(f64, f64)> {
        let selector_js = serde_json::to_string(selector)?;
        let rect = self
            .eval(&format!(
                "(() => {{ const r = document.querySelector({selector_js}).getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await?;
        let x = rect[0].as_f64().context("x")?;
        let y = rect[1].as_f64().context("y")?;
        Ok((x, y))
    }

    /// A left-button mouse drag from `from` to `to` in `steps` moves, as real input events.
    pub async fn drag(&self, from: (f64, f64), to: (f64, f64), steps: u32) -> anyhow::Result<()> {
        let mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        self.call("Input.dispatchMouseEvent", mouse("mousePressed", from, 1)).await?;
        let steps = steps.max(1);
        for i in 1..=steps {
            let t = f64::from(i) / f64::from(steps);
            let at = (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t);
            self.call("Input.dispatchMouseEvent", mouse("mouseMoved", at, 1)).await?;
        }
        self.call("Input.dispatchMouseEvent", mouse("mouseReleased", to, 0)).await?;
        Ok(())
    }

    /// Presses and releases a key, named as `KeyboardEvent.key` (`ArrowLeft`, `a`, ...).
    pub async fn press(&self, key: &str) -> anyhow::Result<()> {
        let (code, key_code) = match key {
            "ArrowLeft" => ("ArrowLeft".to_string(), 37),
            "ArrowUp" => ("ArrowUp".to_string(), 38),
            "ArrowRight" => ("ArrowRight".to_string(), 39),
            "ArrowDown" => ("ArrowDown".to_string(), 40),
            k if k.len() == 1 && k.as_bytes()[0].is_ascii_alphabetic() => {
                let upper = k.to_ascii_uppercase();
                (format!("Key{upper}"), u32::from(upper.as_bytes()[0]))
            }
            other => bail!("press: expected an arrow key or a letter, found {other:?}"),
        };
        let text = if key.len() == 1 { key } else { "" };
        let event = |kind: &str| json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code, "text": text });
        self.call("Input.dispatchKeyEvent", event("keyDown")).await?;
        self.call("Input.dispatchKeyEvent", event("keyUp")).await?;
        Ok(())
    }
}
