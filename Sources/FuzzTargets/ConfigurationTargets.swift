import Configuration

// The configuration file: the TOML reader (an accepted document, written out again, reads back to
// the same tables) and the settings built from it (deterministic, flags win, reported lines exist).
extension FuzzTarget {
    static let configurationTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "toml",
            summary: "TOML reader: nesting within limits, error lines exist, an accepted file re-encodes to itself"
        ) { input throws(FuzzFinding) in try TOMLFuzz.check(input) },
        FuzzTarget(
            name: "settings",
            summary: "settings from a file: deterministic, flags override the file, reported lines exist"
        ) { input throws(FuzzFinding) in try TOMLFuzz.checkSettings(input) },
    ]
}

enum TOMLFuzz {
    static func check(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "toml"
        let text = String(decoding: input, as: UTF8.self)
        let lines = text.unicodeScalars.filter { $0 == "\n" }.count + 1
        let table: TOMLTable
        do {
            table = try TOML.parse(text)
        } catch {
            try require(
                error.line >= 1 && error.line <= lines, target, "error at line \(error.line) of \(lines): \(error)")
            return
        }
        try checkLines(table, lines: lines, target: target)
        var out = ""
        write(table, path: [], into: &out)
        let again: TOMLTable
        do {
            again = try TOML.parse(out)
        } catch {
            throw FuzzFinding(target: target, "re-encoded document refused (\(error)):\n\(out.prefix(400))")
        }
        try require(same(.table(table), .table(again)), target, "re-encoded document differs:\n\(out.prefix(400))")
    }

    /// Every value's line is a line of the file, and arrays nest within the limit.
    static func checkLines(_ table: TOMLTable, lines: Int, target: String) throws(FuzzFinding) {
        for key in table.keys {
            let line = table.line(of: key) ?? 0
            try require(line >= 1 && line <= lines, target, "key '\(key)' on line \(line) of \(lines)")
            guard let value = table[key] else { throw FuzzFinding(target: target, "listed key '\(key)' has no value") }
            try require(
                arrayDepth(value) <= TOML.Limits.maxArrayNesting, target, "arrays nested \(arrayDepth(value)) deep")
            switch value {
            case .table(let child): try checkLines(child, lines: lines, target: target)
            case .tableArray(let children):
                for child in children { try checkLines(child, lines: lines, target: target) }
            case .string, .integer, .float, .boolean, .array: break
            }
        }
    }

    static func arrayDepth(_ value: TOMLValue) -> Int {
        if case .array(let items) = value { return 1 + (items.map(arrayDepth).max() ?? 0) }
        return 0
    }

    /// Equal as documents: the same keys (in any order: a file may set a table's keys after its
    /// subtables' headers) with the same values.
    static func same(_ a: TOMLValue, _ b: TOMLValue) -> Bool {
        switch (a, b) {
        case (.table(let x), .table(let y)):
            return Set(x.keys) == Set(y.keys) && x.keys.allSatisfy { key in same(x[key]!, y[key]!) }
        case (.tableArray(let x), .tableArray(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { same(.table($0), .table($1)) }
        case (.array(let x), .array(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.float(let x), .float(let y)): return x.bitPattern == y.bitPattern
        default: return a == b
        }
    }

    /// Writes `table` (at `path`) as TOML: its plain keys, then its tables and arrays of tables.
    static func write(_ table: TOMLTable, path: [String], into out: inout String) {
        for key in table.keys {
            guard let value = table[key] else { continue }
            switch value {
            case .table, .tableArray: continue
            case .string, .integer, .float, .boolean, .array:
                out += quoted(key) + " = " + inline(value) + "\n"
            }
        }
        for key in table.keys {
            switch table[key] {
            case .table(let child)?:
                let childPath = path + [key]
                // A header only where the table holds plain keys or nothing: otherwise its subtables'
                // headers define it, as they did in the original.
                let hasPlain = child.keys.contains { key in
                    if case .table = child[key] { return false }
                    if case .tableArray = child[key] { return false }
                    return true
                }
                if hasPlain || child.keys.isEmpty { out += "[" + childPath.map(quoted).joined(separator: ".") + "]\n" }
                write(child, path: childPath, into: &out)
            case .tableArray(let children)?:
                let childPath = path + [key]
                for child in children {
                    out += "[[" + childPath.map(quoted).joined(separator: ".") + "]]\n"
                    write(child, path: childPath, into: &out)
                }
            default: continue
            }
        }
    }

    static func inline(_ value: TOMLValue) -> String {
        switch value {
        case .string(let text): quoted(text)
        case .integer(let number): String(number)
        case .float(let number): "\(number)"
        case .boolean(let flag): flag ? "true" : "false"
        case .array(let items): "[" + items.map(inline).joined(separator: ", ") + "]"
        case .table, .tableArray: "\"(table)\""  // never inside an array: the reader has no inline tables
        }
    }

    /// A basic string with every character that needs it escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    // MARK: - settings

    static func checkSettings(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "settings"
        let text = String(decoding: input, as: UTF8.self)
        let file = (path: "fuzz.toml", text: text)
        let first: Settings
        do {
            first = try Settings.load(file: file, environment: [:], flags: [:])
        } catch {
            try require(
                error.message.hasPrefix("fuzz.toml"), target, "a file error does not name the file: \(error.message)")
            return
        }
        let second: Settings
        do {
            second = try Settings.load(file: file, environment: [:], flags: [:])
        } catch {
            throw FuzzFinding(target: target, "the same file failed the second time: \(error)")
        }
        try require(first == second, target, "the same file gave different settings")
        // A flag beats the file.
        do {
            let flagged = try Settings.load(file: file, environment: [:], flags: ["http-port": "18123"])
            try require(flagged.httpPort == 18123, target, "--http-port lost to the file (\(flagged.httpPort))")
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            throw FuzzFinding(target: target, "a valid file plus --http-port 18123 was refused: \(error)")
        }
        // Every line the report names exists.
        let lines = text.unicodeScalars.filter { $0 == "\n" }.count + 1
        for row in Settings.report(first, file: file, environment: [:], flags: [:]) {
            let prefix = "fuzz.toml line "
            guard row.source.hasPrefix(prefix) else { continue }
            let number = Int(row.source.dropFirst(prefix.count)) ?? 0
            try require(number >= 1 && number <= lines, target, "\(row.name) reported on line \(number) of \(lines)")
        }
    }
}
