//! `weir tls init DIR`: a certificate authority, a server pair and a client pair for a
//! quick start with TLS and mutual TLS. For production, use your own PKI.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// `weir tls …`.
#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Write ca.pem, server.pem + server-key.pem, client.pem + client-key.pem into DIR.
    Init(InitArgs),
}

/// `weir tls init DIR`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Folder to write the files into (created if missing).
    pub dir: PathBuf,
    /// Extra DNS names or IP addresses for the server certificate (besides localhost,
    /// 127.0.0.1, ::1 and Loggregator's `metron` and `reverselogproxy`).
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Days the certificates stay valid.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// The files `init` writes, in order.
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
];

/// Runs `weir tls …`.
pub fn run(cmd: TlsCommand) -> anyhow::Result<()> {
    match cmd {
        TlsCommand::Init(args) => init(&args),
    }
}

fn validity(days: i64) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    anyhow::ensure!(days > 0, "--days must be at least 1");
    let now = OffsetDateTime::now_utc();
    // Back-date a little so clocks slightly behind still accept the certificates.
    Ok((now - Duration::hours(1), now + Duration::days(days)))
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    if !args.force {
        for f in FILES {
            let p = args.dir.join(f);
            anyhow::ensure!(
                !p.exists(),
                "{} exists; use --force to overwrite",
                p.display()
            );
        }
    }
    let (not_before, not_after) = validity(args.days)?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weir quick-start CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(&args.dir, "ca.pem", &ca_cert.pem(), false)?;
    write(&args.dir, "ca-key.pem", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server_names: Vec<String> =
        ["localhost", "127.0.0.1", "::1", "metron", "reverselogproxy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    server_names.extend(args.sans.iter().cloned());
    let (cert, key) = leaf(
        &issuer,
        "weir server",
        server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
        not_before,
        not_after,
    )?;
    write(&args.dir, "server.pem", &cert, false)?;
    write(&args.dir, "server-key.pem", &key, true)?;

    let (cert, key) = leaf(
        &issuer,
        "weir client",
        vec!["weir-client".to_string()],
        ExtendedKeyUsagePurpose::ClientAuth,
        not_before,
        not_after,
    )?;
    write(&args.dir, "client.pem", &cert, false)?;
    write(&args.dir, "client-key.pem", &key, true)?;

    println!("wrote {} into {}", FILES.join(", "), args.dir.display());
    print!("{}", usage(&args.dir));
    Ok(())
}

/// The flags that use the files of `dir`: for `weir serve` (mutual TLS) and for client
/// commands, with paths made absolute so they work from any folder.
fn usage(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let f = |name: &str| shell_quote(&dir.join(name).display().to_string());
    format!(
        "serve with (mutual TLS: clients need a certificate signed by ca.pem):\n  \
         weir serve --tls-cert {server} --tls-key {server_key} --tls-client-ca {ca}\n\
         client commands (ls, cat, emit, tail) take:\n  \
         --tls-ca {ca} --tls-cert {client} --tls-key {client_key}\n\
         or the environment:\n  \
         export WEIR_TLS_CA={ca} WEIR_TLS_CERT={client} WEIR_TLS_KEY={client_key}\n\
         keep ca-key.pem private: it can sign more certificates.\n",
        server = f("server.pem"),
        server_key = f("server-key.pem"),
        ca = f("ca.pem"),
        client = f("client.pem"),
        client_key = f("client-key.pem"),
    )
}

/// `s` as one shell word: as it is when it holds only safe characters, else in single
/// quotes.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(names).context("bad subject alternative name")?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a file; private keys are readable by the owner only.
fn write(dir: &Path, name: &str, contents: &str, private: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_chain_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let args = InitArgs {
            dir: dir.path().to_path_buf(),
            sans: vec!["weir.example".into()],
            days: 2,
            force: false,
        };
        init(&args).unwrap();
        for f in FILES {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{f}");
        }
        let err = init(&args).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        init(&InitArgs {
            force: true,
            ..args
        })
        .unwrap();
    }

    #[test]
    fn usage_names_every_flag_and_quotes_odd_paths() {
        let text = usage(Path::new("certs dir"));
        for flag in [
            "--tls-cert",
            "--tls-key",
            "--tls-client-ca",
            "--tls-ca",
            "WEIR_TLS_CA=",
        ] {
            assert!(text.contains(flag), "{flag}: {text}");
        }
        assert!(text.contains("'certs dir/server.pem'"), "{text}");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
