import Configuration
import Testing

@Suite struct TOMLTests {
    @Test func parsesTheSubsetWeUse() throws {
        let table = try TOML.parse(
            """
            # collector settings
            [collector]
            name = "edge-1"          # trailing comment
            literal = 'C:\\path'
            escaped = "tab\\there \\u00e9"

            [storage]
            batch_size = 1_000
            batch_timeout = 0.5
            enabled = true
            modes = ["local", "s3",
                     "both",]   # multi-line array

            [exchanges.okx]
            rest_url = "http://127.0.0.1:9000"

            [[markets]]
            symbols = ["BTC-USDT"]
            timeframes = ["1m", "1H"]

            [[markets]]
            exchange = "binance"
            symbols = ["btcusdt"]
            """)
        guard case .table(let collector)? = table["collector"] else {
            Issue.record("no [collector]")
            return
        }
        #expect(collector["name"] == .string("edge-1"))
        #expect(collector["literal"] == .string(#"C:\path"#))
        #expect(collector["escaped"] == .string("tab\there é"))
        guard case .table(let storage)? = table["storage"] else { return }
        #expect(storage["batch_size"] == .integer(1000))
        #expect(storage["batch_timeout"] == .float(0.5))
        #expect(storage["enabled"] == .boolean(true))
        #expect(storage["modes"] == .array([.string("local"), .string("s3"), .string("both")]))
        #expect(storage.line(of: "batch_timeout") == 9)
        guard case .table(let exchanges)? = table["exchanges"], case .table(let okx)? = exchanges["okx"] else {
            Issue.record("no [exchanges.okx]")
            return
        }
        #expect(okx["rest_url"] == .string("http://127.0.0.1:9000"))
        guard case .tableArray(let markets)? = table["markets"] else { return }
        #expect(markets.count == 2)
        #expect(markets[1]["exchange"] == .string("binance"))
        #expect(markets[0].line == 17)
    }

    @Test(arguments: [
        ("key = ", "line 1: expected a value"),
        ("key = value", "line 1: invalid value 'value' (strings need quotes)"),
        ("a = 1\na = 2", "line 2: key 'a' is defined twice"),
        ("[t]\n[t]", "line 2: table [t] is defined twice"),
        ("x = \"open", "line 1: unterminated string"),
        ("x = 1 2", "line 1: unexpected text after the value"),
        ("[t\nx = 1", "line 1: expected ']' to close the table header"),
        ("a.b = 1", "line 1: dotted keys are not supported; use a [table] header"),
        ("t = { a = 1 }", "line 1: inline tables are not supported; use a [table] header"),
        ("s = \"\"\"x\"\"\"", "line 1: multi-line strings are not supported"),
        ("d = 2024-01-01", "line 1: dates and times are not supported"),
        ("x = [1, 2", "line 1: unterminated array"),
        ("\n\nx = \"bad \\q\"", "line 3: unknown escape \\q"),
        ("a = 1\n[a]", "line 2: 'a' is already a integer, not a table"),
        ("= 3", "line 1: expected a key"),
    ])
    func malformedFilesNameTheLineAndTheProblem(text: String, message: String) {
        #expect(throws: TOMLError.self) { try TOML.parse(text) }
        do {
            _ = try TOML.parse(text)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func deeplyNestedArrayIsALineNumberedError() {
        // 100,000 levels used to overflow the stack while parsing.
        let depth = 100_000
        let text =
            "[collector]\nhttp_port = " + String(repeating: "[", count: depth) + "1"
            + String(repeating: "]", count: depth)
        #expect(throws: TOMLError(line: 2, "arrays nested deeper than \(TOML.Limits.maxArrayNesting)")) {
            try TOML.parse(text)
        }
    }

    @Test func arraysNestedToTheLimitStillParse() throws {
        let depth = TOML.Limits.maxArrayNesting
        let table = try TOML.parse("x = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
        var value = try #require(table["x"])
        var levels = 0
        while case .array(let items) = value {
            levels += 1
            guard let first = items.first else { break }
            value = first
        }
        #expect(levels == depth)
    }

    @Test func tableHeaderWithTooManyPartsIsALineNumberedError() {
        // 50,000 parts used to overflow the stack while building the nested tables.
        let header = "[" + Array(repeating: "a", count: 50_000).joined(separator: ".") + "]"
        #expect(throws: TOMLError(line: 3, "more than \(TOML.Limits.maxKeyParts) dotted key parts")) {
            try TOML.parse("x = 1\n\n" + header + "\ny = 2")
        }
        let arrayHeader = "[[" + Array(repeating: "a", count: 50_000).joined(separator: ".") + "]]"
        #expect(throws: TOMLError(line: 1, "more than \(TOML.Limits.maxKeyParts) dotted key parts")) {
            try TOML.parse(arrayHeader)
        }
    }

    @Test func headerWithTheMostPartsStillParses() throws {
        let parts = TOML.Limits.maxKeyParts
        let table = try TOML.parse("[" + Array(repeating: "a", count: parts).joined(separator: ".") + "]\nx = 1")
        var current = table
        for _ in 0..<parts {
            guard case .table(let child)? = current["a"] else {
                Issue.record("missing a nested table")
                return
            }
            current = child
        }
        #expect(current["x"] == .integer(1))
    }

    @Test func longDottedKeysAndInlineTablesAreErrorsNotCrashes() {
        // Neither is supported; both must fail on the first part rather than recurse.
        let key = Array(repeating: "a", count: 50_000).joined(separator: ".") + " = 1"
        #expect(throws: TOMLError(line: 2, "dotted keys are not supported; use a [table] header")) {
            try TOML.parse("[t]\n" + key)
        }
        let inline = "x = " + String(repeating: "{ a = ", count: 50_000)
        #expect(throws: TOMLError(line: 1, "inline tables are not supported; use a [table] header")) {
            try TOML.parse(inline)
        }
        let inlineInArray = "x = [" + String(repeating: "{ a = [", count: 50_000)
        #expect(throws: TOMLError(line: 1, "inline tables are not supported; use a [table] header")) {
            try TOML.parse(inlineInArray)
        }
    }
}
