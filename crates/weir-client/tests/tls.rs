//! Mutual TLS: a tonic server of `loggregator.v2.Ingress` (weir's own service over a
//! real store) requiring client certificates signed by a CA made with rcgen at test
//! time. A client with a CA-signed certificate gets through; one without a
//! certificate, or with one from another CA, is refused. Loading refuses an expired
//! certificate and names the file.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::within;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use weir_client::tls::{ClientTls, INGRESS_SERVER_NAME, TlsError, ingress_tls_config};
use weir_client::{ClientError, IngressClient, LogType, SourceInfo};
use weir_collector::grpc::ingress::IngressService;
use weir_collector::{Collector, CollectorConfig, Metrics};
use weir_proto::lv2::ingress_server::IngressServer;
use weir_store::{FjallConfig, FjallStore, FsyncPolicy, Store};

/// A certificate authority able to sign leaves.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf (certificate PEM, key PEM) for `names`, valid from `not_before` to `not_after`.
fn leaf(
    ca: &Ca,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    if let Some((from, to)) = validity {
        params.not_before = from;
        params.not_after = to;
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

/// Starts a mutual-TLS Ingress server; returns its address and a stop token.
async fn mtls_server(dir: &Path, ca: &Ca) -> (SocketAddr, Arc<dyn Store>, CancellationToken) {
    let (cert, key) = leaf(
        ca,
        &[INGRESS_SERVER_NAME, "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        None,
    );
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(&ca.pem));
    let store: Arc<dyn Store> = Arc::new(
        FjallStore::open(FjallConfig {
            data_dir: dir.join("data"),
            fsync: FsyncPolicy::Never,
            ..FjallConfig::default()
        })
        .unwrap(),
    );
    let collector = Collector::new(store.clone(), &CollectorConfig::default(), Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(IngressServer::new(IngressService::new(collector)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    (addr, store, stop)
}

fn client(addr: SocketAddr, tls: tonic::transport::ClientTlsConfig) -> IngressClient {
    IngressClient::builder()
        .addr(addr.to_string())
        .tls(tls)
        .source(SourceInfo::new("tls-app", "", "0"))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_a_ca_signed_client_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = new_ca("weir test CA");
    let ca_file = write(d, "ca.crt", &ca.pem);
    let (addr, store, stop) = mtls_server(d, &ca).await;

    // A client certificate signed by the CA: accepted, on the batched path too.
    let (cert, key) = leaf(&ca, &["client"], ExtendedKeyUsagePurpose::ClientAuth, None);
    let good = ingress_tls_config(
        &ca_file,
        write(d, "client.crt", &cert),
        write(d, "client.key", &key),
    )
    .unwrap();
    let ok = client(addr, good);
    within(ok.emit_event("hello", "over mutual TLS"))
        .await
        .unwrap();
    ok.emit_log("batched over mutual TLS", LogType::Out);
    within(ok.close_send()).await.unwrap();
    assert_eq!(ok.dropped(), 0);
    let path = weir_core::path::loggregator_path("tls-app", "0");
    assert_eq!(store.stream(&path).await.unwrap().unwrap().next_index, 2);

    // No client certificate: refused.
    let anonymous = ClientTls::server_only(&ca_file)
        .unwrap()
        .grpc_config(INGRESS_SERVER_NAME);
    let r = within(client(addr, anonymous).emit_event("x", "y")).await;
    assert!(matches!(r, Err(ClientError::Send(_))), "{r:?}");

    // A certificate from another CA: refused.
    let other = new_ca("someone else");
    let (cert, key) = leaf(
        &other,
        &["client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        None,
    );
    let stranger = ingress_tls_config(
        &ca_file,
        write(d, "other.crt", &cert),
        write(d, "other.key", &key),
    )
    .unwrap();
    let r = within(client(addr, stranger).emit_event("x", "y")).await;
    assert!(matches!(r, Err(ClientError::Send(_))), "{r:?}");

    // The server's name is checked against "metron", not the address dialled.
    let wrong_name = ClientTls::mutual(&ca_file, d.join("client.crt"), d.join("client.key"))
        .unwrap()
        .grpc_config("not-metron");
    let r = within(client(addr, wrong_name).emit_event("x", "y")).await;
    assert!(matches!(r, Err(ClientError::Send(_))), "{r:?}");

    stop.cancel();
}

#[test]
fn an_expired_certificate_is_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = new_ca("weir test CA");
    let ca_file = write(d, "ca.crt", &ca.pem);
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = leaf(
        &ca,
        &["client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        Some((
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )),
    );
    let e = ingress_tls_config(
        &ca_file,
        write(d, "expired.crt", &cert),
        write(d, "client.key", &key),
    )
    .unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired.crt"), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");

    // A key file without a key names the key file.
    let (cert, _) = leaf(&ca, &["client"], ExtendedKeyUsagePurpose::ClientAuth, None);
    let e = ingress_tls_config(
        &ca_file,
        write(d, "fine.crt", &cert),
        write(d, "nokey.key", &cert),
    )
    .unwrap_err();
    assert!(
        matches!(e, TlsError::Pem(weir_core::pem::PemError::NoKey { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("nokey.key"), "{e}");
}
