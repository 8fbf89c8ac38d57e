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
use super::trust::NamedOrSigned;
use crate::stop::{Waker, Woken};

/// The longest wait for any response the server owes, and for a write.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest one command's answer may take, whether or not data keeps
/// coming: a server that trickles or streams without end is cut off.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What a server may send, at most. Past these the connection is dropped
/// (and made again later, with back-off), so that nothing a server sends
/// grows the process without bound: it may be the user's Emacs.
pub mod limits {
    /// One response line, literals aside (a LIST or STATUS line is ~100 bytes).
    pub const LINE: usize = 1 << 20;
    /// One literal (mailsync reads no message bodies: a name, a header).
    pub const LITERAL: usize = 64 << 20;
    /// One response, lines and literals together.
    pub const RESPONSE: usize = LITERAL + 4 * LINE;
    /// The untagged responses gathered for one command (a LIST-STATUS of
    /// 100,000 mailboxes is 200,000).
    pub const RESPONSES_PER_COMMAND: usize = 250_000;
    /// Their bytes.
    pub const BYTES_PER_COMMAND: usize = 64 << 20;
    /// What a password or token command may print (an OAuth2 access token
    /// is a few KiB), and how long it may take (long enough to type a GPG
    /// passphrase into a pinentry).
    pub const HELPER_OUTPUT: usize = 64 << 10;
    pub const HELPER_TIME: std::time::Duration = std::time::Duration::from_secs(120);
}

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

impl Tls {
    /// The port a server takes this way when none is named: 993 for
    /// implicit TLS, 143 otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Tls::Implicit => 993,
            Tls::StartTls | Tls::None => 143,
        }
    }
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
    /// Where the user names certificates to trust, in the face they use
    /// (`--ca-file`, mbsync's `CertificateFile`, `gnutls-trustfiles`): what a
    /// TLS error tells them to change.
    pub trust_setting: &'static str,
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
            trust_setting: "--ca-file",
        }
    }

    /// The same, with certificates named in `setting` (for messages).
    pub fn trusting_from(mut self, setting: &'static str) -> Endpoint {
        self.trust_setting = setting;
        self
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
        let mut named = Vec::new();
        for file in &self.ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|err| fail(format!("cannot read CA file {}: {err}", file.display())))?;
            if certs.is_empty() {
                return Err(fail(format!("CA file {} holds no certificate", file.display())));
            }
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|err| fail(format!("CA file {}: {err}", file.display())))?;
                named.push(cert);
            }
        }
        if roots.is_empty() {
            return Err(fail(format!(
                "no trusted certificates: install ca-certificates, or name one in {}",
                self.trust_setting
            )));
        }
        let verifier = NamedOrSigned::new(roots, named).map_err(fail)?;
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| fail(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
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
    /// Where the response being read has been scanned to, so that each byte
    /// is looked at once however slowly it comes (see [`ResponseScan`]).
    scan: ResponseScan,
    /// The bytes of the last response handed out.
    last_size: usize,
    /// The last response line imap-proto could not read (NAMESPACE's
    /// answer is one), for the few commands that read it themselves.
    unreadable: Option<Vec<u8>>,
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

/// Why a connection was not made.
enum Interrupted {
    Stopped,
    ClockJumped,
    Failed(io::Error),
}

/// Connects to `address` within [`RESPONSE_TIMEOUT`], woken by a stop: a
/// black-holed server (a firewall that drops IMAP) must not hold a stop.
fn connect(address: &std::net::SocketAddr, waker: &mut Waker) -> Result<TcpStream, Interrupted> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let failed = |err: io::Error| Interrupted::Failed(err);
    let family = if address.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket() has no memory arguments; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, length) = socket_address(address);
    // SAFETY: storage holds a sockaddr of `length` bytes for this family.
    let connected = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), length) };
    if connected < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(failed(err));
        }
        match waker.wait_writable(fd, RESPONSE_TIMEOUT) {
            Ok(Woken::Stopped) => return Err(Interrupted::Stopped),
            Ok(Woken::ClockJumped { .. }) => return Err(Interrupted::ClockJumped),
            Ok(Woken::TimedOut) => {
                return Err(failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} s", RESPONSE_TIMEOUT.as_secs()),
                )))
            }
            Ok(Woken::Readable) => {}
            Err(err) => return Err(failed(err)),
        }
        let mut error: libc::c_int = 0;
        let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: error and size are valid for getsockopt's int result.
        let got = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut libc::c_int).cast(),
                &mut size,
            )
        };
        if got < 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        if error != 0 {
            return Err(failed(io::Error::from_raw_os_error(error)));
        }
    }
    let socket = TcpStream::from(owned);
    socket.set_nonblocking(false).map_err(failed)?;
    Ok(socket)
}

