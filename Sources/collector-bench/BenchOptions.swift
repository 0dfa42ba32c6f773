import Foundation

/// `--name value` options for benchmark modes.
struct BenchOptions {
    private var values: [String: String] = [:]

    init(_ arguments: [String]) {
        var index = 0
        while index < arguments.count {
            let key = arguments[index]
            guard key.hasPrefix("--") else {
                fail("unexpected argument \(key)")
            }
            if index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") {
                values[String(key.dropFirst(2))] = arguments[index + 1]
                index += 2
            } else {
                values[String(key.dropFirst(2))] = "true"
                index += 1
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    func int(_ name: String, default value: Int) -> Int {
        guard let text = values[name] else { return value }
        guard let parsed = Int(text.replacingOccurrences(of: "_", with: "")) else {
            fail("--\(name) must be an integer")
        }
        return parsed
    }
}

func fail(_ message: String) -> Never {
    let hint = message.contains("--help") ? "" : " (see collector-bench --help)"
    FileHandle.standardError.write(Data("collector-bench: \(message)\(hint)\n".utf8))
    exit(64)
}
