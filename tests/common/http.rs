//! A small HTTP/1.1 server on loopback for tests, able to misbehave on purpose: delays,
//! answers that never come, wrong statuses, sequences of answers, conditional GET.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What to answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// Never answer (the client must time out).
    pub hang: bool,
}

impl Response {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: format!("status {status}").into_bytes(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Handler>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(bind: &str) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind test server");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            routes: Arc::default(),
            requests: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(stream).await });
            }
        });
        server
    }

    /// `127.0.0.1:PORT`, as a trusted-host entry.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Always answers `response` at `path`.
    pub fn route(&self, path: &str, response: Response) {
        self.handle(path, move |_| response.clone());
    }

    /// Answers the responses in turn; the last one repeats.
    pub fn route_seq(&self, path: &str, responses: Vec<Response>) {
        let n = AtomicUsize::new(0);
        self.handle(path, move |_| {
            let i = n.fetch_add(1, Ordering::SeqCst).min(responses.len() - 1);
            responses[i].clone()
        });
    }

    /// Serves `body` with an ETag, answering 304 to a matching If-None-Match.
    pub fn route_etag(&self, path: &str, content_type: &str, body: Vec<u8>, etag: &str) {
        let etag = etag.to_string();
        let content_type = content_type.to_string();
        self.handle(path, move |req| {
            if req.headers.get("if-none-match") == Some(&etag) {
                Response::status(304)
            } else {
                Response::ok(&content_type, body.clone()).header("ETag", &etag)
            }
        });
    }

    pub fn handle(&self, path: &str, f: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), Arc::new(f));
    }

    /// Requests received at `path`.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split_whitespace();
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let req = Request {
            method,
            path: path.clone(),
            headers,
            body,
        };
        self.requests.lock().unwrap().push(req.clone());
        let route_path = path.split('?').next().unwrap_or_default().to_string();
        let handler = self.routes.lock().unwrap().get(&route_path).cloned();
        let resp = match handler {
            Some(h) => h(&req),
            None => Response::status(404),
        };
        if resp.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        if !resp.delay.is_zero() {
            tokio::time::sleep(resp.delay).await;
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let _ = stream.write_all(out.as_bytes()).await;
        let _ = stream.write_all(&resp.body).await;
        let _ = stream.shutdown().await;
    }
}
