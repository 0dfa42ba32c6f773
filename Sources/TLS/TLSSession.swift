internal import COpenSSL

/// One TLS connection as a pure byte transformer over memory BIOs (sans-IO, STYLE.md §6).
///
/// The driver feeds ciphertext from the socket with `feed(ciphertext:)`, writes out whatever
/// `takeCiphertext` returns, and moves plaintext with `write(plaintext:)` / `read(into:)`.
/// Confined to one thread (the event loop): `SSL*` is not thread-safe.
public final class TLSSession {
    /// Result of a handshake step.
    public enum HandshakeResult: Sendable, Equatable {
        case complete
        /// More ciphertext is needed from the peer (after sending what `takeCiphertext` has).
        case wantIO
        case failed(TLSError)
    }

    /// Result of reading plaintext.
    public enum ReadResult: Sendable, Equatable {
        case bytes(Int)
        /// No plaintext until more ciphertext arrives.
        case wantMore
        /// The peer sent close_notify.
        case closed
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    /// Ciphertext from the peer is written here (owned by `ssl` after `SSL_set_bio`).
    private let readBIO: OpaquePointer
    /// Ciphertext for the peer is read from here (owned by `ssl` after `SSL_set_bio`).
    private let writeBIO: OpaquePointer
    /// The context, kept alive for as long as the session.
    public let context: TLSContext
    public private(set) var isHandshakeComplete = false

    /// Creates a session. For clients, `serverName` sets SNI and the name the certificate must match.
    public init(context: TLSContext, serverName: String?) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else {
            throw TLSError(.configuration, "SSL_new failed", openSSLErrors: TLSError.drainErrors())
        }
        guard let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError(.configuration, "BIO_new failed", openSSLErrors: TLSError.drainErrors())
        }
        // An empty read BIO means "want read", not EOF.
        _ = cossl_BIO_set_mem_eof_return(rbio, -1)
        // SSL_set_bio takes ownership of both BIOs: SSL_free releases them, so we never free them.
        SSL_set_bio(ssl, rbio, wbio)
        self.ssl = ssl
        self.readBIO = rbio
        self.writeBIO = wbio
        self.context = context
        if context.configuration.role == .client {
            SSL_set_connect_state(ssl)
            if let serverName {
                if Self.isIPAddress(serverName) {
                    // IP addresses are checked against IP SANs; SNI must not carry an IP (RFC 6066 §3).
                    guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) == 1 else {
                        throw TLSError(.configuration, "bad IP address \(serverName)")
                    }
                } else {
                    guard cossl_SSL_set_tlsext_host_name(ssl, serverName) == 1, SSL_set1_host(ssl, serverName) == 1
                    else {
                        throw TLSError(
                            .configuration, "cannot set server name \(serverName)",
                            openSSLErrors: TLSError.drainErrors())
                    }
                }
            }
        } else {
            SSL_set_accept_state(ssl)
        }
    }

    deinit { SSL_free(ssl) }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." })
    }

    /// Hands ciphertext received from the socket to OpenSSL.
    public func feed(ciphertext: UnsafeRawBufferPointer) {
        guard let base = ciphertext.baseAddress, ciphertext.count > 0 else { return }
        var offset = 0
        while offset < ciphertext.count {
            let n = BIO_write(readBIO, base + offset, Int32(min(ciphertext.count - offset, Int(Int32.max))))
            // A memory BIO grows as needed; a failed write means allocation failure.
            precondition(n > 0, "BIO_write to a memory BIO failed")
            offset += Int(n)
        }
    }

    /// Whether ciphertext is waiting to be sent.
    public var hasPendingCiphertext: Bool { BIO_ctrl_pending(writeBIO) > 0 }

    /// Appends ciphertext that must be sent to the peer to `out`.
    public func takeCiphertext(into out: inout [UInt8]) {
        let pending = Int(BIO_ctrl_pending(writeBIO))
        guard pending > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: pending))
        let n = out.withUnsafeMutableBytes { BIO_read(writeBIO, $0.baseAddress! + start, Int32(pending)) }
        out.removeLast(pending - Int(max(n, 0)))
    }

    /// Advances the handshake.
    public func handshake() -> HandshakeResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            isHandshakeComplete = true
            return .complete
        }
        let error = SSL_get_error(ssl, rc)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return .wantIO }
        return .failed(handshakeError(sslError: error))
    }

    private func handshakeError(sslError: Int32) -> TLSError {
        let queue = TLSError.drainErrors()
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            let text = X509_verify_cert_error_string(verify).map { String(cString: $0) } ?? "code \(verify)"
            return TLSError(.certificateVerificationFailed, text, openSSLErrors: queue)
        }
        if sslError == SSL_ERROR_SYSCALL || sslError == SSL_ERROR_ZERO_RETURN {
            return TLSError(.unexpectedEOF, "peer closed the connection during the handshake", openSSLErrors: queue)
        }
        return TLSError(.handshakeFailed, queue.last ?? "SSL error \(sslError)", openSSLErrors: queue)
    }

    /// Encrypts plaintext; returns how many bytes were consumed (all of them unless an error occurs).
    public func write(plaintext: UnsafeRawBufferPointer) throws(TLSError) -> Int {
        guard plaintext.count > 0, let base = plaintext.baseAddress else { return 0 }
        ERR_clear_error()
        var written = 0
        while written < plaintext.count {
            let chunk = Int32(min(plaintext.count - written, 1 << 30))
            let rc = SSL_write(ssl, base + written, chunk)
            if rc > 0 {
                written += Int(rc)
                continue
            }
            let error = SSL_get_error(ssl, rc)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { break }
            throw TLSError(.ioFailed, "SSL_write failed (\(error))", openSSLErrors: TLSError.drainErrors())
        }
        return written
    }

    /// Decrypts into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .bytes(0) }
        ERR_clear_error()
        let rc = SSL_read(ssl, base, Int32(min(buffer.count, Int(Int32.max))))
        if rc > 0 { return .bytes(Int(rc)) }
        let error = SSL_get_error(ssl, rc)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantMore
        case SSL_ERROR_ZERO_RETURN: return .closed
        default:
            let queue = TLSError.drainErrors()
            if error == SSL_ERROR_SYSCALL || queue.contains(where: { $0.contains("unexpected eof") }) {
                return .failed(TLSError(.unexpectedEOF, "peer closed without close_notify", openSSLErrors: queue))
            }
            return .failed(TLSError(.ioFailed, "SSL_read failed (\(error))", openSSLErrors: queue))
        }
    }

    /// Queues close_notify (send it with `takeCiphertext`).
    public func shutdown() {
        ERR_clear_error()
        // The return value says whether the peer's close_notify arrived too; we do not wait for it.
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }
}

@available(*, unavailable)
extension TLSSession: Sendable {}
