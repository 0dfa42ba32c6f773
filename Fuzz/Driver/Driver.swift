// The libFuzzer driver: one binary for every target, chosen by FUZZ_TARGET. Built only by
// `cluster/fuzz.sh` (COLLECTOR_FUZZ=1 swift build --sanitize=fuzzer,address), never by the product.
import FuzzTargets
import Glibc

/// Writes one line to standard error.
private func report(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    let names = FuzzTarget.all.map(\.name).joined(separator: " ")
    guard let raw = getenv("FUZZ_TARGET") else {
        report("collector-fuzz: set FUZZ_TARGET to one of: \(names)")
        exit(64)
    }
    let name = String(cString: raw)
    if name == "list" {
        for target in FuzzTarget.all { print(target.name + "  " + target.summary) }
        exit(0)
    }
    guard let target = FuzzTarget.named(name) else {
        report("collector-fuzz: no target \(name); targets: \(names)")
        exit(64)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selected else { return -1 }
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        try target.run(bytes)
    } catch {
        report("collector-fuzz: FINDING \(error)")
        abort()
    }
    return 0
}
