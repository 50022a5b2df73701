//! The client side of `outloop exec` through the daemon.
//!
//! [`ExecRemote::connect`] opens a connection of its own when a daemon answers;
//! [`ExecRemote::start`] sends `exec_start` and receives the values for the command's
//! environment, [`ExecRemote::finish`] reports how the command ended so the daemon writes the
//! closing audit record. The daemon decides policy, reads the backends and writes both audit
//! records; this side only runs the command and redacts its output, with a redactor built from
//! the values it received (`RedactorBuilder`, the daemon's redaction floor, one label per
//! credential, as the broker labels them). The backends' own tokens never reach this process,
//! so unlike the in-process path its redactor does not hold them; they are not in the
//! command's environment either way.
//!
//! The connection is read without a `BufReader`: every byte read lands in one zeroizing
//! buffer allocated up front (never grown), and the values are decoded from it straight into
//! [`SecretValue`]s.

use outloop_core::broker::{CANARY_LABEL, ExecCredential, ExecExit};
use outloop_core::config::Paths;
use outloop_core::redact::{Findings, RedactorBuilder, SecretRedactor};
use outloop_core::{Error, ErrorKind, Result, SecretValue};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use zeroize::Zeroizing;

use super::protocol::{
    Body, ExecEndExit, ExecStarted, ExecVariableSpec, Op, Request, Response, VERSION,
};

/// The longest answer line an exec session reads, in bytes (the values, base64).
const MAX_EXEC_LINE: usize = 1024 * 1024;

/// One exec session's connection to the daemon. Its `Debug` shows how many bytes are
/// buffered, never the buffer (it holds the values as they arrived).
pub struct ExecRemote {
    stream: UnixStream,
    /// Everything read from the daemon; zeroized when the session drops.
    buf: Zeroizing<Vec<u8>>,
    /// How many bytes of `buf` hold unread data.
    filled: usize,
}

impl std::fmt::Debug for ExecRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecRemote")
            .field("stream", &self.stream)
            .field("buffered", &self.filled)
            .finish_non_exhaustive()
    }
}

/// The values and redactor an allowed exec request gets. `Debug` is safe: the values and
/// the redactor print redacted.
#[derive(Debug)]
pub struct Granted {
    /// (variable, value) pairs for the command's environment, in request order.
    pub variables: Vec<(String, SecretValue)>,
    /// The redactor for the command's output.
    pub redactor: SecretRedactor,
}

/// A line's version and type, read before the rest (its `data` is skipped unread).
#[derive(Deserialize)]
struct Head {
    v: u32,
    #[serde(rename = "type")]
    kind: String,
}

/// An `exec_started` line, parsed as a plain struct so the values are decoded from the
/// buffer without an intermediate copy.
#[derive(Deserialize)]
struct StartedLine {
    data: ExecStarted,
}

fn broken(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("the outloop daemon connection broke while {what} ({e})"),
    )
}

impl ExecRemote {
    /// Connects to the daemon serving `paths` for one exec session. `None` when no daemon
    /// answers or `OUTLOOP_NO_DAEMON=1` (the caller then runs the broker in-process).
    pub async fn connect(paths: &Paths) -> Option<ExecRemote> {
        if super::disabled() {
            return None;
        }
        let stream = UnixStream::connect(super::socket_path(paths)).await.ok()?;
        Some(Self::over(stream))
    }

    /// A session over a connected stream.
    fn over(stream: UnixStream) -> ExecRemote {
        ExecRemote {
            stream,
            buf: Zeroizing::new(vec![0u8; MAX_EXEC_LINE]),
            filled: 0,
        }
    }

    async fn send(&mut self, op: Op) -> Result<()> {
        let mut line = serde_json::to_vec(&Request::new(op))
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .await
            .map_err(|e| broken("sending", &e))
    }

    /// Reads the next complete line into the front of the buffer; returns its length
    /// (without the newline).
    async fn next_line(&mut self) -> Result<usize> {
        loop {
            if let Some(pos) = self.buf[..self.filled].iter().position(|b| *b == b'\n') {
                return Ok(pos);
            }
            if self.filled == self.buf.len() {
                return Err(Error::internal(format!(
                    "the outloop daemon sent a line longer than {MAX_EXEC_LINE} bytes"
                )));
            }
            let n = self
                .stream
                .read(&mut self.buf[self.filled..])
                .await
                .map_err(|e| broken("reading the answer", &e))?;
            if n == 0 {
                return Err(broken(
                    "reading the answer",
                    &"closed before a complete answer",
                ));
            }
            self.filled += n;
        }
    }

    /// Drops the first line (`len` bytes and its newline) from the buffer.
    fn consume(&mut self, len: usize) {
        self.buf.copy_within(len + 1..self.filled, 0);
        self.filled -= len + 1;
    }

