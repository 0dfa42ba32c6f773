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
    // Strings are built inside the functions that report them, so nothing is live at `exit`
    // (LeakSanitizer would report it and turn the exit status into a failure).
    guard let raw = getenv("FUZZ_TARGET") else { refuse("set FUZZ_TARGET to one of:") }
    if strcmp(raw, "list") == 0 {
        printTargets()
        exit(0)
    }
    guard let target = FuzzTarget.named(String(cString: raw)) else { refuse("no such target; targets:") }
    selected = target
    return 0
}

private func printTargets() {
    for target in FuzzTarget.all { print(target.name + "  " + target.summary) }
}

private func refuse(_ what: String) -> Never {
    report("collector-fuzz: \(what) \(FuzzTarget.all.map(\.name).joined(separator: " "))")
    exit(64)
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
