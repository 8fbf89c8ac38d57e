//! One IMAP connection: TCP with kernel keep-alive, TLS through rustls
//! (implicit or STARTTLS), tagged commands, and responses parsed by
//! imap-proto, each awaited for a bounded time.
//!
//! Why these crates: imap-proto is the parser under both maintained IMAP
//! clients (imap 3 and async-imap) and needs only nom; rustls with ring
//! needs no OpenSSL and no async runtime. The IMAP clients above it were
//! not enough here: imap 3 (alpha) ends an IDLE on any response it has no
//! type for, such as the `* LIST` of a mailbox created under NOTIFY, and
//! hides the socket, so a wait cannot include the account's stop and clock
//! events; async-imap needs tokio (1.5 min more to build) for what one
//! blocking thread per connection does. The command side (a tag, a verb,
//! quoted strings) is a few lines.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_proto::{Capability, Outcome, Response, ResponseCode, Status};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::auth::{challenge_reason, Auth, Mechanism};
use super::error::ImapError;
use crate::wake::{Waker, Woken};

/// The longest wait for any response the server owes, and for a write.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who logs in, with what, and how.
pub struct Login<'a> {
    /// How messages name the account.
    pub account: &'a str,
    pub user: &'a str,
    /// The password or the OAuth2 access token.
    pub secret: &'a str,
    pub auth: &'a Auth,
}

/// How a connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain text, then STARTTLS before anything else.
    StartTls,
    /// No TLS at all: only when asked for.
    None,
}

impl std::str::FromStr for Tls {
    type Err = String;

    fn from_str(text: &str) -> Result<Tls, String> {
        match text.to_ascii_lowercase().as_str() {
            "imaps" | "implicit" | "ssl" | "tls" => Ok(Tls::Implicit),
            "starttls" => Ok(Tls::StartTls),
            "none" | "plain" => Ok(Tls::None),
            other => Err(format!(
                "unknown TLS mode `{other}` (expected imaps, starttls or none)"
            )),
        }
    }
}

/// Where a server is and how to talk to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// PEM files of certificates to trust besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Silence after which the kernel probes the peer (TCP keep-alive);
    /// a dead peer is found after 4 unanswered probes, a sixth of this apart.
    pub keepalive: Duration,
}

/// The default keep-alive: a dead peer is found within about 100 s.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

