//! How an account logs in: the SASL mechanisms mailsync speaks, which of
//! them an account allows, and the first message of each.
//!
//! PLAIN and LOGIN take a password; XOAUTH2 (Google's, also Microsoft's)
//! and OAUTHBEARER (RFC 7628) take an OAuth2 access token in its place,
//! which the account's password command gives (a token helper such as
//! oama or mutt_oauth2.py, as mbsync's `PassCmd` runs it).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    /// The name IMAP gives it (`AUTH=` capability, AUTHENTICATE argument).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Whether the secret is an OAuth2 access token, which expires.
    pub fn takes_token(self) -> bool {
        matches!(self, Mechanism::XOAuth2 | Mechanism::OAuthBearer)
    }

    /// The client's first message to AUTHENTICATE, base64: everything the
    /// server needs. None for LOGIN, which is a command of its own.
    pub fn initial_response(self, user: &str, secret: &str, host: &str, port: u16) -> Option<String> {
        let message = match self {
            Mechanism::Plain => format!("\0{user}\0{secret}"),
            Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {secret}\x01\x01"),
            // RFC 7628 §3.1: a GS2 header naming the user, then key=value pairs.
            Mechanism::OAuthBearer => format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01",
                user.replace('=', "=3D").replace(',', "=2C")
            ),
            Mechanism::Login => return None,
        };
        Some(base64::engine::general_purpose::STANDARD.encode(message))
    }

    /// What the client answers when the server, instead of accepting, sends
    /// a challenge (its error in JSON): XOAUTH2 wants an empty line,
    /// OAUTHBEARER a single ^A (RFC 7628 §3.2.3); the server then says NO.
    pub fn abort_reply(self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "AQ==",
            _ => "",
        }
    }
}

impl FromStr for Mechanism {
    type Err = String;