/// `address` as the C library takes it.
fn socket_address(address: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let length = match address {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, length as libc::socklen_t)
}

/// Says whether an I/O error from a TLS stream is TLS refusing the peer,
/// and why, in words; `trust_setting` is where certificates are trusted.
fn tls_failure(err: &io::Error, trust_setting: &str) -> Option<String> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|error| tls_words(error, trust_setting))
}

/// Why TLS refused the server, in words a user acts on (rustls's own text
/// for a certificate error is its debug form, such as
/// `Other(OtherError(CaUsedAsEndEntity))`).
fn tls_words(error: &rustls::Error, trust_setting: &str) -> String {
    use rustls::CertificateError as Certificate;
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return error.to_string();
    };
    match certificate {
        Certificate::UnknownIssuer => format!(
            "its certificate is signed by an authority this machine does not trust \
             (a certificate of your own: name its CA's file in {trust_setting})"
        ),
        Certificate::Expired | Certificate::ExpiredContext { .. } => "its certificate has expired".into(),
        Certificate::NotValidYet | Certificate::NotValidYetContext { .. } => {
            "its certificate is not valid yet (is this machine's clock right?)".into()
        }
        Certificate::NotValidForName | Certificate::NotValidForNameContext { .. } => {
            "its certificate is for another host name".into()
        }
        Certificate::Revoked => "its certificate has been revoked".into(),
        Certificate::BadSignature | Certificate::BadEncoding => "its certificate is damaged".into(),
        Certificate::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "its certificate is a CA certificate (as `openssl req -x509` makes): if it is the server's own, \
             name its file in {trust_setting} to trust it"
        ),
        _ => "its certificate is not accepted".into(),
    }
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
            match connect(&address, waker) {
                Ok(connected) => {
                    socket = Some(connected);
                    break;
                }
                Err(Interrupted::Stopped) => return Err(ImapError::Stopped),
                Err(Interrupted::ClockJumped) => return Err(ImapError::ClockJumped),
                Err(Interrupted::Failed(err)) => last = err,
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
            scan: ResponseScan::default(),
            last_size: 0,
            unreadable: None,
            next_tag: 1,
            capabilities: Vec::new(),
        };
        if endpoint.tls == Tls::Implicit {
            connection.start_tls(endpoint, tls, waker)?;
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
            connection.start_tls(endpoint, tls, waker)?;
            connection.capabilities.clear();
        }
        Ok(connection)
    }

    /// The TLS handshake: within [`RESPONSE_TIMEOUT`] in all (a server that
    /// trickles a byte now and then is cut off), and woken by a stop.
    fn start_tls(
        &mut self,
        endpoint: &Endpoint,
        tls: Option<&Arc<ClientConfig>>,
        waker: &mut Waker,
    ) -> Result<(), ImapError> {
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
        let lost =
            |err: io::Error| ImapError::lost(&endpoint.server(), format!("during the TLS handshake: {err}"));
        stream.sock.set_nonblocking(true).map_err(lost)?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        while stream.conn.is_handshaking() {
            match stream.conn.complete_io(&mut stream.sock) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ImapError::lost(
                            &endpoint.server(),
                            format!(
                                "the TLS handshake did not finish within {} s",
                                RESPONSE_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                    let fd = stream.sock.as_raw_fd();
                    let woken = if stream.conn.wants_write() {
                        waker.wait_writable(fd, left)
                    } else {
                        waker.wait(Some(fd), left)
                    };
                    match woken {
                        Ok(Woken::Stopped) => return Err(ImapError::Stopped),
                        Ok(Woken::ClockJumped { .. }) => return Err(ImapError::ClockJumped),
                        Ok(_) => {}
                        Err(err) => return Err(lost(err)),
                    }
                }
                Err(err) => {
                    return Err(match tls_failure(&err, endpoint.trust_setting) {
                        Some(message) => fail(message),
                        None => lost(err),
                    })
                }
            }
        }
        stream.sock.set_nonblocking(false).map_err(lost)?;
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
            None => Err(ImapError::lost(
                &self.server,
                format!("no greeting within {} s", RESPONSE_TIMEOUT.as_secs()),
            )),
            Some(_) => Err(ImapError::Protocol {
                server: self.server.clone(),
                message:
                    "its greeting is not an IMAP greeting (* OK, * PREAUTH or * BYE); is this an IMAP port?"
                        .into(),
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

    /// Reads responses up to the end of command `tag`: within
    /// [`COMMAND_TIMEOUT`], and within the [`limits`] of one answer.
    pub fn finish(
        &mut self,
        waker: &mut Waker,
        tag: &str,
    ) -> Result<(Vec<Response<'static>>, Done), ImapError> {
        let mut responses = Vec::new();
        let mut bytes = 0;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let until = (Instant::now() + RESPONSE_TIMEOUT).min(deadline);
            let response = self.next(waker, until)?.ok_or_else(|| {
                let why = if Instant::now() >= deadline {
                    format!("its answer did not end within {} s", COMMAND_TIMEOUT.as_secs())
                } else {
                    format!("no answer in {} s", RESPONSE_TIMEOUT.as_secs())
                };
                ImapError::lost(&self.server, why)
            })?;
            bytes += self.last_size;
            if responses.len() >= limits::RESPONSES_PER_COMMAND || bytes > limits::BYTES_PER_COMMAND {
                return Err(ImapError::Protocol {
                    server: self.server.clone(),
                    message: format!(
                        "its answer to one command went past {} responses or {} MiB; mailsync reads no more of it",
                        limits::RESPONSES_PER_COMMAND,
                        limits::BYTES_PER_COMMAND >> 20
                    ),
                });
            }
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

    /// The prefix of the server's personal namespace (`INBOX.` on Courier
    /// and Cyrus, RFC 2342), None when it has none or does not say.
    pub fn personal_namespace(&mut self, waker: &mut Waker) -> Result<Option<String>, ImapError> {
        self.unreadable = None;
        let tag = self.send_command("NAMESPACE")?;
        self.finish(waker, &tag)?;
        Ok(self.unreadable.take().and_then(|line| personal_prefix(&line)))
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
            let scanned =
                self.scan
                    .end(&self.buffer, self.consumed)
                    .map_err(|message| ImapError::Protocol {
                        server: self.server.clone(),
                        message,
                    })?;
            if let Some(end) = scanned {
                let whole = &self.buffer[self.consumed..end];
                let response = match Response::parse(whole) {
                    Ok((b"", response)) => response.into_owned(),
                    _ => {
                        self.unreadable = Some(whole.to_vec());
                        Response::Data {
                            status: Status::Bad,
                            outcome: Outcome {
                                code: None,
                                information: Some(Cow::Borrowed("a response mailsync cannot read")),
                            },
                        }
                    }
                };
                self.last_size = end - self.consumed;
                self.consumed = end;
                self.scan = ResponseScan::starting_at(end);
                return Ok(Some(response));
            }
            if !self.fill(waker, until)? {
                return Ok(None);
            }
        }
    }

    /// Reads more; false when `until` came first, even while data keeps coming.
    fn fill(&mut self, waker: &mut Waker, until: Instant) -> Result<bool, ImapError> {
        if Instant::now() >= until {
            return Ok(false);
        }
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
                self.scan.shift(self.consumed);
                self.consumed = 0;
                self.buffer.extend_from_slice(&chunk[..count]);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(err) => Err(match tls_failure(&err, "the certificates you trust") {
                Some(message) => ImapError::Tls {
                    server: self.server.clone(),
                    message,
                },
                None => ImapError::lost(&self.server, err),
            }),
        }
    }
}

/// Where the next whole response ends in what has been read: a line, and
/// after a line ending in a literal's size (`{N}`) those N bytes and the
/// line that goes on after them. Kept between reads, so each byte is
/// scanned once (parsing a response that is still coming, again after each
/// read, is quadratic), and bounded by the [`limits`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ResponseScan {
    /// Where the response began.
    start: usize,
    /// How far it has been scanned.
    at: usize,
    /// Where the line being scanned began.
    line: usize,
    /// Bytes of a literal still to come.
    literal: usize,
}