impl Endpoint {
    /// An endpoint with the default keep-alive.
    pub fn new(host: String, port: u16, tls: Tls, ca_files: Vec<PathBuf>) -> Endpoint {
        Endpoint {
            host,
            port,
            tls,
            ca_files,
            keepalive: DEFAULT_KEEPALIVE,
        }
    }

    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The TLS settings: the system's trusted roots and the CA file.
    pub fn tls_config(&self) -> Result<Option<Arc<ClientConfig>>, ImapError> {
        if self.tls == Tls::None {
            return Ok(None);
        }
        let fail = |message: String| ImapError::Tls {
            server: self.server(),
            message,
        };
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for file in &self.ca_files {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|err| fail(format!("cannot read CA file {}: {err}", file.display())))?;
            if certs.is_empty() {
                return Err(fail(format!("CA file {} holds no certificate", file.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|err| fail(format!("CA file {}: {err}", file.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(fail(
                "no trusted certificates: install ca-certificates, or give --ca-file".into(),
            ));
        }
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| fail(err.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Plain text that TLS has decrypted and not handed out yet.
    fn has_buffered(&mut self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls
                .conn
                .process_new_packets()
                .map(|state| state.plaintext_bytes_to_read() > 0)
                .unwrap_or(true),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A tagged command's end.
#[derive(Debug)]
pub struct Done {
    pub status: Status,
    pub code: Option<ResponseCode<'static>>,
    pub text: String,
}

/// One logged-in (or about to be) connection.
pub struct Connection {
    stream: Stream,
    server: String,
    buffer: Vec<u8>,
    /// How much of `buffer` the responses handed out took.
    consumed: usize,
    next_tag: u32,
    capabilities: Vec<String>,
}

/// Dead peers are found by the kernel, without waking this process.
fn set_keepalive(socket: &TcpStream, idle: Duration) {
    let fd = socket.as_raw_fd();
    let idle = idle.as_secs().clamp(1, 86_400) as libc::c_int;
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, (idle / 6).max(1)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4),
    ] {
        let value: libc::c_int = value;
        // SAFETY: value lives across the call and its size is given.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// Says whether an I/O error from a TLS stream is TLS refusing the peer.
fn tls_failure(err: &io::Error) -> Option<String> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|tls| tls.to_string())
}

/// A mailbox name as the server sent it, its quoted-string escapes (`\"`,
/// `\\`) undone: imap-proto hands quoted strings out raw. (A name sent as
/// a literal holding a backslash would be misread; servers send such names
/// quoted.)
pub fn mailbox_name(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    let mut name = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.extend(chars.next()),
            other => name.push(other),
        }
    }
    name
}

/// A string as an IMAP quoted string; None when it cannot be one.
pub fn quoted(text: &str) -> Option<String> {
    if text.bytes().any(|byte| matches!(byte, b'\r' | b'\n' | 0)) {
        return None;
    }
    Some(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))
}

impl Connection {
    /// Connects, does TLS as the endpoint says, and reads the greeting.
    pub fn open(
        endpoint: &Endpoint,
        tls: Option<&Arc<ClientConfig>>,
        waker: &mut Waker,
    ) -> Result<Connection, ImapError> {
        let server = endpoint.server();
        let connect_error = |source: io::Error| ImapError::Connect {
            server: server.clone(),
            source,
        };
        let addresses: Vec<_> = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(connect_error)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut socket = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, RESPONSE_TIMEOUT) {
                Ok(connected) => {
                    socket = Some(connected);
                    break;
                }
                Err(err) => last = err,
            }
        }
        let socket = socket.ok_or_else(|| connect_error(last))?;
        socket
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(connect_error)?;
        socket
            .set_write_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(connect_error)?;
        let _ = socket.set_nodelay(true);
        set_keepalive(&socket, endpoint.keepalive);
        let mut connection = Connection {
            stream: Stream::Plain(socket),
            server,
            buffer: Vec::new(),
            consumed: 0,
            next_tag: 1,
            capabilities: Vec::new(),
        };
        if endpoint.tls == Tls::Implicit {
            connection.start_tls(endpoint, tls)?;
        }
        connection.greeting(waker)?;
        if endpoint.tls == Tls::StartTls {
            if connection.capabilities.is_empty() {
                connection.refresh_capabilities(waker)?;
            }
            if !connection.has_capability("STARTTLS") {
                return Err(ImapError::NoStartTls {
                    server: connection.server.clone(),
                });
            }
            connection.command(waker, "STARTTLS")?;
            connection.start_tls(endpoint, tls)?;
            connection.capabilities.clear();
        }
        Ok(connection)
    }

    fn start_tls(&mut self, endpoint: &Endpoint, tls: Option<&Arc<ClientConfig>>) -> Result<(), ImapError> {
        let fail = |message: String| ImapError::Tls {
            server: endpoint.server(),
            message,
        };
        let config = tls.ok_or_else(|| fail("no TLS settings".into()))?;
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|err| fail(err.to_string()))?;
        let session = ClientConnection::new(Arc::clone(config), name).map_err(|err| fail(err.to_string()))?;
        let placeholder = self
            .stream
            .socket()
            .try_clone()
            .map_err(|err| fail(err.to_string()))?;
        let socket = match std::mem::replace(&mut self.stream, Stream::Plain(placeholder)) {
            Stream::Plain(socket) => socket,
            Stream::Tls(_) => return Err(fail("TLS started twice".into())),
        };
        let mut stream = StreamOwned::new(session, socket);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|err| match tls_failure(&err) {
                    Some(message) => fail(message),
                    None => ImapError::lost(&endpoint.server(), format!("during the TLS handshake: {err}")),
                })?;
        }
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    fn greeting(&mut self, waker: &mut Waker) -> Result<(), ImapError> {
        match self.next(waker, Instant::now() + RESPONSE_TIMEOUT)? {
            Some(Response::Data {
                status: Status::Ok,
                outcome,
            })
            | Some(Response::Data {
                status: Status::PreAuth,
                outcome,
            }) => {
                if let Some(ResponseCode::Capabilities(list)) = outcome.code {
                    self.set_capabilities(&list);
                }
                Ok(())
            }
            Some(Response::Data {
                status: Status::Bye,
                outcome,
            }) => Err(ImapError::Unavailable {
                server: self.server.clone(),
                message: outcome.information.unwrap_or_default().into_owned(),
            }),
            other => Err(ImapError::Protocol {
                server: self.server.clone(),
                message: format!("unexpected greeting {other:?}"),
            }),
        }
    }

