//! A fault-injecting HTTP proxy between snap and an S3 server, for the fault tests: it forwards
//! each request to the upstream and, at configured rates, answers 503 SlowDown instead, resets
//! the connection without answering, or delays the answer. It also counts requests by method, so
//! a benchmark can report requests per GiB stored.
//!
//! One request per connection (`Connection: close` both ways) keeps it a page of code: the
//! point is the faults, not the proxying.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Fraction of requests answered `503 SlowDown`.
    pub slow_down: f64,
    /// Fraction whose connection is closed before any answer.
    pub reset: f64,
    /// Fraction answered after `delay`.
    pub delayed: f64,
    pub delay: Duration,
}

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub head: AtomicU64,
    pub delete: AtomicU64,
    pub other: AtomicU64,
    pub injected: AtomicU64,
    pub bytes_up: AtomicU64,
}

pub struct Proxy {
    pub endpoint: String,
    pub counts: Arc<Counts>,
    faults: Arc<std::sync::Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream` (`http://host:port`).
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let counts = Arc::new(Counts::default());
        let faults = Arc::new(std::sync::Mutex::new(faults));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, f, s) = (counts.clone(), faults.clone(), stop.clone());
        std::thread::spawn(move || {
            let seq = AtomicU64::new(0);
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let (c, faults, up) = (c.clone(), *f.lock().unwrap(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, faults, &c, n);
                });
            }
        });
        Proxy {
            endpoint,
            counts,
            faults,
            stop,
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// A deterministic "random" fraction in [0, 1) for request `n` and fault kind `k`.
fn roll(n: u64, k: u64) -> f64 {
    let h = blake3::hash(&[n.to_le_bytes(), k.to_le_bytes()].concat());
    let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
    (v >> 11) as f64 / (1u64 << 53) as f64
}

fn serve(client: TcpStream, upstream: &str, f: Faults, c: &Counts, n: u64) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        assert!(
            !lower.starts_with("transfer-encoding: chunked"),
            "the proxy does not forward chunked uploads"
        );
        if line == "\r\n" {
            break;
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.bytes_up
        .fetch_add(content_length as u64, Ordering::Relaxed);
    if std::env::var_os("SNAP_PROXY_LOG").is_some() {
        let line = String::from_utf8_lossy(&head);
        eprintln!("proxy: {}", line.lines().next().unwrap_or_default());
    }
    let method = head.split(|&b| b == b' ').next().unwrap_or_default();
    match method {
        b"GET" => &c.get,
        b"PUT" | b"POST" => &c.put,
        b"HEAD" => &c.head,
        b"DELETE" => &c.delete,
        _ => &c.other,
    }
    .fetch_add(1, Ordering::Relaxed);
    let mut client = client;
    if roll(n, 1) < f.reset {
        c.injected.fetch_add(1, Ordering::Relaxed);
        // Close without a word; RST rather than FIN where the socket allows it.
        let _ = client.set_linger_zero();
        return Ok(());
    }
    if roll(n, 2) < f.slow_down {
        c.injected.fetch_add(1, Ordering::Relaxed);
        let msg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                   <Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return Ok(());
    }
    if roll(n, 3) < f.delayed {
        c.injected.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(f.delay);
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    // Say `Connection: close` to the client too, so it never reuses this connection.
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap_or(resp.len());
    let (hdr, rest) = resp.split_at(split);
    let hdr = String::from_utf8_lossy(hdr);
    let mut out = String::new();
    for l in hdr.split_inclusive("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
        }
    }
    out.push_str("Connection: close\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(rest)?;
    Ok(())
}

trait LingerZero {
    fn set_linger_zero(&self) -> std::io::Result<()>;
}

impl LingerZero for TcpStream {
    fn set_linger_zero(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a properly sized option value.
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