    fn from_str(text: &str) -> Result<Mechanism, String> {
        match text.to_ascii_lowercase().as_str() {
            "plain" => Ok(Mechanism::Plain),
            "login" => Ok(Mechanism::Login),
            "xoauth2" => Ok(Mechanism::XOAuth2),
            "oauthbearer" => Ok(Mechanism::OAuthBearer),
            _ => Err(format!(
                "unknown login mechanism {text:?} (xoauth2, oauthbearer, plain or login)"
            )),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mechanisms an account allows, the preferred first; none listed
/// means PLAIN where the server offers it, else LOGIN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth(Vec<Mechanism>);

impl Auth {
    pub fn new(mechanisms: Vec<Mechanism>) -> Auth {
        Auth(mechanisms)
    }

    /// From a list such as mbsync's `AuthMechs XOAUTH2 PLAIN`; `*` allows
    /// any. Mechanisms mailsync does not speak (CRAM-MD5) are left out,
    /// unless nothing is left.
    pub fn from_names(names: &str) -> Result<Auth, String> {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for name in names.split([' ', '\t', ',']).filter(|name| !name.is_empty()) {
            if name == "*" {
                return Ok(Auth::default());
            }
            match name.parse::<Mechanism>() {
                Ok(mechanism) if !known.contains(&mechanism) => known.push(mechanism),
                Ok(_) => {}
                Err(_) => unknown.push(name),
            }
        }
        if known.is_empty() && !unknown.is_empty() {
            return Err(format!(
                "no login mechanism mailsync speaks in {names:?} (xoauth2, oauthbearer, plain or login)"
            ));
        }
        Ok(Auth(known))
    }

    /// The same without the mechanisms that take a token.
    pub fn without_tokens(self) -> Auth {
        Auth(
            self.0
                .into_iter()
                .filter(|mechanism| !mechanism.takes_token())
                .collect(),
        )
    }

    /// Whether the secret is a token (every allowed mechanism takes one).
    pub fn takes_token(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|mechanism| mechanism.takes_token())
    }

    /// The mechanism to use with a server: the first allowed one it offers.
    /// `offers` tells whether the server offers a SASL mechanism;
    /// `login_allowed` whether it takes the LOGIN command.
    pub fn choose(&self, offers: impl Fn(&str) -> bool, login_allowed: bool) -> Result<Mechanism, String> {
        let usable = |mechanism: Mechanism| match mechanism {
            Mechanism::Login => login_allowed,
            other => offers(other.name()),
        };
        if self.0.is_empty() {
            return if offers("PLAIN") {
                Ok(Mechanism::Plain)
            } else if login_allowed {
                Ok(Mechanism::Login)
            } else {
                Err("the server allows no login on this connection (use TLS)".into())
            };
        }
        self.0
            .iter()
            .copied()
            .find(|&mechanism| usable(mechanism))
            .ok_or_else(|| {
                let names: Vec<_> = self.0.iter().map(|mechanism| mechanism.name()).collect();
                format!(
                    "the server offers none of the login mechanisms asked for ({})",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("PLAIN or LOGIN");
        }
        let names: Vec<_> = self.0.iter().map(|mechanism| mechanism.name()).collect();
        f.write_str(&names.join(", "))
    }
}

/// The reason in an OAuth2 server's challenge (`{"status":"invalid_token",…}`
/// in base64), for the error message; None when it has none.
pub fn challenge_reason(challenge: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(challenge.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let start = text.find("\"status\"")? + "\"status\"".len();
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let value = rest.strip_prefix('"')?;
    let reason: String = value.chars().take_while(|&c| c != '"').take(80).collect();
    (!reason.is_empty()).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> String {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text).unwrap()).unwrap()
    }

    #[test]
    fn first_messages_are_spelled_as_the_rfcs_and_google_say() {
        let cases = [
            (Mechanism::Plain, "\0me@x\0tok"),
            (Mechanism::XOAuth2, "user=me@x\x01auth=Bearer tok\x01\x01"),
            (
                Mechanism::OAuthBearer,
                "n,a=me@x,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01",
            ),
        ];
        for (mechanism, expected) in cases {
            assert_eq!(
                decode(&mechanism.initial_response("me@x", "tok", "imap.x", 993).unwrap()),
                expected
            );
        }
        assert_eq!(
            decode(
                &Mechanism::OAuthBearer
                    .initial_response("a,b=c", "t", "h", 1)
                    .unwrap()
            ),
            "n,a=a=2Cb=3Dc,\x01host=h\x01port=1\x01auth=Bearer t\x01\x01"
        );
    }

    #[test]
    fn the_first_allowed_mechanism_the_server_offers_is_chosen() {
        let offered = |list: &'static [&'static str]| move |name: &str| list.contains(&name);
        let auth = Auth::from_names("XOAUTH2 OAUTHBEARER").unwrap();
        assert!(auth.takes_token());
        assert_eq!(
            auth.choose(offered(&["OAUTHBEARER", "PLAIN"]), true),
            Ok(Mechanism::OAuthBearer)
        );
        assert_eq!(
            auth.choose(offered(&["XOAUTH2", "OAUTHBEARER"]), true),
            Ok(Mechanism::XOAuth2)
        );
        let refused = auth.choose(offered(&["PLAIN"]), true).unwrap_err();
        assert!(refused.contains("XOAUTH2, OAUTHBEARER"), "{refused}");
        let any = Auth::from_names("*").unwrap();
        assert_eq!(any, Auth::default());
        assert!(!any.takes_token());
        assert_eq!(any.choose(offered(&[]), true), Ok(Mechanism::Login));
        assert!(any.choose(offered(&[]), false).is_err());
        assert_eq!(
            Auth::from_names("CRAM-MD5 LOGIN").unwrap(),
            Auth::new(vec![Mechanism::Login])
        );
        assert!(Auth::from_names("CRAM-MD5").is_err());
    }

    #[test]
    fn the_reason_in_a_challenge_is_read() {
        let challenge = base64::engine::general_purpose::STANDARD
            .encode(r#"{"status":"invalid_token","schemes":"bearer","scope":"imap"}"#);
        assert_eq!(challenge_reason(&challenge).as_deref(), Some("invalid_token"));
        assert_eq!(challenge_reason("not base64!"), None);
    }
}
