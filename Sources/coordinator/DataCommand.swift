// `coordinator data list|export`: what is stored, without psql, through the API of a running
// collector or coordinator (COORDINATOR_URL, default http://127.0.0.1:8000).
import Foundation
import HTTP1Protocol
import Locking
import Runtime
import Synchronization

let dataUsage = """
    usage: coordinator data list [--json]                    stored streams: rows, first and last time
           coordinator data export SYMBOL FEED [--start T] [--end T] [--exchange okx] [--format csv|jsonl]
                                                             a range on stdout, oldest first
      FEED       a timeframe (1m, 1H…), candles:1m, trades, book, book:5 or ticker
      T          ISO-8601 (2026-11-21T00:00:00Z) or epoch milliseconds; default: everything stored
      --format   csv (a header line, then one row per event; book levels as JSON arrays) or jsonl
                 (one JSON object per line, the API's row shape: ready for pyarrow/DuckDB read_json)
      --url URL  the API (default COORDINATOR_URL, else http://127.0.0.1:8000)
    exit codes: 0 done, 1 refused or unreachable (the API's message on stderr), 64 bad usage.
    """

/// Runs `data list` or `data export` and exits.
func runDataCommand(_ rest: [String], environment: [String: String]) -> Never {
    var arguments = rest
    guard let sub = arguments.first else { dataUsageError("data needs list or export") }
    arguments.removeFirst()
    if sub == "--help" || sub == "-h" || arguments.contains("--help") || arguments.contains("-h") {
        print(dataUsage)
        exit(0)
    }
    var url = environment["COORDINATOR_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8000"
    var options: [String: String] = [:]
    var json = false
    var positional: [String] = []
    while !arguments.isEmpty {
        let argument = arguments.removeFirst()
        switch argument {
        case "--json" where sub == "list": json = true
        case "--url", "--start", "--end", "--exchange", "--format":
            guard let value = arguments.first, !value.hasPrefix("--") else {
                dataUsageError("\(argument) needs a value")
            }
            arguments.removeFirst()
            if argument == "--url" { url = value } else { options[String(argument.dropFirst(2))] = value }
        default:
            guard !argument.hasPrefix("--") else { dataUsageError("unknown option \(argument) of data \(sub)") }
            positional.append(argument)
        }
    }
    guard let base = APIBase(url) else { dataUsageError("--url must be http://HOST[:PORT], got \(url)") }
    switch sub {
    case "list":
        guard positional.isEmpty, options.isEmpty else { dataUsageError("data list takes only --json and --url") }
        let document = fetchObject("/api/v1/data", base: base, url: url)
        if json {
            print(String(decoding: jsonData(document), as: UTF8.self))
            exit(0)
        }
        let streams = document["streams"] as? [[String: Any]] ?? []
        guard !streams.isEmpty else {
            print("nothing stored yet")
            exit(0)
        }
        var rows = [["STREAM", "ROWS", "FIRST", "LAST", "SUBSCRIBED"]]
        for s in streams {
            rows.append([
                s["stream"] as? String ?? "?", "\(s["rows"] as? Int ?? 0)", s["first"] as? String ?? "",
                s["last"] as? String ?? "", (s["subscribed"] as? Bool ?? false) ? "yes" : "no",
            ])
        }
        print(table(rows))
        exit(0)
    case "export":
        guard positional.count == 2 else { dataUsageError("data export needs SYMBOL FEED") }
        let format = options["format"] ?? "csv"
        guard format == "csv" || format == "jsonl" else { dataUsageError("--format must be csv or jsonl") }
        exportRange(
            symbol: positional[0], feed: positional[1], options: options, format: format, base: base, url: url)
    default:
        dataUsageError("unknown data command \(sub): list or export")
    }
}

/// Pages `/api/v1/data/SYMBOL/FEED` from `--start` to `--end` (5,000 rows a page), each page
/// starting at the last one's final time; rows already written at that instant are skipped.
func exportRange(
    symbol: String, feed: String, options: [String: String], format: String, base: APIBase, url: String
) -> Never {
    let limit = 5000
    var start = options["start"] ?? "0"
    let end = options["end"]
    let exchange = options["exchange"] ?? "okx"
    var columns: [String]?
    var written = 0
    var boundary: (time: String, rows: Set<String>) = ("", [])
    var pages = 0
    while true {
        var query = "start=\(queryEncoded(start))&limit=\(limit)&exchange=\(queryEncoded(exchange))"
        if let end { query += "&end=\(queryEncoded(end))" }
        let page = fetchObject(
            "/api/v1/data/\(percentEncoded(symbol))/\(percentEncoded(feed))?\(query)", base: base, url: url)
        guard let key = ["candles", "trades", "book", "tickers"].first(where: { page[$0] != nil }),
            let rows = page[key] as? [[String: Any]]
        else { operatorFailure("the API's page has no rows array") }
        let timeKey = key == "candles" ? "open_time" : "timestamp_exchange"
        var next = boundary
        for row in rows {
            let line = String(decoding: jsonData(row), as: UTF8.self)
            let time = row[timeKey] as? String ?? ""
            // A row's identity in its table (a forming candle may change between two pages).
            let identity: String
            switch key {
            case "candles": identity = time
            case "trades": identity = row["trade_id"] as? String ?? line
            case "book": identity = "\(row["seq"] ?? "")|\(row["action"] ?? "")"
            default: identity = line
            }
            if time == boundary.time, boundary.rows.contains(identity) { continue }
            if time != next.time { next = (time, []) }
            next.rows.insert(identity)
            if format == "jsonl" {
                print(line)
            } else {
                if columns == nil {
                    columns = row.keys.sorted()
                    print(columns!.map(csvField).joined(separator: ","))
                }
                print(columns!.map { csvField(row[$0]) }.joined(separator: ","))
            }
            written += 1
        }
        pages += 1
        if pages % 20 == 0 {
            FileHandle.standardError.write(Data("coordinator: exported \(written) rows, up to \(next.time)\n".utf8))
        }
        guard rows.count == limit else { break }
        guard next.time != boundary.time || next.rows.count > boundary.rows.count else {
            operatorFailure("more than \(limit) rows share the instant \(next.time): cannot page past it")
        }
        start = next.time
        boundary = next
    }
    FileHandle.standardError.write(Data("coordinator: exported \(written) rows\n".utf8))
    exit(0)
}

/// One CSV field (RFC 4180): strings as they are, numbers and booleans as JSON writes them, arrays
/// (book levels) as JSON text; quoted when they hold a comma, quote or line break.
func csvField(_ value: Any?) -> String {
    let text: String
    switch value {
    case nil, is NSNull: text = ""
    case let s as String: text = s
    // A JSON boolean is an NSNumber of type "c"; 0 and 1 would also cast to Bool.
    case let n as NSNumber: text = String(cString: n.objCType) == "c" ? (n.boolValue ? "true" : "false") : n.stringValue
    case let other?: text = String(decoding: jsonData(other), as: UTF8.self)
    }
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

func jsonData(_ object: Any) -> Data {
    do {
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    } catch {
        operatorFailure("cannot write JSON: \(error)")
    }
}

func queryEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~:")))
        ?? text
}

/// One event loop for every request of this invocation (pages of an export reuse it).
let sharedCLILoop = Locked<EventLoop?>(nil)
func cliLoop() throws -> EventLoop {
    try sharedCLILoop.withLock { current in
        if let current { return current }
        let loop = try EventLoop.start(name: "coordinator-cli")
        current = loop
        return loop
    }
}

/// GET `path`; a JSON object back, or exit 1 naming the API's refusal.
func fetchObject(_ path: String, base: APIBase, url: String) -> [String: Any] {
    let response: HTTPResponse
    do {
        response = try send(("GET", path, nil), to: base, token: nil, loop: cliLoop())
    } catch {
        operatorFailure("cannot reach the API at \(url): \(error)")
    }
    let object: [String: Any]?
    do {
        object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
    } catch {
        object = nil
    }
    guard (200..<300).contains(response.head.status) else {
        let message = object?["error"] as? String ?? String(decoding: response.body.prefix(200), as: UTF8.self)
        operatorFailure("refused (HTTP \(response.head.status)): \(message)")
    }
    guard let object else { operatorFailure("the API's answer is not a JSON object") }
    return object
}

func dataUsageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("coordinator: \(message) (see coordinator data --help)\n".utf8))
    exit(64)
}