    /// Reads answers until a final one: `held` lines go to `on_held`, an `error` line
    /// becomes the error, and `want`'s line is passed to `parse`.
    async fn answer<T>(
        &mut self,
        want: &str,
        on_held: impl Fn(&outloop_core::approval::Approval),
        parse: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        loop {
            let len = self.next_line().await?;
            let line = &self.buf[..len];
            let head: Head = serde_json::from_slice(line).map_err(|e| {
                Error::internal(format!(
                    "the outloop daemon sent a line that is not a response: {e}"
                ))
            })?;
            if head.v != VERSION {
                return Err(Error::internal(format!(
                    "the outloop daemon speaks protocol {}, this client {VERSION}; restart the daemon",
                    head.v
                )));
            }
            let out = if head.kind == want {
                Some(parse(line))
            } else {
                // No values in these lines: the usual parse.
                let resp: Response = serde_json::from_slice(line).map_err(|e| {
                    Error::internal(format!(
                        "the outloop daemon sent a line that is not a response: {e}"
                    ))
                })?;
                match resp.body {
                    Body::Held(a) => {
                        on_held(&a);
                        None
                    }
                    Body::Error(e) => Some(Err(super::client::older_daemon(e.into()))),
                    _ => Some(Err(Error::internal(format!(
                        "the outloop daemon answered `{}` where `{want}` was expected",
                        head.kind
                    )))),
                }
            };
            self.consume(len);
            if let Some(out) = out {
                return out;
            }
        }
    }

    /// Asks the daemon to start an exec request for this process's working directory
    /// (the daemon takes it from the socket peer) and returns the values and a redactor
    /// for the command's output. `on_held` is told when the request is held for approval.
    ///
    /// # Errors
    ///
    /// The daemon's errors from `Broker::exec_start` with their kinds (denied, unbound,
    /// backend, usage); [`ErrorKind::Unavailable`] when the connection breaks;
    /// [`ErrorKind::InvalidSecret`] when a value is below the redaction floor.
    pub async fn start(
        &mut self,
        credentials: &[ExecCredential],
        command: &str,
        tenant: Option<String>,
        on_held: impl Fn(&outloop_core::approval::Approval),
    ) -> Result<Granted> {
        self.send(Op::ExecStart {
            credentials: credentials
                .iter()
                .map(|c| ExecVariableSpec {
                    name: c.name.clone(),
                    variable: c.variable.clone(),
                })
                .collect(),
            command: command.to_owned(),
            tenant,
        })
        .await?;
        let started = self
            .answer("exec_started", on_held, |line| {
                serde_json::from_slice::<StartedLine>(line)
                    .map(|l| l.data)
                    .map_err(|e| {
                        // serde_json's message names a position, never the input text.
                        Error::internal(format!("the outloop daemon sent a bad exec answer: {e}"))
                    })
            })
            .await?;
        let mut builder = RedactorBuilder::new().floor(started.floor);
        let mut labelled: Vec<&str> = Vec::new();
        for v in &started.variables {
            if !labelled.contains(&v.credential.as_str()) {
                builder.add(&v.credential, &v.value.0)?;
                labelled.push(&v.credential);
            }
        }
        for c in &started.canaries {
            // As the broker does: a canary that cannot be searched for is skipped.
            let _ = builder.add_canary(&c.tenant, CANARY_LABEL, &c.value.0);
        }
        let redactor = builder.build();
        let variables = started
            .variables
            .into_iter()
            .map(|v| (v.variable, v.value.0))
            .collect();
        Ok(Granted {
            variables,
            redactor,
        })
    }

