internal import COpenSSL

/// An error from libcrypto, with its queued error strings.
public struct CryptoError: Error, Sendable, CustomStringConvertible {
    /// What we were doing.
    public var operation: String
    /// libcrypto's error stack, newest last.
    public var openSSLErrors: [String]

    public var description: String {
        openSSLErrors.isEmpty ? "\(operation) failed" : "\(operation) failed: \(openSSLErrors.joined(separator: "; "))"
    }

    static func capture(_ operation: String) -> CryptoError {
        var messages: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return CryptoError(operation: operation, openSSLErrors: messages)
    }
}

/// An ECDSA P-256 private key (for Coinbase's ES256 JWTs). Owns an `EVP_PKEY`, freed in `deinit`.
public final class P256SigningKey: @unchecked Sendable {
    // Sendable: the EVP_PKEY is never mutated after init; libcrypto allows concurrent signing with
    // one key as long as each signature uses its own EVP_MD_CTX (which `sign` does).
    private let key: OpaquePointer

    /// Loads a PEM private key (SEC1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY") on curve P-256.
    public init(pem: String) throws(CryptoError) {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        let bio = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
        guard let bio else { throw CryptoError.capture("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            throw CryptoError.capture("reading the PEM private key")
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_EC, EVP_PKEY_get_bits(key) == 256 else {
            EVP_PKEY_free(key)
            throw CryptoError(operation: "loading the signing key", openSSLErrors: ["key is not an EC P-256 key"])
        }
        self.key = key
    }

    /// Generates a fresh key (tests and examples).
    public static func generate() throws(CryptoError) -> P256SigningKey {
        ERR_clear_error()
        guard let key = cossl_EVP_EC_gen_p256() else { throw CryptoError.capture("generating a P-256 key") }
        return P256SigningKey(takingOwnership: key)
    }

    private init(takingOwnership key: OpaquePointer) { self.key = key }

    deinit { EVP_PKEY_free(key) }

    /// The private key as PKCS#8 PEM.
    public func pemRepresentation() throws(CryptoError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.capture("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else {
            throw CryptoError.capture("writing the PEM private key")
        }
        return Self.drain(bio)
    }

    /// The public key as SubjectPublicKeyInfo PEM (to verify our signatures independently).
    public func publicKeyPEM() throws(CryptoError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.capture("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PUBKEY(bio, key) == 1 else { throw CryptoError.capture("writing the public key") }
        return Self.drain(bio)
    }

    private static func drain(_ bio: OpaquePointer) -> String {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = BIO_read(bio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<Int(n)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Signs SHA-256(`message`) and returns the DER-encoded ECDSA signature.
    public func signatureDER(for message: some ContiguousBytes) throws(CryptoError) -> [UInt8] {
        ERR_clear_error()
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError.capture("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, key) == 1 else {
            throw CryptoError.capture("EVP_DigestSignInit")
        }
        var length = 0
        let ok = message.withUnsafeBytes { m -> Bool in
            let base = m.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return EVP_DigestSign(ctx, nil, &length, base, m.count) == 1
        }
        guard ok else { throw CryptoError.capture("EVP_DigestSign (size)") }
        var signature = [UInt8](repeating: 0, count: length)
        let ok2 = message.withUnsafeBytes { m -> Bool in
            let base = m.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return EVP_DigestSign(ctx, &signature, &length, base, m.count) == 1
        }
        guard ok2 else { throw CryptoError.capture("EVP_DigestSign") }
        return Array(signature.prefix(length))
    }

    /// Signs SHA-256(`message`) and returns the 64-byte raw `r || s` form JWS ES256 uses (RFC 7518 §3.4).
    public func signatureRaw(for message: some ContiguousBytes) throws(CryptoError) -> [UInt8] {
        let der = try signatureDER(for: message)
        guard let raw = Self.rawSignature(fromDER: der) else {
            throw CryptoError(operation: "converting the ECDSA signature", openSSLErrors: ["malformed DER"])
        }
        return raw
    }

    /// Converts `SEQUENCE { INTEGER r, INTEGER s }` into 32-byte big-endian r and s.
    static func rawSignature(fromDER der: [UInt8]) -> [UInt8]? {
        var index = 0
        func readLength() -> Int? {
            guard index < der.count else { return nil }
            let first = der[index]
            index += 1
            if first < 0x80 { return Int(first) }
            guard first == 0x81, index < der.count else { return nil }
            defer { index += 1 }
            return Int(der[index])
        }
        func readInteger() -> [UInt8]? {
            guard index < der.count, der[index] == 0x02 else { return nil }
            index += 1
            guard let length = readLength(), index + length <= der.count else { return nil }
            var value = Array(der[index..<index + length])
            index += length
            while value.count > 32, value.first == 0 { value.removeFirst() }
            guard value.count <= 32 else { return nil }
            return [UInt8](repeating: 0, count: 32 - value.count) + value
        }
        guard der.first == 0x30 else { return nil }
        index = 1
        guard readLength() != nil, let r = readInteger(), let s = readInteger() else { return nil }
        return r + s
    }
}
