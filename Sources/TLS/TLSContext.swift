internal import COpenSSL

/// A TLS failure, with the cause spelled out (never the data being sent).
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure.
    public enum Code: Sendable, Equatable {
        /// The peer's certificate did not verify (unknown CA, expired, wrong host name…).
        case certificateVerificationFailed
        /// Loading certificates, keys or CA files failed.
        case configuration
        /// The handshake failed for another reason (protocol version, alert from the peer…).
        case handshakeFailed
        /// A record could not be read or written after the handshake.
        case ioFailed
        /// The peer closed the connection without close_notify.
        case unexpectedEOF
    }
    public var code: Code
    /// The human-readable cause, e.g. `certificate has expired`.
    public var reason: String
    /// libssl's error queue at the time, newest last.
    public var openSSLErrors: [String]

    public init(_ code: Code, _ reason: String, openSSLErrors: [String] = []) {
        self.code = code
        self.reason = reason
        self.openSSLErrors = openSSLErrors
    }

    public var description: String {
        let details = openSSLErrors.isEmpty ? "" : " (\(openSSLErrors.joined(separator: "; ")))"
        return "TLS \(code): \(reason)\(details)"
    }

    /// Drains libssl's thread-local error queue.
    static func drainErrors() -> [String] {
        var messages: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages
    }
}

/// How a TLS context is set up.
public struct TLSConfiguration: Sendable, Equatable {
    public enum Role: Sendable, Equatable { case client, server }

    public var role: Role
    /// PEM file of CA certificates to trust; `nil` uses the system store (client role).
    public var trustRootsFile: String?
    /// PEM certificate chain to present (server role, or client certificates).
    public var certificateChainFile: String?
    /// PEM private key for `certificateChainFile`.
    public var privateKeyFile: String?

    /// A client that verifies servers against the system CA store (or `trustRootsFile`).
    public static func client(trustRootsFile: String? = nil) -> TLSConfiguration {
        TLSConfiguration(role: .client, trustRootsFile: trustRootsFile, certificateChainFile: nil, privateKeyFile: nil)
    }

    /// A server presenting `certificateChainFile` with `privateKeyFile`.
    public static func server(certificateChainFile: String, privateKeyFile: String) -> TLSConfiguration {
        TLSConfiguration(
            role: .server, trustRootsFile: nil, certificateChainFile: certificateChainFile,
            privateKeyFile: privateKeyFile)
    }
}

/// An `SSL_CTX`: shared, immutable after creation, used to create sessions.
///
/// Always: TLS ≥ 1.2; clients verify the peer (`SSL_VERIFY_PEER`) against the system store (Debian's
/// `/etc/ssl/certs`, found through `SSL_CTX_set_default_verify_paths`) or the given CA file. There is
/// no switch to skip verification.
public final class TLSContext: @unchecked Sendable {
    // Sendable: the SSL_CTX is configured in init and only read afterwards (SSL_new takes a reference);
    // OpenSSL 3 allows SSL_new from several threads on one configured context.
    let context: OpaquePointer
    public let configuration: TLSConfiguration

    /// Creates a context; throws `.configuration` naming the file that could not be loaded.
    public init(configuration: TLSConfiguration) throws(TLSError) {
        ERR_clear_error()
        let method = configuration.role == .client ? TLS_client_method() : TLS_server_method()
        guard let context = SSL_CTX_new(method) else {
            throw TLSError(.configuration, "SSL_CTX_new failed", openSSLErrors: TLSError.drainErrors())
        }
        self.context = context
        self.configuration = configuration
        guard cossl_SSL_CTX_set_min_proto_version(context, cossl_TLS1_2_VERSION()) == 1 else {
            throw TLSError(.configuration, "cannot require TLS 1.2", openSSLErrors: TLSError.drainErrors())
        }
        // Let a write resume from a moved buffer, and accept partial writes (we loop ourselves).
        _ = cossl_SSL_CTX_set_mode(
            context, cossl_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER() | cossl_SSL_MODE_ENABLE_PARTIAL_WRITE())
        if configuration.role == .client {
            SSL_CTX_set_verify(context, cossl_SSL_VERIFY_PEER(), nil)
            if let file = configuration.trustRootsFile {
                guard SSL_CTX_load_verify_locations(context, file, nil) == 1 else {
                    throw TLSError(
                        .configuration, "cannot load CA file \(file)", openSSLErrors: TLSError.drainErrors())
                }
            } else {
                guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                    throw TLSError(
                        .configuration, "cannot load the system CA store", openSSLErrors: TLSError.drainErrors())
                }
            }
        }
        if let chain = configuration.certificateChainFile {
            guard SSL_CTX_use_certificate_chain_file(context, chain) == 1 else {
                throw TLSError(
                    .configuration, "cannot load certificate chain \(chain)", openSSLErrors: TLSError.drainErrors())
            }
        }
        if let key = configuration.privateKeyFile {
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1,
                SSL_CTX_check_private_key(context) == 1
            else {
                throw TLSError(
                    .configuration, "cannot load private key \(key) or it does not match the certificate",
                    openSSLErrors: TLSError.drainErrors())
            }
        }
    }

    deinit { SSL_CTX_free(context) }
}
