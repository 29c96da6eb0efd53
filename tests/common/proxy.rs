//! A loopback TCP proxy (tokio) to cut a service off from a server: `cut` drops every connection and stops
//! listening (new connections are refused), `restore` listens on the same port again. For broker
//! outages without restarting the broker (tansu's memory storage would lose the topic).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub port: u16,
    upstream: u16,
    rt: tokio::runtime::Runtime,
    up: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Proxy {
    /// Forwards `127.0.0.1:port` (a free port) to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut p = Proxy { port: super::free_port(), upstream, rt, up: None };
        p.restore();
        p
    }

    /// Listens again (no-op when up).
    pub fn restore(&mut self) {
        if self.up.is_some() {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = self.rt.block_on(async {
            let s = TcpSocket::new_v4()?;
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(64)
        });
        let listener = listener.unwrap_or_else(|e| panic!("proxy: listen on {addr}: {e}"));
        let token = CancellationToken::new();
        let task = self.rt.spawn(accept(listener, self.upstream, token.clone()));
        self.up = Some((token, task));
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&mut self) {
        if let Some((token, task)) = self.up.take() {
            token.cancel();
            // Returns once the listener and every connection are closed.
            let _ = self.rt.block_on(task);
        }
    }
}

async fn accept(listener: TcpListener, upstream: u16, token: CancellationToken) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            r = listener.accept() => {
                let Ok((client, _)) = r else { continue };
                let token = token.clone();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = pump(&client, &server) => {}
                        _ = pump(&server, &client) => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Copies `from` to `to` until EOF or an error (tokio's io-util copy is not among the crate's features).
async fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