impl ResponseScan {
    fn starting_at(at: usize) -> ResponseScan {
        ResponseScan {
            start: at,
            at,
            line: at,
            literal: 0,
        }
    }

    /// The buffer lost its first `count` bytes.
    fn shift(&mut self, count: usize) {
        self.start -= count;
        self.at -= count;
        self.line -= count;
    }

    /// The end of the response that begins at `from`, once it is all in
    /// `buffer`; an error past the limits.
    fn end(&mut self, buffer: &[u8], from: usize) -> Result<Option<usize>, String> {
        if self.start != from {
            *self = ResponseScan::starting_at(from);
        }
        loop {
            if self.literal > 0 {
                let taken = self.literal.min(buffer.len() - self.at);
                self.at += taken;
                self.literal -= taken;
                if self.literal > 0 {
                    return Ok(None);
                }
                self.line = self.at;
            }
            let newline = buffer[self.at..].iter().position(|&byte| byte == b'\n');
            let line_end = newline.map_or(buffer.len(), |offset| self.at + offset);
            if line_end - self.line > limits::LINE {
                return Err(format!("it sent a line longer than {} MiB", limits::LINE >> 20));
            }
            let Some(_) = newline else {
                self.at = buffer.len();
                return Ok(None);
            };
            self.at = line_end + 1;
            match literal_size(&buffer[self.line..line_end]) {
                None => return Ok(Some(self.at)),
                Some(size) if size > limits::LITERAL as u64 => {
                    return Err(format!(
                        "it announced a literal of {size} bytes (mailsync reads {} MiB at most)",
                        limits::LITERAL >> 20
                    ))
                }
                Some(size) => self.literal = size as usize,
            }
            if self.at - self.start + self.literal > limits::RESPONSE {
                return Err(format!(
                    "it sent a response longer than {} MiB",
                    limits::RESPONSE >> 20
                ));
            }
        }
    }
}

