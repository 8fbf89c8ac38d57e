//! Why an IMAP account cannot be watched, in words that say what to do, and
//! which of those end the account for good.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum ImapError {
    /// The server could not be reached.
    Connect { server: String, source: io::Error },
    /// TLS failed: a certificate not trusted, a name that does not match.
    Tls { server: String, message: String },
    /// The server does not offer STARTTLS though it was asked for.
    NoStartTls { server: String },
    /// The server refused the user name and password (or OAuth2 token:
    /// `token`).
    Auth {
        account: String,
        message: String,
        token: bool,
    },
    /// The server offers no login mechanism the account allows.
    NoMechanism { server: String, message: String },
    /// The password (or OAuth2 token: `token`) could not be had.
    Password {
        account: String,
        message: String,
        token: bool,
    },
    /// The server refused a connection for now (too many connections, or
    /// it is shutting down): tried again later.
    Unavailable { server: String, message: String },
    /// A command failed.
    Refused { command: String, message: String },
    /// The connection was closed or answered nothing in time.
    Lost { server: String, message: String },
    /// What the server sent made no sense.
    Protocol { server: String, message: String },
    /// The account is being stopped.
    Stopped,
    /// The clock jumped or the machine resumed: connections are made anew.
    ClockJumped,
}

impl ImapError {
    /// Errors that retrying cannot mend: the account stops.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ImapError::Tls { .. }
                | ImapError::NoStartTls { .. }
                | ImapError::Auth { .. }
                | ImapError::NoMechanism { .. }
                | ImapError::Password { .. }
        )
    }

    pub fn lost(server: &str, message: impl fmt::Display) -> ImapError {
        ImapError::Lost {
            server: server.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapError::Connect { server, source } => write!(f, "cannot connect to {server}: {source}"),
            ImapError::Tls { server, message } => write!(f, "TLS with {server} failed: {message}"),
            ImapError::NoStartTls { server } => write!(
                f,
                "{server} does not offer STARTTLS; use --tls imaps if it speaks TLS on another port"
            ),
            ImapError::Auth {
                account,
                message,
                token: false,
            } => write!(
                f,
                "the server refused the login of {account}: {message}; not trying again (fix the password, then restart)"
            ),
            ImapError::Auth {
                account,
                message,
                token: true,
            } => write!(
                f,
                "the server refused the login of {account}: {message}; it refused a fresh token too, so not trying again (check the token command, then restart)"
            ),
            ImapError::NoMechanism { server, message } => write!(f, "{server}: {message}"),
            ImapError::Password {
                account,
                message,
                token,
            } => {
                let what = if *token { "token" } else { "password" };
                write!(f, "no {what} for {account}: {message}")
            }
            ImapError::Unavailable { server, message } => write!(f, "{server} refused the connection for now: {message}"),
            ImapError::Refused { command, message } => write!(f, "the server refused {command}: {message}"),
            ImapError::Lost { server, message } => write!(f, "connection to {server} lost: {message}"),
            ImapError::Protocol { server, message } => write!(f, "{server} sent what IMAP does not allow: {message}"),
            ImapError::Stopped => f.write_str("stopped"),
            ImapError::ClockJumped => f.write_str("the clock jumped or the machine resumed"),
        }
    }
}

impl std::error::Error for ImapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImapError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}
