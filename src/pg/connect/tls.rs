//! rustls for PostgreSQL connections: the client configuration that a
//! connection string's [`SslSettings`] ask for (which CAs, which checks, a
//! client certificate), the two certificate verifiers behind it, and
//! handshake failures explained in words that say which check failed and
//! what to change.
//!
//! Only the ring crypto provider is used, passed explicitly (never the
//! process-wide default). When a check needs CAs and `sslrootcert` does not
//! name a file, the public web CAs compiled in from `webpki-roots` are used
//! — the same set reqwest trusts elsewhere in flightpath — so the result does
//! not depend on the machine's certificate store.
//!
//! Reads the PEM files the settings name; never logs or quotes their content.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::params::{RootCerts, SslMode, SslSettings, Verification};

/// The ALPN protocol PostgreSQL 17+ expects (and requires with
/// `sslnegotiation=direct`); older servers ignore it.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("could not read {param} `{}`: {reason}", .path.display())]
    Read {
        param: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("{param} `{}` holds no PEM certificate", .path.display())]
    NoCertificate { param: &'static str, path: PathBuf },

    #[error("sslrootcert `{}` holds no CA certificate rustls can use", .path.display())]
    NoUsableRoot { path: PathBuf },

    #[error("sslcert and sslkey do not make a usable client certificate: {0}")]
    ClientCert(rustls::Error),
}

/// The `MakeTlsConnect` for tokio-postgres that `settings` ask for.
pub fn connector(settings: &SslSettings) -> Result<MakeRustlsConnect, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let check = settings.verification();
    let roots = match check {
        Verification::None => None,
        _ => Some(Arc::new(root_store(&settings.roots())?)),
    };
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Verifier {
        roots,
        check_host_name: check == Verification::ChainAndHostName,
        algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates("sslcert", cert)?, read_key(key)?)
            .map_err(SetupError::ClientCert)?,
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, SetupError> {
    match roots {
        RootCerts::System => Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        RootCerts::File(path) => {
            let mut store = RootCertStore::empty();
            let (added, _unusable) =
                store.add_parsable_certificates(read_certificates("sslrootcert", path)?);
            if added == 0 {
                return Err(SetupError::NoUsableRoot { path: path.clone() });
            }
            Ok(store)
        }
    }
}

fn read_certificates(
    param: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| read_error(param, path, e))?;
    if certificates.is_empty() {
        return Err(SetupError::NoCertificate {
            param,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_error("sslkey", path, e))
}

fn read_error(
    param: &'static str,
    path: &Path,
    error: rustls::pki_types::pem::Error,
) -> SetupError {
    let reason = match &error {
        rustls::pki_types::pem::Error::Io(io) => super::cause(io),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".to_string(),
        other => format!("not valid PEM ({other})"),
    };
    SetupError::Read {
        param,
        path: path.to_path_buf(),
        reason,
    }
}

/// The server certificate check of every mode.
///
/// Without `roots` (`sslmode=require`, `prefer`, `allow` and no
/// `sslrootcert`) **it accepts any certificate**, as libpq does in these
/// modes: the connection is encrypted against passive eavesdropping, but
/// nothing proves who is at the other end. Use `verify-full` (or give
/// `sslrootcert`) to rule that out.
///
/// With `roots` (`verify-ca`, `verify-full`, and the weaker modes with
/// `sslrootcert`) the certificate must chain to one of them and be within its
/// validity period; with `check_host_name` it must also name the host
/// connected to (the `host` of the connection string, not `hostaddr`). These
/// are the checks of rustls' own `WebPkiServerVerifier`, through its public
/// functions, with the host name check made optional.
///
/// Either way the handshake signature is verified: the peer must hold the
/// private key of the certificate it sent, so the session keys are bound to
/// that certificate (which SCRAM channel binding relies on).
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_host_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No roots: deliberately no check at all (see the type's documentation).
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check_host_name {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A failed TLS handshake in words: which check failed, and what to change.
pub fn explain(error: &rustls::Error, settings: &SslSettings) -> String {
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("TLS handshake failed: {error}");
    };
    let mode = settings.mode;
    let no_verify = if mode == SslMode::VerifyFull || mode == SslMode::VerifyCa {
        "use sslmode=require to encrypt without verifying the certificate"
    } else {
        "drop sslrootcert to encrypt without verifying the certificate"
    };
    let mut out = String::from("the server's certificate failed ");
    match certificate {
        CertificateError::UnknownIssuer => {
            let _ = write!(out, "the CA check (sslmode={mode}): ");
            match settings.roots() {
                RootCerts::File(path) => {
                    let _ = write!(
                        out,
                        "it is not signed by a CA in sslrootcert `{}`; point sslrootcert at the \
                         CA certificate that signed it (managed providers publish theirs), or \
                         {no_verify}",
                        path.display()
                    );
                }
                RootCerts::System => {
                    let _ = write!(
                        out,
                        "it is not signed by a public CA, the ones trusted when sslrootcert is \
                         not given (webpki-roots); download the CA certificate that signed it \
                         (managed providers publish theirs) and give it with \
                         sslrootcert=/path/to/ca.pem, or {no_verify}"
                    );
                }
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let _ = write!(
                out,
                "the host name check (sslmode={mode}): {}; connect with a host name the \
                 certificate lists (an IP address can go in hostaddr=), or use sslmode=verify-ca \
                 to check the CA only",
                names(certificate)
            );
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let _ = write!(
                out,
                "the validity check (sslmode={mode}): it has expired; renew it on the server, \
                 check this machine's clock, or {no_verify}"
            );
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let _ = write!(
                out,
                "the validity check (sslmode={mode}): it is not valid yet; check this machine's \
                 clock, or {no_verify}"
            );
        }
        other => {
            let _ = write!(
                out,
                "verification (sslmode={mode}): {}; check sslrootcert, or {no_verify}",
                rustls::Error::InvalidCertificate(other.clone())
            );
        }
    }
    out
}

/// "it is valid for a, b, not for `c`" when rustls says which names.
fn names(certificate: &CertificateError) -> String {
    match certificate {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let presented = if presented.is_empty() {
                "no host name at all".to_string()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "it is valid for {presented}, not for `{}`",
                expected.to_str()
            )
        }
        _ => "it is not valid for the host name connected to".to_string(),
    }
}

/// `DnsName("db.example.com")` → `db.example.com`, `IpAddress(10.0.0.1)` →
/// `10.0.0.1`: rustls describes the names a certificate presents in Debug
/// form.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: SslMode) -> SslSettings {
        SslSettings {
            mode,
            root_cert: Some(RootCerts::File(PathBuf::from("ca.pem"))),
            client_cert: None,
        }
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(plain_name("DnsName(\"db.example.com\")"), "db.example.com");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn the_fix_offered_depends_on_the_mode() {
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(
            explain(&expired, &settings(SslMode::VerifyCa)),
            "the server's certificate failed the validity check (sslmode=verify-ca): it has \
             expired; renew it on the server, check this machine's clock, or use sslmode=require \
             to encrypt without verifying the certificate"
        );
        assert_eq!(
            explain(&expired, &settings(SslMode::Require)),
            "the server's certificate failed the validity check (sslmode=require): it has \
             expired; renew it on the server, check this machine's clock, or drop sslrootcert \
             to encrypt without verifying the certificate"
        );
    }

    #[test]
    fn other_handshake_failures_say_so() {
        let error = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(
            explain(&error, &settings(SslMode::Require)),
            "TLS handshake failed: received fatal alert: HandshakeFailure"
        );
    }
}
