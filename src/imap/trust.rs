//! Which server certificates TLS trusts: those the system's authorities or
//! the user's named files sign, and, as mbsync, OfflineIMAP and GnuTLS
//! trust it, a certificate the user named that is itself the server's,
//! matched byte for byte whatever its CA flag. (`openssl req -x509` marks
//! the certificates it makes CA:TRUE, which WebPKI refuses as a server's
//! own.) Its host name and validity dates are checked all the same.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// WebPKI's verdict, with the user's named certificates taken as the
/// server's own.
#[derive(Debug)]
pub struct NamedOrSigned {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates in the files the user named.
    named: Vec<CertificateDer<'static>>,
}

impl NamedOrSigned {
    pub fn new(roots: RootCertStore, named: Vec<CertificateDer<'static>>) -> Result<NamedOrSigned, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| err.to_string())?;
        Ok(NamedOrSigned { webpki, named })
    }
}

/// Whether WebPKI refused a certificate only for being a CA's. WebPKI
/// checks the validity dates before the CA flag, so such a certificate is
/// within its dates; the name is checked after, so it is not yet.
fn is_ca_used_as_end_entity(error: &Error) -> bool {
    matches!(error, Error::InvalidCertificate(CertificateError::Other(other))
        if format!("{other:?}").contains("CaUsedAsEndEntity"))
}

impl ServerCertVerifier for NamedOrSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(error)
                if is_ca_used_as_end_entity(&error)
                    && self
                        .named
                        .iter()
                        .any(|named| named.as_ref() == end_entity.as_ref()) =>
            {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use std::path::Path;
    use std::process::Command;

    /// A self-signed certificate made by openssl (as users make theirs):
    /// `ca` its CA flag, `dates` as `openssl ca` takes them (None: now for
    /// two days).
    fn certificate(dir: &Path, name: &str, ca: bool, dates: Option<(&str, &str)>) -> CertificateDer<'static> {
        let run = |args: &[&str]| {
            let made = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(made.status.success(), "openssl {args:?}: {:?}", made.stderr);
        };
        let (key, request, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        run(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ]
        .into_iter()
        .chain(["-subj", "/CN=localhost", "-keyout", &key, "-out", &request])
        .collect::<Vec<_>>());
        let flag = if ca { "CA:TRUE" } else { "CA:FALSE" };
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = self\n[self]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
                 default_md = sha256\npolicy = any\nx509_extensions = ext\ndefault_days = 2\n\
                 [any]\ncommonName = supplied\n[ext]\nbasicConstraints = {flag}\n\
                 subjectAltName = DNS:localhost,IP:127.0.0.1\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "01\n").unwrap();
        let mut args = vec!["ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", &key];
        args.extend(["-in", &request, "-out", &cert]);
        if let Some((start, end)) = dates {
            args.extend(["-startdate", start, "-enddate", end]);
        }
        run(&args);
        CertificateDer::from_pem_file(dir.join(cert)).unwrap()
    }

    fn verdict(
        named: &[CertificateDer<'static>],
        served: &CertificateDer<'_>,
        host: &str,
    ) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        for cert in named {
            // A CA:TRUE self-signed certificate is a root as well.
            let _ = roots.add(cert.clone());
        }
        let verifier = NamedOrSigned::new(roots, named.to_vec()).unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        verifier
            .verify_server_cert(served, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_named_self_signed_ca_certificate_is_the_server_s_own_for_its_names_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let own = certificate(dir.path(), "own", true, None);
        let other = certificate(dir.path(), "other", true, None);
        let expired = certificate(
            dir.path(),
            "expired",
            true,
            Some(("20200101000000Z", "20200102000000Z")),
        );
        assert_eq!(verdict(std::slice::from_ref(&own), &own, "localhost"), Ok(()));
        assert_eq!(verdict(std::slice::from_ref(&own), &own, "127.0.0.1"), Ok(()));
        // Another host's name, another certificate, or out of its dates: refused.
        assert!(matches!(
            verdict(std::slice::from_ref(&own), &own, "imap.example.org"),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ));
        assert!(verdict(std::slice::from_ref(&other), &own, "localhost").is_err());
        assert!(matches!(
            verdict(std::slice::from_ref(&expired), &expired, "localhost"),
            Err(Error::InvalidCertificate(CertificateError::ExpiredContext { .. }))
        ));
    }

    #[test]
    fn a_named_self_signed_end_entity_certificate_is_trusted_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let own = certificate(dir.path(), "own", false, None);
        assert_eq!(verdict(std::slice::from_ref(&own), &own, "localhost"), Ok(()));
    }
}
