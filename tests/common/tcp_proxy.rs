//! A TCP forwarder on loopback that a test can take down and bring back: what a database
//! restart looks like to its clients (every connection cut, then refused, then accepted again),
//! without restarting the server other tests share.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub port: u16,
    target: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    acceptor: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

impl TcpProxy {
    /// Forwards 127.0.0.1:<port> to `target` (host:port).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Self {
            port,
            target: target.to_string(),
            state: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    /// Forwards to the server of the PostgreSQL URL `url`.
    pub async fn for_database(url: &str) -> Self {
        let u = url::Url::parse(url).expect("URL");
        let target = format!(
            "{}:{}",
            u.host_str().expect("host"),
            u.port().unwrap_or(5432)
        );
        Self::start(&target).await
    }

    fn accept_on(&self, listener: TcpListener) {
        let (target, state) = (self.target.clone(), self.state.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut st = state.lock().unwrap();
                st.connections.retain(|c| !c.is_finished());
                st.connections.push(conn);
            }
        });
        self.state.lock().unwrap().acceptor = Some(acceptor);
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(a) = st.acceptor.take() {
            a.abort();
        }
        for c in st.connections.drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the same port again");
        self.accept_on(listener);
    }

    /// A PostgreSQL URL `url` rewritten to go through this proxy.
    pub fn route(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("URL");
        u.set_host(Some("127.0.0.1")).expect("host");
        u.set_port(Some(self.port)).expect("port");
        u.to_string()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
    }
}
