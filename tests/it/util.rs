//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary in `cwd`.
pub fn agentsched_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("binary runs")
}

/// [`agentsched_in`], killed (by its PID) and failed if it runs past
/// `limit`: for runs that would hang if what they test broke.
pub fn agentsched_in_within(cwd: &Path, args: &[&str], limit: std::time::Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_agentsched"))
        .current_dir(cwd)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("binary ran"),
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("agentsched {args:?} still ran after {limit:?}: killed");
        }
    }
}

/// Runs the binary in the package directory.
pub fn agentsched(args: &[&str]) -> Output {
    agentsched_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Both output streams, for assertion messages.
pub fn err(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Sends `signal` (`INT`, `TERM`) to the process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// An `agentsched emulate` child process on 127.0.0.1, killed (by PID)
/// when dropped.
pub struct Emulator {
    child: Child,
    /// The endpoints file it wrote.
    pub endpoints: PathBuf,
}

impl Emulator {
    /// Starts `emulate ARGS --write-endpoints DIR/NAME` and waits for the file.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Emulator {
        let endpoints = dir.join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_agentsched"))
            .arg("emulate")
            .args(args)
            .arg("--write-endpoints")
            .arg(&endpoints)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator starts");
        let mut e = Emulator { child, endpoints };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !e.endpoints.exists() {
            if Instant::now() > deadline || e.child.try_wait().ok().flatten().is_some() {
                panic!("the emulator wrote no endpoints file");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        e
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL of a loopback server that accepts every connection and
/// answers nothing (a hung endpoint). Its thread holds the connections
/// until the test process ends.
pub fn hung_endpoint() -> String {
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", hung.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hung.incoming() {
            held.push(c);
        }
    });
    url
}

/// Every request a live run (`out`) sent to (provider, tier) was aborted
/// as a timeout after `limit_s` real seconds (up to ten times as long, for
/// a loaded machine); there was at least one.
pub fn assert_each_timed_out_after(out: &Path, provider: &str, tier: u64, limit_s: f64) {
    let sent = sent_to(out, provider, tier);
    assert!(
        !sent.is_empty(),
        "nothing was sent to {provider} tier {tier}"
    );
    let from = (limit_s * 1e6) as u64;
    for r in &sent {
        assert_eq!(r["error"], "timeout", "{r}");
        let waited = r["done_us"].as_u64().unwrap() - r["sent_us"].as_u64().unwrap();
        assert!(
            (from..10 * from).contains(&waited),
            "aborted after {waited} us: {r}"
        );
    }
}

/// Reads one HTTP/1.1 request from `conn`: its path and body (by
/// `content-length`); None when the peer closed first.
pub fn read_request(conn: &std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// The base URL of a loopback server that answers every request with
/// `status` (and a JSON error body), one request a connection: an endpoint
/// that refuses a key, or serves no such path.
pub fn refusing_endpoint(status: u16) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                if read_request(&conn).is_none() {
                    return;
                }
                let answer = format!(
                    r#"{{"error":{{"message":"Refused:\n  status {status}.","type":"invalid_request_error"}}}}"#
                );
                let _ = write!(
                    &conn,
                    "HTTP/1.1 {status} Refused\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    url
}

/// The requests a live run's log (`OUT/requests.jsonl`) records as sent to
/// `provider`'s `tier` and not cancelled.
pub fn sent_to(out: &Path, provider: &str, tier: u64) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["provider"] == provider && r["tier"] == tier && r["cancelled"] == false)
        .collect()
}
