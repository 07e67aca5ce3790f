//! Telling people about a run: a command (the run's JSON on stdin and in `$SNAP_RUN`), a webhook
//! (HTTP POST of the JSON) or an e-mail through the local `sendmail -t`. The payload is the run
//! log record, which never holds a secret; commands get snap's environment without secrets
//! ([`crate::secrets::scrub_command`]). A notification that fails is reported by the caller and
//! never changes the run's result: the run log already says what happened.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::file::{Event, Notify, NotifyTarget};
use super::runlog::RunRecord;

/// How long a notification command or `sendmail` may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a webhook may take (connect and answer).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// The event a record announces.
pub fn event_of(r: &RunRecord) -> Event {
    match r.result.as_str() {
        "success" => Event::Success,
        "skipped" => Event::Skip,
        _ => Event::Failure,
    }
}

/// Sends `r` to every target in `list` that asked for its event; returns what failed.
pub fn send(list: &[Notify], r: &RunRecord) -> Vec<String> {
    let event = event_of(r);
    let json = match serde_json::to_string(r) {
        Ok(j) => j,
        Err(e) => return vec![e.to_string()],
    };
    let mut failed = Vec::new();
    for n in list.iter().filter(|n| n.on.contains(&event)) {
        let res = match &n.target {
            NotifyTarget::Command(c) => command(c, &json),
            NotifyTarget::Webhook(u) => webhook(u, &json),
            NotifyTarget::Email(to) => email(to, r, &json),
        };
        if let Err(e) = res {
            failed.push(e);
        }
    }
    failed
}

fn command(cmd: &str, json: &str) -> Result<(), String> {
    let mut c = Command::new("sh");
    crate::secrets::scrub_command(&mut c)
        .arg("-c")
        .arg(cmd)
        .env("SNAP_RUN", json);
    feed(c, json.as_bytes()).map_err(|e| format!("notification command {cmd:?}: {e}"))
}

fn email(to: &str, r: &RunRecord, json: &str) -> Result<(), String> {
    let subject = format!("snap: job {} {} {}", r.job, r.kind, r.result);
    let mut body = format!(
        "To: {to}\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n\
         job {} ({}) {} on {}: {}\nstarted {}, ended {}\n",
        r.job, r.class, r.kind, r.host, r.result, r.start, r.end
    );
    if let Some(e) = &r.error {
        body.push_str(&format!("error: {e}\n"));
    }
    body.push_str(&format!("\n{json}\n"));
    let mut c = Command::new("sendmail");
    crate::secrets::scrub_command(&mut c).args(["-t", "-oi"]);
    feed(c, body.as_bytes()).map_err(|e| format!("e-mail to {to} through sendmail: {e}"))
}

/// Runs `c` with `input` on stdin, killing it after [`COMMAND_TIMEOUT`].
fn feed(mut c: Command, input: &[u8]) -> Result<(), String> {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // a command that does not read its input is fine: a broken pipe is not a failure
        let _ = stdin.write_all(input);
    }
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) if s.success() => return Ok(()),
            Some(s) => return Err(format!("exited with {s}")),
            None if start.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {}s", COMMAND_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn webhook(url: &str, json: &str) -> Result<(), String> {
    let shown = crate::secrets::redact_url(url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // the client and the request future are made inside the runtime: reqwest arms its
    // timeout timer when the request is sent
    let res = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()?;
        client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("snap/", env!("CARGO_PKG_VERSION")))
            .body(json.to_string())
            .send()
            .await
    });
    match res {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("webhook {shown}: HTTP {}", r.status())),
        // reqwest's message may quote the URL: say only what kind of failure it was
        Err(e) if e.is_timeout() => Err(format!("webhook {shown}: timed out")),
        Err(e) if e.is_connect() => Err(format!("webhook {shown}: cannot connect")),
        Err(_) => Err(format!("webhook {shown}: request failed")),
    }
}
