//! Test certificates made at test time: a CA, a server certificate for
//! `127.0.0.1` and `localhost` and a client certificate, both signed by the
//! CA, written as PEM files into a temporary directory (removed on drop).
//! Nothing here is fit for production; it exists so TLS tests need no
//! checked-in keys and no `openssl` binary.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// PEM files of a throwaway PKI (see the module docs).
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates the CA and both certificates (ECDSA P-256, fast to make).
    /// Panics on failure: this is a test fixture.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("bus-test-pki-")
            .tempdir()
            .expect("temp dir for test certificates");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        };

        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name = name("bus test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca, ca_key).expect("CA certificate");
        write("ca.pem", &ca.pem());

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        server.distinguished_name = name("localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server = server
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        write("server-cert.pem", &server.pem());
        write("server-key.pem", &server_key.serialize_pem());

        let mut client =
            CertificateParams::new(vec!["client.test".to_owned()]).expect("client params");
        client.distinguished_name = name("bus test client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("client key");
        let client = client
            .signed_by(&client_key, &ca)
            .expect("client certificate");
        write("client-cert.pem", &client.pem());
        write("client-key.pem", &client_key.serialize_pem());

        // A second, unrelated CA: a certificate it signed must be refused.
        let mut other = CertificateParams::new(Vec::<String>::new()).expect("other CA params");
        other.distinguished_name = name("some other CA");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other_key = KeyPair::generate().expect("other CA key");
        let other = CertifiedIssuer::self_signed(other, other_key).expect("other CA");
        let mut stranger =
            CertificateParams::new(vec!["stranger.test".to_owned()]).expect("stranger params");
        stranger.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let stranger_key = KeyPair::generate().expect("stranger key");
        let stranger = stranger
            .signed_by(&stranger_key, &other)
            .expect("stranger certificate");
        write("stranger-cert.pem", &stranger.pem());
        write("stranger-key.pem", &stranger_key.serialize_pem());

        TestPki { dir }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (SAN `127.0.0.1`, `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server-cert.pem")
    }

    /// The server certificate's private key (PKCS#8 PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// A client certificate signed by the CA.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client-cert.pem")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }

    /// A client certificate signed by another CA (must be refused).
    pub fn stranger_cert(&self) -> PathBuf {
        self.dir.path().join("stranger-cert.pem")
    }

    /// The stranger certificate's private key.
    pub fn stranger_key(&self) -> PathBuf {
        self.dir.path().join("stranger-key.pem")
    }

    /// A nats-server `tls { }` block for these files.
    pub fn server_block(&self, verify: bool, handshake_first: bool) -> String {
        let mut block = format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n",
            self.server_cert().display().to_string(),
            self.server_key().display().to_string()
        );
        if verify {
            block.push_str(&format!(
                "  ca_file: {:?}\n  verify: true\n",
                self.ca_file().display().to_string()
            ));
        }
        if handshake_first {
            block.push_str("  handshake_first: true\n");
        }
        block.push_str("}\n");
        block
    }
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    dn
}