    /// Reports how the command ended; returns once the daemon wrote the closing record.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] when the daemon could not write the record;
    /// [`ErrorKind::Unavailable`] when the connection broke (the daemon then recorded the
    /// end as `client_gone` or `daemon_stopped` itself).
    pub async fn finish(mut self, exit: &ExecExit, findings: &Findings) -> Result<()> {
        let exit = match exit {
            ExecExit::Exited(c) => ExecEndExit::Exited(*c),
            ExecExit::Signaled(s) => ExecEndExit::Signaled(*s),
            ExecExit::NotStarted(kind, message) => ExecEndExit::NotStarted {
                kind: kind.as_str().into(),
                message: message.clone(),
            },
            ExecExit::Unknown { why, .. } => ExecEndExit::NotStarted {
                kind: ErrorKind::Internal.as_str().into(),
                message: why.clone(),
            },
        };
        self.send(Op::ExecEnd {
            exit,
            redactions: findings.count,
            folded: findings.folded,
            canaries: findings.canaries.clone(),
        })
        .await?;
        self.answer("exec_ended", |_| {}, |_| Ok(())).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;
    use crate::daemon::protocol::{ExecCanary, ExecEnded, ExecVariable, WireSecret};

    const FAKE: &str = "FAKE-exec-client-value-4d1c";
    const CANARY: &str = "FAKE-canary-of-globex-77c2";

    /// Reads one request line from the fake daemon's end.
    async fn request_line(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Request {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn a_session_receives_values_builds_its_redactor_and_reports_the_end() {
        let (client, daemon) = UnixStream::pair().unwrap();
        let (dr, mut dw) = daemon.into_split();
        let mut dr = BufReader::new(dr);
        // The fake daemon: a hold, then the values (in one write, split mid-line by the
        // reader's own reads as they come), then the end.
        let fake = tokio::spawn(async move {
            let req = request_line(&mut dr).await;
            assert!(matches!(req.op, Op::ExecStart { ref command, .. } if command == "sh"));
            let held = r#"{"v":1,"type":"held","data":{"id":"a1","action":"exec:echo","tenant":"acme","workspace":"/w","method":"EXEC","params":{},"rule":"r","created":0,"expires":60,"state":"pending"}}"#;
            let started = Response::new(Body::ExecStarted(ExecStarted {
                request_id: "r1".into(),
                tenant: "acme".into(),
                floor: 8,
                variables: vec![ExecVariable {
                    variable: "ECHO".into(),
                    credential: "echo".into(),
                    value: WireSecret(SecretValue::from_string(FAKE.into())),
                }],
                canaries: vec![ExecCanary {
                    tenant: "globex".into(),
                    value: WireSecret(SecretValue::from_string(CANARY.into())),
                }],
            }));
            let mut out = format!("{held}\n").into_bytes();
            out.extend(serde_json::to_vec(&started).unwrap());
            out.push(b'\n');
            dw.write_all(&out).await.unwrap();
            let req = request_line(&mut dr).await;
            assert_eq!(
                req.op,
                Op::ExecEnd {
                    exit: ExecEndExit::Exited(3),
                    redactions: 2,
                    folded: 0,
                    canaries: vec!["globex".into()],
                }
            );
            let ended = Response::new(Body::ExecEnded(ExecEnded {
                request_id: "r1".into(),
            }));
            let mut line = serde_json::to_vec(&ended).unwrap();
            line.push(b'\n');
            dw.write_all(&line).await.unwrap();
        });
        let mut remote = ExecRemote::over(client);
        let holds = std::sync::Mutex::new(Vec::new());
        let creds = [ExecCredential {
            name: "echo".into(),
            variable: "ECHO".into(),
        }];
        let granted = remote
            .start(&creds, "sh", None, |a| {
                holds.lock().unwrap().push(a.id.clone())
            })
            .await
            .unwrap();
        assert_eq!(*holds.lock().unwrap(), ["a1"]);
        assert_eq!(granted.variables.len(), 1);
        assert_eq!(granted.variables[0].0, "ECHO");
        assert_eq!(granted.variables[0].1.expose_secret(), FAKE.as_bytes());
        use outloop_core::redact::Redactor as _;
        let out = granted
            .redactor
            .redact(format!("x {FAKE} y {CANARY}").as_bytes());
        // The canary from `exec_started` is redacted under the neutral label and reported.
        assert_eq!(out.output, b"x [REDACTED:echo] y [REDACTED:secret]");
        assert_eq!(out.canaries, ["globex"]);
        // Neither the session (whose buffer held the line) nor the grant prints a value.
        let debug = format!("{remote:?} {granted:?}");
        assert!(!debug.contains(FAKE), "{debug}");
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("RkFLRS"), "{debug}"); // base64 of "FAKE"
        // Nor as bytes printed as numbers: "82, 107, 70, …" ("RkF…").
        let numbers = format!("{:?}", &b"RkFLRS"[..]);
        assert!(
            !debug.contains(numbers.trim_matches(['[', ']'])),
            "the buffer is printed"
        );
        drop(granted);
        let findings = Findings {
            count: out.count,
            folded: out.folded,
            canaries: out.canaries,
        };
        remote
            .finish(&ExecExit::Exited(3), &findings)
            .await
            .unwrap();
        fake.await.unwrap();
    }

    #[tokio::test]
    async fn a_daemon_error_keeps_its_kind_and_a_broken_connection_is_unavailable() {
        let (client, daemon) = UnixStream::pair().unwrap();
        let (dr, mut dw) = daemon.into_split();
        let mut dr = BufReader::new(dr);
        let fake = tokio::spawn(async move {
            request_line(&mut dr).await;
            dw.write_all(b"{\"v\":1,\"type\":\"error\",\"data\":{\"kind\":\"policy_denied\",\"message\":\"denied: no\"}}\n")
                .await
                .unwrap();
            // Then the daemon goes away.
        });
        let mut remote = ExecRemote::over(client);
        let creds = [ExecCredential {
            name: "echo".into(),
            variable: "ECHO".into(),
        }];
        let e = remote.start(&creds, "sh", None, |_| {}).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PolicyDenied);
        assert_eq!(e.message(), "denied: no");
        fake.await.unwrap();
        let e = remote
            .finish(&ExecExit::Exited(0), &Findings::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.message());
    }
}
