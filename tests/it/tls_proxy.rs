//! A TLS-terminating proxy on loopback, for the `https://` live run test
//! and the live bench's TLS mode (`benches/live.rs` includes this file).

use std::sync::Arc;

/// Serves TLS on 127.0.0.1 with a certificate for that address signed by
/// a fresh authority, passing each connection's bytes on to `backend`
/// (a TLS-terminating proxy in front of the emulator). Returns the port
/// and the authority's certificate in PEM.
pub fn start(rt: &tokio::runtime::Runtime, backend: std::net::SocketAddr) -> (u16, String) {
    start_named(rt, backend, "127.0.0.1")
}

/// [`start`] with a certificate for `name` (a host name or an address).
#[allow(dead_code)] // The live bench includes this file and needs only `start`.
pub fn start_named(
    rt: &tokio::runtime::Runtime,
    backend: std::net::SocketAddr,
    name: &str,
) -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca_pem)
}
