//! The TLS version of `sockets-server` (not in Ktor): greets each client over TLS and answers
//! every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server-tls -- [HOST] [PORT]     # default 127.0.0.1 9443
//!     [--cert FILE --key FILE]    # PEM chain (leaf first) and key; default: self-signed
//!     [--client-ca FILE]          # require client certificates issued by this CA (PEM)
//!     [--alpn LIST]               # accepted ALPN protocols, comma-separated, preferred first
//! ```
//!
//! Without `--cert`/`--key` it makes a self-signed certificate at start-up for `localhost`,
//! `127.0.0.1` and `::1` and prints its SHA-256 fingerprint, so that a client run with
//! `--insecure` can be checked by hand. A client whose handshake fails costs one line on stderr;
//! the server keeps serving everyone else.

use std::process::ExitCode;

use anyhow::Context;
use net_sockets::{Socket, a_socket};
use net_tls::rustls::pki_types::CertificateDer;
use net_tls::rustls::pki_types::pem::PemObject;
use net_tls::{TlsExt, TlsServerConfig, TlsSocket};

const USAGE: &str =
    "usage: [HOST] [PORT] [--cert FILE --key FILE] [--client-ca FILE] [--alpn PROTOCOL,…]";

/// The names the self-signed certificate is valid for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[tokio::main]
async fn main() -> ExitCode {
    examples::run("sockets-server-tls", serve()).await
}

async fn serve() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = examples::Flags::parse(&args, &["--cert", "--key", "--client-ca", "--alpn"], &[])
        .context(USAGE)?;
    let (host, port) = examples::host_and_port(&flags.positional, "127.0.0.1", 9443)?;
    let (config, about) = server_config(&flags)?;

    let selector = net_sockets::SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {host}:{port}"))?;
    for line in about {
        println!("{line}");
    }
    println!("Server is listening at {}", server.local_address());
    loop {
        let socket = server.accept().await.context("accept failed")?;
        println!("Accepted {}", socket.remote_address());
        tokio::spawn(greet(socket, config.clone()));
    }
}

/// The TLS configuration from the flags, and lines that say which certificate is served.
fn server_config(flags: &examples::Flags) -> anyhow::Result<(TlsServerConfig, Vec<String>)> {
    let mut about = Vec::new();
    let builder = match (flags.value("--cert"), flags.value("--key")) {
        (Some(cert), Some(key)) => {
            let builder = TlsServerConfig::builder()
                .certificate_chain_pem_file(cert)
                .and_then(|b| b.private_key_pem_file(key))?;
            // The file was just read and parsed; its first certificate is the leaf.
            let leaf = CertificateDer::from_pem_file(cert)
                .with_context(|| format!("no certificate in {cert}"))?;
            about.push(format!("Certificate: {cert}"));
            about.push(format!(
                "SHA-256 fingerprint: {}",
                examples::sha256_fingerprint(&leaf)
            ));
            builder
        }
        (None, None) => {
            let (cert_pem, key_pem, der) = self_signed()?;
            about.push(format!(
                "Certificate: self-signed for {}",
                SELF_SIGNED_NAMES.join(", ")
            ));
            about.push(format!(
                "SHA-256 fingerprint: {}",
                examples::sha256_fingerprint(&der)
            ));
            TlsServerConfig::builder()
                .certificate_chain_pem(cert_pem.as_bytes())
                .and_then(|b| b.private_key_pem(key_pem.as_bytes()))?
        }
        _ => anyhow::bail!("--cert and --key go together ({USAGE})"),
    };
    let builder = match flags.value("--client-ca") {
        Some(file) => {
            let pem = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
            builder
                .client_auth_required(&pem)
                .with_context(|| format!("unusable client CA in {file}"))?
        }
        None => builder,
    };
    let builder = match flags.value("--alpn") {
        Some(list) => builder.alpn_protocols(list.split(',').filter(|p| !p.is_empty())),
        None => builder,
    };
    Ok((builder.build()?, about))
}

/// A fresh self-signed end-entity certificate (not a CA: rustls refuses a CA certificate as a
/// server's own) for [`SELF_SIGNED_NAMES`]: its PEM, its key's PEM, and its DER.
fn self_signed() -> anyhow::Result<(String, String, Vec<u8>)> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(SELF_SIGNED_NAMES.map(str::to_owned).to_vec())
        .context("certificate names")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "sockets-server-tls");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params.self_signed(&key).context("making the certificate")?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

/// One client: the handshake, then the conversation of `sockets-server`.
async fn greet(socket: Socket, config: TlsServerConfig) {
    let remote = socket.remote_address();
    let mut tls = match socket.tls_server(&config).await {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("Handshake with {remote} failed: {e}");
            return;
        }
    };
    println!("TLS with {remote}: {}", examples::describe_session(&tls));
    if let Err(e) = converse(&mut tls).await {
        println!("Connection with {remote} ended: {e}");
    }
    tls.close();
}

async fn converse(tls: &mut TlsSocket) -> anyhow::Result<()> {
    let mut input = tls.open_read_channel()?;
    let mut output = tls.open_write_channel(true)?;
    examples::greet(&mut input, &mut output).await?;
    // The client has finished: answer its close_notify with ours.
    output.flush_and_close().await?;
    Ok(())
}
