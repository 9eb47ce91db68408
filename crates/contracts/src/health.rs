//! The health probe every ESB service image runs as its Compose health check
//! (`esb-gateway healthcheck`, ...): the images are `FROM scratch`, with no
//! shell or curl, so the binary probes its own health endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `addr` over plain HTTP/1.0; true on a 2xx status.
pub fn probe(addr: SocketAddr, path: &str) -> bool {
    let timeout = Duration::from_secs(3);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    // "HTTP/1.1 200 ..."
    let status = &head[..read];
    status.len() >= 12 && status.starts_with(b"HTTP/1.") && status[9] == b'2'
}

/// The loopback address a probe should use for a service listening on
/// `listen` (which is usually 0.0.0.0:port).
pub fn loopback(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn probe_reads_the_status_line() {
        for (reply, healthy) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n", false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                s.write_all(reply.as_bytes()).expect("write");
            });
            assert_eq!(probe(addr, "/health"), healthy, "{reply}");
            server.join().expect("server");
        }
    }

    #[test]
    fn probe_fails_when_nothing_listens() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        assert!(!probe(addr, "/health"));
    }
}