/// The size of the literal a line announces at its end (`{N}` or `{N+}`
/// before the CR), if it does.
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inside = line.strip_suffix(b"}")?;
    let open = inside.iter().rposition(|&byte| byte == b'{')?;
    let digits = &inside[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
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

/// The first personal namespace's prefix in a `* NAMESPACE` line: its
/// first quoted string (`* NAMESPACE (("INBOX." ".")) NIL NIL`); None for
/// `NIL`, an empty prefix, or a line that is not that.
fn personal_prefix(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line
        .get(..12)
        .filter(|head| head.eq_ignore_ascii_case("* NAMESPACE "))?;
    let rest = line[rest.len()..]
        .trim_start()
        .strip_prefix("((")?
        .trim_start()
        .strip_prefix('"')?;
    let mut prefix = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => prefix.push(chars.next()?),
            c => prefix.push(c),
        }
    }
    (!prefix.is_empty()).then_some(prefix)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_personal_namespace_prefix_is_read_from_its_line() {
        let cases: &[(&str, Option<&str>)] = &[
            ("* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n", Some("INBOX.")),
            ("* namespace ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))\r\n", None),
            ("* NAMESPACE NIL NIL NIL\r\n", None),
            ("* NAMESPACE ((\"a\\\"b.\" \".\")) NIL NIL\r\n", Some("a\"b.")),
            ("* NAMESPACE ((\"INBOX.", None),
            ("* OK hello\r\n", None),
        ];
        for (line, prefix) in cases {
            assert_eq!(personal_prefix(line.as_bytes()).as_deref(), *prefix, "{line:?}");
        }
    }

    use super::*;

    /// Where the first response ends, or the start of the error.
    type Scanned = Result<Option<usize>, &'static str>;

    /// (what has come so far, where the first response ends)
    #[test]
    fn responses_end_after_their_line_and_literals() {
        let cases: &[(&[u8], Scanned)] = &[
            (b"* OK hi\r\n", Ok(Some(9))),
            (b"* OK hi\r\n* OK", Ok(Some(9))),
            (b"* OK h", Ok(None)),
            (b"* LIST () \".\" {3}\r\na\nb\r\n", Ok(Some(24))),
            (b"* LIST () \".\" {3}\r\na\nb", Ok(None)),
            (b"* LIST () \".\" {3+}\r\nabc\r\n", Ok(Some(25))),
            (b"* 1 FETCH (BODY[] {2}\r\nab BODY[1] {1}\r\nc)\r\n", Ok(Some(43))),
            (b"* OK {not a size}\r\n", Ok(Some(19))),
            (
                b"* LIST () \".\" {999999999999}\r\n",
                Err("it announced a literal"),
            ),
        ];
        for (input, expected) in cases {
            let mut scan = ResponseScan::default();
            let got = scan.end(input, 0);
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, *expected, "{}", String::from_utf8_lossy(input)),
                (Err(got), Err(expected)) => assert!(got.starts_with(expected), "{got}"),
                (got, _) => panic!("{}: {got:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn a_response_read_a_byte_at_a_time_is_scanned_once_and_ends_where_it_ends() {
        let response = b"* LIST () \".\" {5}\r\nab\r\nc\r\n* OK next\r\n";
        let mut scan = ResponseScan::default();
        let mut end = None;
        for len in 1..=response.len() {
            if let Some(found) = scan.end(&response[..len], 0).unwrap() {
                end = Some((len, found));
                break;
            }
            assert!(scan.at <= len);
        }
        assert_eq!(end, Some((26, 26)));
    }

    #[test]
    fn an_endless_line_is_an_error_at_the_limit() {
        let mut scan = ResponseScan::default();
        let mut buffer = b"* OK ".to_vec();
        let mut error = None;
        while buffer.len() < 2 * limits::LINE {
            buffer.extend(std::iter::repeat_n(b'x', 64 * 1024));
            if let Err(message) = scan.end(&buffer, 0) {
                error = Some((buffer.len(), message));
                break;
            }
        }
        let (at, message) = error.expect("an endless line is refused");
        assert!(at <= limits::LINE + 64 * 1024 + 5, "refused only at {at}");
        assert!(message.contains("longer than 1 MiB"), "{message}");
    }

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
