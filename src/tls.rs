//! TLS (SPEC §11.2): the gRPC port's server certificate and, with a CA, required and
//! verified client certificates (mTLS); and the emitter's HTTPS client identity.
//!
//! Everything is read and checked once at start-up, so a missing, unreadable, malformed or
//! mismatched file stops `eddy serve` with a message naming the file, instead of failing
//! every handshake later. rustls speaks TLS 1.2 and 1.3 only: nothing older is negotiable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file could not be used; each message names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read the {role} `{path}`: {source}")]
    Read {
        /// Which file (e.g. "server certificate (SERVER_CERT_PATH)").
        role: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file holds no usable PEM of the expected kind.
    #[error("the {role} `{path}` holds no {expected}")]
    Content {
        /// Which file.
        role: &'static str,
        /// Its path.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// The certificate and the key do not form an identity.
    #[error("the certificate `{cert}` and the key `{key}` do not belong together: {detail}")]
    Mismatch {
        /// The certificate's path.
        cert: PathBuf,
        /// The key's path.
        key: PathBuf,
        /// rustls's explanation.
        detail: String,
    },
    /// Only one of a certificate and its key was given.
    #[error("{0}")]
    Incomplete(&'static str),
}

const SERVER_CERT: &str = "server certificate (SERVER_CERT_PATH)";
const SERVER_KEY: &str = "server key (SERVER_KEY_PATH)";
const CLIENT_CA: &str = "CA certificate (CA_CERT_PATH)";
const CLIENT_CERT: &str = "client certificate (CLIENT_CERT_PATH)";
const CLIENT_KEY: &str = "client key (CLIENT_KEY_PATH)";

/// Installs ring as the process's rustls crypto provider (once; later calls do nothing).
fn install_provider() {
    let _ = default_provider().install_default();
}

fn read(role: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        role,
        path: path.to_owned(),
        source,
    })
}

fn certificates(
    role: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|certificates| !certificates.is_empty());
    certificates.ok_or_else(|| TlsError::Content {
        role,
        path: path.to_owned(),
        expected: "PEM certificate",
    })
}

fn private_key(
    role: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Content {
        role,
        path: path.to_owned(),
        expected: "PEM private key (PKCS#8, PKCS#1 or SEC1)",
    })
}

fn roots(role: &'static str, path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates(role, path, pem)?);
    if added == 0 {
        return Err(TlsError::Content {
            role,
            path: path.to_owned(),
            expected: "certificate usable as a trust anchor",
        });
    }
    Ok(store)
}

/// The gRPC port's TLS settings: a certificate chain, its key, and optionally the CA that
/// client certificates must chain to.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate issued by one.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// TLS settings from optional paths: none for plaintext, both for TLS.
    pub fn from_paths(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<ServerTls>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(ServerTls {
                cert: cert.to_owned(),
                key: key.to_owned(),
                client_ca: client_ca.map(Path::to_owned),
            })),
            _ => Err(TlsError::Incomplete(
                "SERVER_CERT_PATH and SERVER_KEY_PATH (--server-cert-path, --server-key-path) \
                 must be set together",
            )),
        }
    }

    /// Reads and checks every file, then returns tonic's server TLS configuration.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        install_provider();
        let cert_pem = read(SERVER_CERT, &self.cert)?;
        let key_pem = read(SERVER_KEY, &self.key)?;
        let chain = certificates(SERVER_CERT, &self.cert, &cert_pem)?;
        let key = private_key(SERVER_KEY, &self.key, &key_pem)?;
        // Build the same rustls configuration tonic will, so every mistake shows up here.
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let pem = read(CLIENT_CA, path)?;
                let verifier =
                    WebPkiClientVerifier::builder(Arc::new(roots(CLIENT_CA, path, &pem)?))
                        .build()
                        .map_err(|_| TlsError::Content {
                            role: CLIENT_CA,
                            path: path.clone(),
                            expected: "certificate usable to verify clients",
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(chain, key)
            .map_err(|error| TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                detail: error.to_string(),
            })?;
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(path) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(CLIENT_CA, path)?));
        }
        Ok(config)
    }
}

/// The emitter's HTTPS client: trusts `ca` (or the Mozilla roots without one) and presents
/// `cert`/`key` when both are set.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ClientConfig, TlsError> {
    install_provider();
    let roots = match ca {
        Some(path) => roots(CLIENT_CA, path, &read(CLIENT_CA, path)?)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder().with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates(CLIENT_CERT, cert, &read(CLIENT_CERT, cert)?)?;
            let private = private_key(CLIENT_KEY, key, &read(CLIENT_KEY, key)?)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|error| TlsError::Mismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    detail: error.to_string(),
                })
        }
        _ => Err(TlsError::Incomplete(
            "CLIENT_CERT_PATH and CLIENT_KEY_PATH (--client-cert-path, --client-key-path) \
             must be set together",
        )),
    }
}
