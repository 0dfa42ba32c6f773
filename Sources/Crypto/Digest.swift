internal import COpenSSL

/// A hash algorithm libcrypto provides.
public enum DigestAlgorithm: Sendable {
    case sha1, sha256, md5

    /// Output length in bytes.
    public var byteCount: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        case .md5: 16
        }
    }

    var evp: OpaquePointer {
        // EVP_sha1/sha256/md5 return static tables owned by libcrypto; they are never nil.
        switch self {
        case .sha1: EVP_sha1()!
        case .sha256: EVP_sha256()!
        case .md5: EVP_md5()!
        }
    }
}

/// An incremental hash (one owner; not thread-safe). Wraps an `EVP_MD_CTX` freed in `deinit`.
public final class Hasher {
    private let context: OpaquePointer
    /// The algorithm this hasher computes.
    public let algorithm: DigestAlgorithm

    /// Starts a new hash computation.
    public init(_ algorithm: DigestAlgorithm) {
        self.algorithm = algorithm
        // EVP_MD_CTX_new fails only on allocation failure, which we treat as fatal like any allocation.
        guard let context = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new: out of memory") }
        self.context = context
        // EVP_DigestInit_ex fails only for an unusable algorithm table: a build problem, not input.
        precondition(EVP_DigestInit_ex(context, algorithm.evp, nil) == 1, "EVP_DigestInit_ex failed")
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Adds bytes to the hash.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// Adds bytes to the hash.
    public func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes and returns the digest; the hasher must not be used afterwards.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &out, &length) == 1, "EVP_DigestFinal_ex failed")
        return Array(out.prefix(Int(length)))
    }
}

/// Types whose bytes can be read contiguously (arrays, slices, UTF-8 views of native strings).
public protocol ContiguousBytes {
    /// Calls `body` with the bytes.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
extension UnsafeRawBufferPointer: ContiguousBytes {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}
extension String: ContiguousBytes {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Array(utf8).withUnsafeBytes(body)
    }
}

/// One-shot digests.
public enum Digest {
    /// SHA-1 (only for the WebSocket handshake, where RFC 6455 mandates it).
    public static func sha1(_ bytes: some ContiguousBytes) -> [UInt8] { hash(.sha1, bytes) }
    /// SHA-256.
    public static func sha256(_ bytes: some ContiguousBytes) -> [UInt8] { hash(.sha256, bytes) }
    /// MD5 (only for S3 ETags and Content-MD5).
    public static func md5(_ bytes: some ContiguousBytes) -> [UInt8] { hash(.md5, bytes) }

    /// The digest of `bytes` under `algorithm`.
    public static func hash(_ algorithm: DigestAlgorithm, _ bytes: some ContiguousBytes) -> [UInt8] {
        let hasher = Hasher(algorithm)
        hasher.update(bytes)
        return hasher.finalize()
    }
}

/// Hex encoding helpers.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lower-case hex text of `bytes`.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes from hex text (either case); `nil` for odd length or a non-hex character.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
