import WireCore

/// Re-exposes WireCore's validator under a local name (WireCore stays an implementation detail).
enum WireCoreUTF8 {
    static func isValid(_ bytes: [UInt8]) -> Bool { UTF8Validation.isValid(bytes) }
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool { UTF8Validation.isValid(bytes) }
}