    fn set_capabilities(&mut self, list: &[Capability<'_>]) {
        self.capabilities = list
            .iter()
            .map(|capability| match capability {
                Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
                Capability::Atom(atom) => atom.to_ascii_uppercase(),
            })
            .collect();
    }

    pub fn refresh_capabilities(&mut self, waker: &mut Waker) -> Result<(), ImapError> {
        let responses = self.command(waker, "CAPABILITY")?.0;
        for response in responses {
            if let Response::Capabilities(list) = response {
                self.set_capabilities(&list);
            }
        }
        Ok(())
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|capability| capability == name)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn socket_fd(&self) -> RawFd {
        self.stream.socket().as_raw_fd()
    }

    /// Logs in with the first mechanism of `login.auth` the server offers
    /// (by default AUTHENTICATE PLAIN, which takes any bytes in name and
    /// password, else LOGIN). Returns the mechanism used. A refusal is
    /// [`ImapError::Auth`]; "not now" codes are [`ImapError::Unavailable`].
    pub fn login(
        &mut self,
        waker: &mut Waker,
        endpoint: &Endpoint,
        login: &Login<'_>,
    ) -> Result<Mechanism, ImapError> {
        if self.capabilities.is_empty() {
            self.refresh_capabilities(waker)?;
        }
        let refused = |message: String| ImapError::Auth {
            account: login.account.to_string(),
            message,
            token: login.auth.takes_token(),
        };
        let mechanism = login
            .auth
            .choose(
                |name| self.has_capability(&format!("AUTH={name}")),
                !self.has_capability("LOGINDISABLED"),
            )
            .map_err(|message| ImapError::NoMechanism {
                server: self.server.clone(),
                message,
            })?;
        let result = match mechanism.initial_response(login.user, login.secret, &endpoint.host, endpoint.port)
        {
            Some(response) => self.authenticate(waker, mechanism, &response),
            None => match (quoted(login.user), quoted(login.secret)) {
                (Some(user), Some(password)) => {
                    self.command_secret(waker, &format!("LOGIN {user} {password}"), "LOGIN")
                }
                _ => return Err(refused("the user name or password holds a line break".into())),
            },
        };
        match result {
            Ok(done) => {
                if let Some(ResponseCode::Capabilities(list)) = &done.code {
                    self.set_capabilities(list);
                } else {
                    self.capabilities.clear();
                }
                Ok(mechanism)
            }
            // RFC 5530: these codes say "not now", not "wrong password".
            Err(ImapError::Refused { message, .. })
                if ["[UNAVAILABLE]", "[LIMIT]", "[INUSE]", "[SERVERBUG]"]
                    .iter()
                    .any(|code| message.contains(code)) =>
            {
                Err(ImapError::Unavailable {
                    server: self.server.clone(),
                    message,
                })
            }
            Err(ImapError::Refused { message, .. }) => {
                Err(refused(message.trim_end_matches('.').to_string()))
            }
            Err(err) => Err(err),
        }
    }

    /// AUTHENTICATE with `mechanism`, whose first message is `response`
    /// (sent with the command where the server takes SASL-IR). A challenge
    /// instead of the end is an OAuth2 server's error: answered as the
    /// mechanism says, and its reason put into the refusal.
    fn authenticate(
        &mut self,
        waker: &mut Waker,
        mechanism: Mechanism,
        response: &str,
    ) -> Result<Done, ImapError> {
        let command = format!("AUTHENTICATE {}", mechanism.name());
        let mut pending = Some(response);
        let tag = if self.has_capability("SASL-IR") {
            pending = None;
            self.send_command(&format!("{command} {response}"))?
        } else {
            self.send_command(&command)?
        };
        let mut reason = None;
        loop {
            let answer = self.next(waker, Instant::now() + RESPONSE_TIMEOUT)?;
            match answer {
                Some(Response::Continue(outcome)) => match pending.take() {
                    Some(first) => self.send_line(first.as_bytes())?,
                    None => {
                        if reason.is_some() {
                            return Err(ImapError::Protocol {
                                server: self.server.clone(),
                                message: format!("a second challenge to {command}"),
                            });
                        }
                        reason = Some(outcome.information.as_deref().and_then(challenge_reason));
                        self.send_line(mechanism.abort_reply().as_bytes())?;
                    }
                },
                Some(Response::Done {
                    tag: done,
                    status,
                    outcome,
                }) if done.0 == tag => {
                    let mut text = outcome.information.unwrap_or_default().into_owned();
                    if let Some(Some(reason)) = reason {
                        text = format!("{} ({reason})", text.trim_end_matches('.'));
                    }
                    let done = Done {
                        status,
                        code: outcome.code,
                        text,
                    };
                    return self.check(&command, done);
                }
                Some(Response::Data {
                    status: Status::Bye,
                    outcome,
                }) => return Err(bye(&self.server, outcome.information.as_deref())),
                Some(_) => {}
                None => {
                    return Err(ImapError::lost(
                        &self.server,
                        format!("no answer to {command} in {} s", RESPONSE_TIMEOUT.as_secs()),
                    ))
                }
            }
        }
    }

    /// A command that carries a secret: only `shown` is ever put in an error.
    fn command_secret(&mut self, waker: &mut Waker, command: &str, shown: &str) -> Result<Done, ImapError> {
        let tag = self.send_command(command)?;
        let (_, done) = self.finish(waker, &tag)?;
        self.check(shown, done)
    }

    fn check(&self, command: &str, done: Done) -> Result<Done, ImapError> {
        if done.status == Status::Ok {
            Ok(done)
        } else {
            // Codes imap-proto has no type for ([AUTHENTICATIONFAILED],
            // [UNAVAILABLE]) stay in the text.
            Err(ImapError::Refused {
                command: command.to_string(),
                message: done.text,
            })
        }
    }

    /// Runs `command`; returns its untagged responses and its end, or the
    /// server's refusal.
    pub fn command(
        &mut self,
        waker: &mut Waker,
        command: &str,
    ) -> Result<(Vec<Response<'static>>, Done), ImapError> {
        let tag = self.send_command(command)?;
        let (responses, done) = self.finish(waker, &tag)?;
        let verb = command.split(' ').next().unwrap_or(command);
        Ok((responses, self.check(verb, done)?))
    }

    /// Sends several commands at once and waits for all of them (STATUS of
    /// many mailboxes in one round trip). Refusals are left in the `Done`s.
    pub fn pipeline(
        &mut self,
        waker: &mut Waker,
        commands: &[String],
    ) -> Result<Vec<Response<'static>>, ImapError> {
        let mut tags = Vec::with_capacity(commands.len());
        for command in commands {
            tags.push(self.send_command(command)?);
        }
        let mut all = Vec::new();
        for tag in tags {
            all.extend(self.finish(waker, &tag)?.0);
        }
        Ok(all)
    }

