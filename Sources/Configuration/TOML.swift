/// A TOML value with the line it was defined on.
public indirect enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
    case table(TOMLTable)
    case tableArray([TOMLTable])

    /// The TOML type name, for error messages.
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .array: "array"
        case .table: "table"
        case .tableArray: "array of tables"
        }
    }
}

/// A TOML table: keys in definition order, each with its value and line.
public struct TOMLTable: Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var storage: [String: (value: TOMLValue, line: Int)] = [:]
    /// Line of the table header (0 for the root).
    public var line: Int

    public init(line: Int = 0) { self.line = line }

    public subscript(key: String) -> TOMLValue? { storage[key]?.value }

    /// The line where `key` was set.
    public func line(of key: String) -> Int? { storage[key]?.line }

    mutating func set(_ key: String, _ value: TOMLValue, line: Int) {
        if storage[key] == nil { keys.append(key) }
        storage[key] = (value, line)
    }

    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        lhs.keys == rhs.keys && lhs.keys.allSatisfy { lhs.storage[$0]?.value == rhs.storage[$0]?.value }
    }
}

/// A syntax error, with its 1-based line.
public struct TOMLError: Error, Equatable, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public init(line: Int, _ message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { "line \(line): \(message)" }
}

/// Parses the TOML subset the collector uses. Unsupported features (inline tables, dotted keys,
/// multi-line strings, dates) are errors that say so, never silently misread.
public enum TOML {
    /// Nesting limits. The parser and the table builder recurse once per level, so each limit keeps a
    /// hostile or corrupt file to an error with a line number instead of a stack overflow.
    public enum Limits {
        /// Array nesting depth. Our settings nest arrays one level deep; 64 is the same bound as
        /// `JSONScanner.maxDepth` and needs only a few KiB of stack on any thread.
        public static let maxArrayNesting = 64
        /// Parts of a dotted table-header key (`[a.b.c]`). Our deepest is `[exchanges.okx]` (2); 32 leaves
        /// room for any layout while bounding the recursion that builds the nested tables.
        public static let maxKeyParts = 32
    }

    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = Parser(text: Array(text.unicodeScalars))
        return try parser.parseDocument()
    }

    struct Parser {
        let text: [Unicode.Scalar]
        var i = 0
        var line = 1
        var root = TOMLTable()
        /// Path of the current table; `arrayIndex` set when it is an element of an array of tables.
        var currentPath: [String] = []
        var definedTables: Set<String> = []
        /// Arrays open around the value being parsed (bounded by `Limits.maxArrayNesting`).
        var arrayDepth = 0

        init(text: [Unicode.Scalar]) { self.text = text }

        var atEnd: Bool { i >= text.count }
        var peek: Unicode.Scalar? { i < text.count ? text[i] : nil }

        func fail(_ message: String) -> TOMLError { TOMLError(line: line, message) }

        mutating func skipSpaces() {
            while let c = peek, c == " " || c == "\t" { i += 1 }
        }

        mutating func skipComment() {
            if peek == "#" { while let c = peek, c != "\n" { i += 1 } }
        }

        /// After a value or header: only spaces and a comment may remain on the line.
        mutating func endLine() throws(TOMLError) {
            skipSpaces()
            skipComment()
            if peek == "\r" { i += 1 }
            guard atEnd || peek == "\n" else { throw fail("unexpected text after the value") }
            if peek == "\n" {
                i += 1
                line += 1
            }
        }

        mutating func parseDocument() throws(TOMLError) -> TOMLTable {
            while !atEnd {
                skipSpaces()
                guard let c = peek else { break }
                if c == "\n" {
                    i += 1
                    line += 1
                    continue
                }
                if c == "\r" || c == "#" {
                    try endLine()
                    continue
                }
                if c == "[" {
                    try parseHeader()
                } else {
                    try parseKeyValue()
                }
            }
            return root
        }

        mutating func parseHeader() throws(TOMLError) {
            i += 1
            let isArray = peek == "["
            if isArray { i += 1 }
            var path: [String] = []
            while true {
                skipSpaces()
                path.append(try parseKey())
                skipSpaces()
                if peek == "." {
                    guard path.count < Limits.maxKeyParts else {
                        throw fail("more than \(Limits.maxKeyParts) dotted key parts")
                    }
                    i += 1
                    continue
                }
                break
            }
            guard peek == "]" else { throw fail("expected ']' to close the table header") }
            i += 1
            if isArray {
                guard peek == "]" else { throw fail("expected ']]' to close the array-of-tables header") }
                i += 1
            }
            let name = path.joined(separator: ".")
            if isArray {
                try appendArrayTable(path)
            } else {
                guard !definedTables.contains(name) else { throw fail("table [\(name)] is defined twice") }
                definedTables.insert(name)
                try ensureTable(path)
            }
            currentPath = path
            try endLine()
        }

        mutating func parseKeyValue() throws(TOMLError) {
            let key = try parseKey()
            skipSpaces()
            if peek == "." { throw fail("dotted keys are not supported; use a [table] header") }
            guard peek == "=" else { throw fail("expected '=' after key '\(key)'") }
            i += 1
            skipSpaces()
            let valueLine = line
            let value = try parseValue()
            try endLine()
            try insert(key, value, line: valueLine)
        }

        mutating func parseKey() throws(TOMLError) -> String {
            if peek == "\"" { return try parseBasicString() }
            if peek == "'" { return try parseLiteralString() }
            var key = ""
            while let c = peek,
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
            {
                key.unicodeScalars.append(c)
                i += 1
            }
            guard !key.isEmpty else { throw fail("expected a key") }
            return key
        }

        mutating func parseValue() throws(TOMLError) -> TOMLValue {
            guard let c = peek else { throw fail("expected a value") }
            switch c {
            case "\"":
                if i + 2 < text.count && text[i + 1] == "\"" && text[i + 2] == "\"" {
                    throw fail("multi-line strings are not supported")
                }
                return .string(try parseBasicString())
            case "'": return .string(try parseLiteralString())
            case "[": return try parseArray()
            case "{": throw fail("inline tables are not supported; use a [table] header")
            case "t", "f":
                if match("true") { return .boolean(true) }
                if match("false") { return .boolean(false) }
                throw fail("expected a value")
            default:
                return try parseNumber()
            }
        }

        mutating func match(_ word: String) -> Bool {
            let scalars = Array(word.unicodeScalars)
            guard i + scalars.count <= text.count, Array(text[i..<i + scalars.count]) == scalars else { return false }
            let after = i + scalars.count < text.count ? text[i + scalars.count] : " "
            guard !(after >= "a" && after <= "z") else { return false }
            i += scalars.count
            return true
        }

        mutating func parseBasicString() throws(TOMLError) -> String {
            i += 1
            var out = ""
            while let c = peek {
                i += 1
                switch c {
                case "\"": return out
                case "\n": throw fail("newline in a string")
                case "\\":
                    guard let e = peek else { throw fail("unterminated string") }
                    i += 1
                    switch e {
                    case "n": out += "\n"
                    case "t": out += "\t"
                    case "r": out += "\r"
                    case "\\": out += "\\"
                    case "\"": out += "\""
                    case "u", "U":
                        let width = e == "u" ? 4 : 8
                        guard i + width <= text.count,
                            let v = UInt32(String(String.UnicodeScalarView(text[i..<i + width])), radix: 16),
                            let scalar = Unicode.Scalar(v)
                        else { throw fail("bad \\\(e) escape") }
                        out.unicodeScalars.append(scalar)
                        i += width
                    default: throw fail("unknown escape \\\(e)")
                    }
                default:
                    out.unicodeScalars.append(c)
                }
            }
            throw fail("unterminated string")
        }

        mutating func parseLiteralString() throws(TOMLError) -> String {
            i += 1
            var out = ""
            while let c = peek {
                i += 1
                if c == "'" { return out }
                if c == "\n" { throw fail("newline in a string") }
                out.unicodeScalars.append(c)
            }
            throw fail("unterminated string")
        }

        mutating func parseArray() throws(TOMLError) -> TOMLValue {
            arrayDepth += 1
            defer { arrayDepth -= 1 }
            guard arrayDepth <= Limits.maxArrayNesting else {
                throw fail("arrays nested deeper than \(Limits.maxArrayNesting)")
            }
            i += 1
            var items: [TOMLValue] = []
            while true {
                skipArrayWhitespace()
                if peek == "]" {
                    i += 1
                    return .array(items)
                }
                guard !atEnd else { throw fail("unterminated array") }
                items.append(try parseValue())
                skipArrayWhitespace()
                if peek == "," {
                    i += 1
                    continue
                }
                guard !atEnd else { throw fail("unterminated array") }
                guard peek == "]" else { throw fail("expected ',' or ']' in array") }
            }
        }

        mutating func skipArrayWhitespace() {
            while let c = peek {
                if c == " " || c == "\t" || c == "\r" {
                    i += 1
                } else if c == "\n" {
                    i += 1
                    line += 1
                } else if c == "#" {
                    skipComment()
                } else {
                    return
                }
            }
        }

        mutating func parseNumber() throws(TOMLError) -> TOMLValue {
            var raw = ""
            while let c = peek,
                (c >= "0" && c <= "9") || c == "+" || c == "-" || c == "." || c == "_" || c == "e" || c == "E"
                    || (c >= "a" && c <= "z")
            {
                raw.unicodeScalars.append(c)
                i += 1
            }
            guard !raw.isEmpty else { throw fail("expected a value") }
            if raw.contains(":") || (raw.count >= 10 && raw.dropFirst(4).first == "-") {
                throw fail("dates and times are not supported")
            }
            let digits = raw.replacingUnderscores()
            if let v = Int64(digits), !raw.hasPrefix("_"), !raw.hasSuffix("_") { return .integer(v) }
            if digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let v = Double(digits), v.isFinite,
                !digits.hasPrefix("."), !digits.hasSuffix(".")
            {
                return .float(v)
            }
            throw fail("invalid value '\(raw)' (strings need quotes)")
        }

        // MARK: Building tables

        mutating func ensureTable(_ path: [String]) throws(TOMLError) {
            root = try Self.ensuring(path[...], in: root, line: line)
        }

        static func ensuring(_ path: ArraySlice<String>, in table: TOMLTable, line: Int) throws(TOMLError) -> TOMLTable
        {
            guard let head = path.first else { return table }
            var table = table
            var child: TOMLTable
            switch table[head] {
            case nil: child = TOMLTable(line: line)
            case .table(let existing)?: child = existing
            case .tableArray(var items)?:
                guard let last = items.popLast() else { child = TOMLTable(line: line); break }
                let updated = try ensuring(path.dropFirst(), in: last, line: line)
                items.append(updated)
                table.set(head, .tableArray(items), line: table.line(of: head) ?? line)
                return table
            case let other?:
                throw TOMLError(line: line, "'\(head)' is already a \(other.typeName), not a table")
            }
            child = try ensuring(path.dropFirst(), in: child, line: line)
            table.set(head, .table(child), line: table.line(of: head) ?? line)
            return table
        }

        mutating func appendArrayTable(_ path: [String]) throws(TOMLError) {
            let parent = Array(path.dropLast())
            let name = path.last!  // a header always has at least one key
            try ensureTable(parent)
            root = try Self.modifying(parent[...], in: root, line: line) { table throws(TOMLError) in
                switch table[name] {
                case nil: table.set(name, .tableArray([TOMLTable(line: line)]), line: line)
                case .tableArray(var items)?:
                    items.append(TOMLTable(line: line))
                    table.set(name, .tableArray(items), line: table.line(of: name) ?? line)
                case let other?:
                    throw TOMLError(line: line, "'\(name)' is already a \(other.typeName), not an array of tables")
                }
            }
        }

        mutating func insert(_ key: String, _ value: TOMLValue, line valueLine: Int) throws(TOMLError) {
            root = try Self.modifying(currentPath[...], in: root, line: valueLine) { table throws(TOMLError) in
                guard table[key] == nil else { throw TOMLError(line: valueLine, "key '\(key)' is defined twice") }
                table.set(key, value, line: valueLine)
            }
        }

        /// Applies `body` to the table at `path` (descending into the last element of arrays of tables).
        static func modifying(
            _ path: ArraySlice<String>, in table: TOMLTable, line: Int,
            _ body: (inout TOMLTable) throws(TOMLError) -> Void
        ) throws(TOMLError) -> TOMLTable {
            var table = table
            guard let head = path.first else {
                try body(&table)
                return table
            }
            switch table[head] {
            case .table(let child)?:
                table.set(
                    head, .table(try modifying(path.dropFirst(), in: child, line: line, body)),
                    line: table.line(of: head) ?? line)
            case .tableArray(var items)?:
                guard let last = items.popLast() else { throw TOMLError(line: line, "empty array of tables") }
                items.append(try modifying(path.dropFirst(), in: last, line: line, body))
                table.set(head, .tableArray(items), line: table.line(of: head) ?? line)
            default:
                throw TOMLError(line: line, "'\(head)' is not a table")
            }
            return table
        }
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(unicodeScalars.filter { $0 != "_" }.map(Character.init))
    }
}
