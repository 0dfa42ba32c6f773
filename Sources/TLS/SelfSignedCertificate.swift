internal import COpenSSL

/// Generates a self-signed P-256 certificate (for the simulator's `--tls` and benchmarks).
public enum SelfSignedCertificate {
    /// Writes `cert.pem` and `key.pem` into `directory` for `commonName`, with SANs `DNS:localhost`
    /// and `IP:127.0.0.1` plus `extraNames`; valid from an hour ago for `days`. Returns both paths.
    public static func generate(
        commonName: String = "localhost", extraNames: [String] = [], days: Int = 30, directory: String
    ) throws(TLSError) -> (certificatePath: String, privateKeyPath: String) {
        ERR_clear_error()
        func failure(_ what: String) -> TLSError {
            TLSError(.configuration, what, openSSLErrors: TLSError.drainErrors())
        }
        guard let key = cossl_EVP_EC_gen_p256() else { throw failure("generating a P-256 key") }
        defer { EVP_PKEY_free(key) }
        guard let cert = X509_new() else { throw failure("X509_new") }
        defer { X509_free(cert) }
        X509_set_version(cert, 2)  // v3
        ASN1_INTEGER_set(X509_get_serialNumber(cert), Int(truncatingIfNeeded: UInt32.random(in: 1...UInt32.max)))
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600)
        X509_gmtime_adj(X509_getm_notAfter(cert), days * 86_400)
        X509_set_pubkey(cert, key)
        let name = X509_get_subject_name(cert)
        guard X509_NAME_add_entry_by_txt(name, "CN", cossl_MBSTRING_ASC(), commonName, -1, -1, 0) == 1 else {
            throw failure("setting the common name")
        }
        X509_set_issuer_name(cert, name)
        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, cert, cert, nil, nil, 0)
        let names = (["DNS:localhost", "IP:127.0.0.1"] + extraNames.map { "DNS:\($0)" }).joined(separator: ",")
        for (nid, value) in [(NID_subject_alt_name, names), (NID_basic_constraints, "critical,CA:TRUE")] {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else {
                throw failure("building extension \(value)")
            }
            X509_add_ext(cert, ext, -1)
            X509_EXTENSION_free(ext)
        }
        guard X509_sign(cert, key, EVP_sha256()) > 0 else { throw failure("signing the certificate") }
        let certificatePath = directory + "/cert.pem"
        let privateKeyPath = directory + "/key.pem"
        guard let certFile = BIO_new_file(certificatePath, "w") else { throw failure("creating \(certificatePath)") }
        defer { BIO_free(certFile) }
        guard PEM_write_bio_X509(certFile, cert) == 1 else { throw failure("writing \(certificatePath)") }
        guard let keyFile = BIO_new_file(privateKeyPath, "w") else { throw failure("creating \(privateKeyPath)") }
        defer { BIO_free(keyFile) }
        guard PEM_write_bio_PrivateKey(keyFile, key, nil, nil, 0, nil, nil) == 1 else {
            throw failure("writing \(privateKeyPath)")
        }
        return (certificatePath, privateKeyPath)
    }
}
