//! One HTTP/1.1 POST of an NDJSON body to `PUSH_URL`, over TLS for `https` URLs (with the
//! optional client certificate). A new connection per window: windows are minutes apart.
//! The server's certificate must name the URL's host, or `SERVER_NAME` when that is set (it
//! is also the name sent in SNI), as Goldmane's emitter does.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// How long one attempt (connect, TLS, request, response head) may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how windows are posted.
#[derive(Clone)]
pub struct Poster {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("uri", &self.uri)
            .field("server_name", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// The server answered with a status other than 2xx.
    #[error("the server answered {0}")]
    Status(hyper::StatusCode),
    /// The attempt took longer than [`ATTEMPT_TIMEOUT`].
    #[error("no answer within {ATTEMPT_TIMEOUT:?}")]
    Timeout,
}

fn transport(error: impl std::fmt::Display) -> PostError {
    PostError::Transport(error.to_string())
}

impl Poster {
    /// A poster for `url` (`http://` or `https://`); `tls` is used for `https`.
    pub fn new(url: &str, tls: Option<ClientConfig>) -> Result<Poster, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("PUSH_URL `{url}` is not a URL: {error}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "PUSH_URL `{url}` must start with http:// or https://"
                ))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("PUSH_URL `{url}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = tls.ok_or("an https PUSH_URL needs a TLS client configuration")?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone())
                .map_err(|error| format!("PUSH_URL host `{host}`: {error}"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Poster {
            uri,
            host,
            port,
            tls,
        })
    }

    /// Verifies an https server's certificate against `name` instead of the URL's host
    /// (`SERVER_NAME`); an http poster has no certificate to verify and is unchanged.
    pub fn with_server_name(mut self, name: &str) -> Result<Poster, String> {
        if let Some((_, server_name)) = &mut self.tls {
            *server_name = ServerName::try_from(name.to_string())
                .map_err(|error| format!("SERVER_NAME `{name}`: {error}"))?;
        }
        Ok(self)
    }

    /// POSTs `body` as `application/x-ndjson`; succeeds on a 2xx answer.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), PostError> {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(body))
            .await
            .map_err(|_| PostError::Timeout)?
    }

    async fn attempt(&self, body: Vec<u8>) -> Result<(), PostError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| transport(format!("cannot connect: {error}")))?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.send(stream, body).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|error| transport(format!("TLS handshake failed: {error}")))?;
                self.send(stream, body).await
            }
        }
    }

    async fn send<IO>(&self, io: IO, body: Vec<u8>) -> Result<(), PostError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(transport)?;
        let driver = tokio::spawn(connection);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_string();
        let authority = self
            .uri
            .authority()
            .map_or(self.host.clone(), |authority| authority.to_string());
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(transport)?;
        let response = sender.send_request(request).await.map_err(transport);
        driver.abort();
        let status = response?.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status))
        }
    }
}
