internal import COpenSSL

/// HMAC (RFC 2104) over libcrypto.
public enum HMAC {
    /// HMAC-SHA256 of `message` under `key`.
    public static func sha256(key: some ContiguousBytes, message: some ContiguousBytes) -> [UInt8] {
        authenticationCode(.sha256, key: key, message: message)
    }

    /// The HMAC of `message` under `key` with `algorithm`.
    public static func authenticationCode(
        _ algorithm: DigestAlgorithm, key: some ContiguousBytes, message: some ContiguousBytes
    ) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                // A zero-length key or message still needs a non-nil pointer for libcrypto.
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { scratch in
                    COpenSSL.HMAC(
                        algorithm.evp,
                        keyBytes.baseAddress ?? UnsafeRawPointer(scratch.baseAddress!), Int32(keyBytes.count),
                        messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
                            ?? UnsafePointer(scratch.baseAddress!),
                        messageBytes.count, &out, &length)
                }
            }
        }
        precondition(result != nil, "HMAC failed: libcrypto could not compute a MAC")
        return Array(out.prefix(Int(length)))
    }

    /// Compares two MACs in time independent of where they differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