    pub fn send_command(&mut self, command: &str) -> Result<String, ImapError> {
        let tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        self.send_line(format!("{tag} {command}").as_bytes())?;
        Ok(tag)
    }

    pub fn send_line(&mut self, line: &[u8]) -> Result<(), ImapError> {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|err| ImapError::lost(&self.server, err))
    }

    /// Reads responses up to the end of command `tag`.
    pub fn finish(
        &mut self,
        waker: &mut Waker,
        tag: &str,
    ) -> Result<(Vec<Response<'static>>, Done), ImapError> {
        let mut responses = Vec::new();
        loop {
            let response = self
                .next(waker, Instant::now() + RESPONSE_TIMEOUT)?
                .ok_or_else(|| {
                    ImapError::lost(
                        &self.server,
                        format!("no answer in {} s", RESPONSE_TIMEOUT.as_secs()),
                    )
                })?;
            match response {
                Response::Done {
                    tag: done,
                    status,
                    outcome,
                } if done.0 == tag => {
                    return Ok((
                        responses,
                        Done {
                            status,
                            code: outcome.code,
                            text: outcome.information.unwrap_or_default().into_owned(),
                        },
                    ))
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    return Err(bye(&self.server, outcome.information.as_deref()));
                }
                other => responses.push(other),
            }
        }
    }

    /// The next response, or None when `until` comes first. A line that
    /// imap-proto cannot read is skipped and handed out as an untagged BAD
    /// (what a server says of a line it cannot parse), so the caller can
    /// make up for what it missed.
    pub fn next(
        &mut self,
        waker: &mut Waker,
        until: Instant,
    ) -> Result<Option<Response<'static>>, ImapError> {
        loop {
            if self.consumed < self.buffer.len() {
                let unread = &self.buffer[self.consumed..];
                let parsed = match Response::parse(unread) {
                    Ok((rest, response)) => Some(Ok((unread.len() - rest.len(), response.into_owned()))),
                    Err(nom::Err::Incomplete(_)) => None,
                    Err(_) => Some(Err(unread.windows(2).position(|pair| pair == b"\r\n"))),
                };
                match parsed {
                    Some(Ok((used, response))) => {
                        self.consumed += used;
                        return Ok(Some(response));
                    }
                    Some(Err(Some(end))) => {
                        self.consumed += end + 2;
                        return Ok(Some(Response::Data {
                            status: Status::Bad,
                            outcome: Outcome {
                                code: None,
                                information: Some(Cow::Borrowed("a response mailsync cannot read")),
                            },
                        }));
                    }
                    Some(Err(None)) | None => {}
                }
            }
            if !self.fill(waker, until)? {
                return Ok(None);
            }
        }
    }

    /// Reads more; false when `until` came first.
    fn fill(&mut self, waker: &mut Waker, until: Instant) -> Result<bool, ImapError> {
        if !self.stream.has_buffered() {
            let timeout = until.saturating_duration_since(Instant::now());
            match waker.wait(Some(self.socket_fd()), timeout) {
                Ok(Woken::Readable) => {}
                Ok(Woken::TimedOut) => return Ok(false),
                Ok(Woken::Stopped) => return Err(ImapError::Stopped),
                Ok(Woken::ClockJumped { .. }) => return Err(ImapError::ClockJumped),
                Err(err) => return Err(ImapError::lost(&self.server, err)),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ImapError::lost(&self.server, "closed by the server")),
            Ok(count) => {
                // What was read is dropped here, once per read, not once
                // per response (a LIST of thousands of mailboxes).
                self.buffer.drain(..self.consumed);
                self.consumed = 0;
                self.buffer.extend_from_slice(&chunk[..count]);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(err) => Err(match tls_failure(&err) {
                Some(message) => ImapError::Tls {
                    server: self.server.clone(),
                    message,
                },
                None => ImapError::lost(&self.server, err),
            }),
        }
    }
}

pub fn bye(server: &str, text: Option<&str>) -> ImapError {
    let text = text.unwrap_or("").to_string();
    if text
        .to_ascii_lowercase()
        .contains("maximum number of connections")
        || text.contains("[UNAVAILABLE]")
    {
        ImapError::Unavailable {
            server: server.to_string(),
            message: text,
        }
    } else {
        ImapError::lost(server, format!("the server said goodbye: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names_lose_their_escapes_and_quote_back_the_same() {
        let odd = r#"a"b\c (shell-command "touch PWNED")"#;
        let quoted = quoted(odd).unwrap();
        let raw = &quoted[1..quoted.len() - 1];
        assert_eq!(raw, r#"a\"b\\c (shell-command \"touch PWNED\")"#);
        assert_eq!(mailbox_name(raw), odd);
        assert_eq!(mailbox_name("INBOX"), "INBOX");
    }
}
