//! An in-process HTTP server for `http.check` and `notify` tests.
//!
//! It listens on 127.0.0.1 (a free port) and runs on its own thread with its
//! own tokio runtime, so it serves sync tests that spawn the CLI binary as
//! well as async ones. Every request is recorded. A path answers with its
//! scripted [`Reply`]s in order, the last one repeating; an unscripted path
//! answers a `POST` with `200 ok` (a webhook) and anything else with `404`.
//!
//! Dropping the server stops it: the shutdown channel ends the serve loop and
//! the thread's runtime is dropped, which cancels connections still open.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Waits this long before answering (for timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub content_type: Option<String>,
    /// Every header, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    /// The value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    /// Path → replies still to give; the last is kept and repeats.
    scripts: HashMap<String, Vec<Reply>>,
    requests: Vec<Request>,
}

type SharedState = Arc<Mutex<Shared>>;

pub struct HttpServer {
    addr: SocketAddr,
    state: SharedState,
    /// Sending (or dropping) this stops the serve loop.
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving; the port is bound before this returns.
    pub fn start() -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = SharedState::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-http-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the test HTTP server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, app));
                    tokio::select! {
                        result = serve => result.expect("test HTTP server"),
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawning the test HTTP server thread");
        HttpServer {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Scripts `path`: each request takes the next reply; the last repeats.
    pub fn route(&self, path: &str, replies: impl IntoIterator<Item = Reply>) -> &Self {
        let replies: Vec<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a route needs at least one reply");
        self.lock().scripts.insert(path.to_owned(), replies);
        self
    }

    /// `path` answers `503` to its first `failures` requests, then `200 body`.
    pub fn flaky(&self, path: &str, failures: usize, body: &str) -> &Self {
        let mut replies = vec![Reply::new(503, "unavailable"); failures];
        replies.push(Reply::new(200, body));
        self.route(path, replies)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Bodies POSTed to `path`, in order.
    pub fn posted(&self, path: &str) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let reply = {
        let mut shared = state.lock().unwrap_or_else(|e| e.into_inner());
        shared.requests.push(Request {
            method: method.to_string(),
            path: path.clone(),
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        match shared.scripts.get_mut(&path) {
            Some(replies) if replies.len() > 1 => Some(replies.remove(0)),
            Some(replies) => Some(replies[0].clone()),
            None if method == Method::POST => Some(Reply::new(200, "ok")),
            None => None,
        }
    };
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).expect("a valid status code");
    (status, reply.body).into_response()
}

#[tokio::test]
async fn scripted_replies_and_recorded_posts() {
    let server = HttpServer::start();
    server.flaky("/health", 2, "ready");
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(server.url(path)).send();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get("/health").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(get("/health").await.unwrap().text().await.unwrap(), "ready");
    assert_eq!(server.hits("/health"), 4);
    assert_eq!(get("/nope").await.unwrap().status(), 404);

    let hook = client.post(server.url("/hook")).body(r#"{"text":"done"}"#);
    assert_eq!(hook.send().await.unwrap().status(), 200);
    assert_eq!(server.posted("/hook"), [r#"{"text":"done"}"#]);
}
