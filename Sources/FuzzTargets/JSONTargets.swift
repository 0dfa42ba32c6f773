import WireCore

// The JSON scanner every exchange parser and state file reader walks: any document it accepts is
// read into a tree, written again with `JSONBytes`, and must read back to the same tree.
extension FuzzTarget {
    static let jsonTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "json",
            summary: "JSON scanner: depth within the limit, numbers valid, accepted text re-encodes to the same tree"
        ) { input throws(FuzzFinding) in try JSONFuzz.check(input) }
    ]
}

enum JSONFuzz {
    /// A document as the scanner reads it (strings decoded, numbers as their text).
    indirect enum Value: Equatable {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        case number(String)
        case bool(Bool)
        case null

        static func == (a: Value, b: Value) -> Bool {
            switch (a, b) {
            // Strings compare as bytes: String's `==` is canonical equivalence, which would let a
            // decoder that changes é's representation pass.
            case (.object(let x), .object(let y)):
                x.count == y.count && zip(x, y).allSatisfy { Array($0.0.utf8) == Array($1.0.utf8) && $0.1 == $1.1 }
            case (.array(let x), .array(let y)): x == y
            case (.string(let x), .string(let y)): Array(x.utf8) == Array(y.utf8)
            case (.number(let x), .number(let y)): x == y
            case (.bool(let x), .bool(let y)): x == y
            case (.null, .null): true
            default: false
            }
        }

        var depth: Int {
            switch self {
            case .object(let members): 1 + (members.map(\.1.depth).max() ?? 0)
            case .array(let elements): 1 + (elements.map(\.depth).max() ?? 0)
            case .string, .number, .bool, .null: 0
            }
        }
    }

    static func check(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "json"
        let read = input.withUnsafeBytes { bytes in
            Result { () throws(JSONError) in
                var scanner = JSONScanner(bytes)
                let value = try readValue(&scanner, bytes)
                try scanner.expectEnd()
                return value
            }
        }
        guard case .success(let value) = read else {
            if case .failure(let error) = read {
                try require(
                    error.offset >= 0 && error.offset <= input.count, target,
                    "error offset \(error.offset) outside \(input.count) bytes")
            }
            return
        }
        try require(value.depth <= JSONScanner.maxDepth, target, "accepted nesting \(value.depth)")
        try checkNumbers(value)
        var out = JSONBytes()
        write(value, into: &out)
        let again = out.bytes.withUnsafeBytes { bytes in
            Result { () throws(JSONError) in
                var scanner = JSONScanner(bytes)
                let value = try readValue(&scanner, bytes)
                try scanner.expectEnd()
                return value
            }
        }
        switch again {
        case .success(let reread):
            try require(reread == value, target, "re-encoded \(value) read back as \(reread)")
        case .failure(let error):
            throw FuzzFinding(target: target, "re-encoded text \(out.bytes.prefix(80)) was refused: \(error)")
        }
    }

    static func readValue(_ scanner: inout JSONScanner, _ bytes: UnsafeRawBufferPointer) throws(JSONError) -> Value {
        switch scanner.peek() {
        case UInt8(ascii: "{")?:
            var members: [(String, Value)] = []
            try scanner.readObject { key, s throws(JSONError) in
                members.append((s.string(key), try readValue(&s, bytes)))
            }
            return .object(members)
        case UInt8(ascii: "[")?:
            var elements: [Value] = []
            try scanner.readArray { _, s throws(JSONError) in elements.append(try readValue(&s, bytes)) }
            return .array(elements)
        case UInt8(ascii: "\"")?:
            return .string(try scanner.readString())
        case UInt8(ascii: "t")?, UInt8(ascii: "f")?:
            return .bool(try scanner.readBool())
        case UInt8(ascii: "n")?:
            if scanner.readNullIfPresent() { return .null }
            try scanner.skipValue()  // throws: "expected null"
            return .null
        default:
            let range = try scanner.readNumberText()
            return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
        }
    }

    /// Every number the grammar accepted is a number; integers agree with `parseInt64`.
    static func checkNumbers(_ value: Value) throws(FuzzFinding) {
        switch value {
        case .object(let members): for (_, member) in members { try checkNumbers(member) }
        case .array(let elements): for element in elements { try checkNumbers(element) }
        case .number(let text):
            try require(Double(text) != nil, "json", "accepted number \(text) is not a number")
            let isInteger = !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
            let parsed = Array(text.utf8).withUnsafeBytes { JSONScanner.parseInt64($0) }
            if isInteger {
                // At most 19 digits are read; Int64's own parser is the oracle within that.
                let digits = text.hasPrefix("-") ? text.dropFirst().count : text.count
                let expected = digits <= 19 ? Int64(text) : nil
                try require(
                    parsed == expected, "json",
                    "parseInt64(\(text)) = \(String(describing: parsed)), expected \(String(describing: expected))")
            } else {
                try require(parsed == nil, "json", "parseInt64 read the non-integer \(text) as \(parsed ?? 0)")
            }
        case .string, .bool, .null: break
        }
    }

    static func write(_ value: Value, into out: inout JSONBytes) {
        switch value {
        case .object(let members):
            out.raw("{")
            for (index, (key, member)) in members.enumerated() {
                if index > 0 { out.raw(",") }
                out.quoted(key)
                out.raw(":")
                write(member, into: &out)
            }
            out.raw("}")
        case .array(let elements):
            out.raw("[")
            for (index, element) in elements.enumerated() {
                if index > 0 { out.raw(",") }
                write(element, into: &out)
            }
            out.raw("]")
        case .string(let text): out.quoted(text)
        case .number(let text): out.raw(text)
        case .bool(let flag): out.bool(flag)
        case .null: out.raw("null")
        }
    }
}
