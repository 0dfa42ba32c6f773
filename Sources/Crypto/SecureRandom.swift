internal import COpenSSL

/// Cryptographically secure random bytes from OpenSSL's `RAND_bytes`.
///
/// Drivers draw nonces, WebSocket keys and masks here and pass them into pure machines (STYLE.md §3).
public enum SecureRandom {
    /// `count` random bytes. A failure of the system's CSPRNG is unrecoverable, so it traps.
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        precondition(RAND_bytes(&out, Int32(count)) == 1, "RAND_bytes failed: no entropy available")
        return out
    }

    /// A random 32-bit value.
    public static func uint32() -> UInt32 {
        bytes(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// A random 64-bit value.
    public static func uint64() -> UInt64 {
        bytes(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
