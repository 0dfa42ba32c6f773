// The operator CLI (issue 11): `coordinator status|drain|cordon|uncordon|rebalance|move` against
// the coordinator's API at COORDINATOR_URL (default http://127.0.0.1:8000).
import Foundation
import HTTP1Protocol
import Locking
import Runtime
import Synchronization

let operatorUsage = """
    usage: coordinator status [--shards] [--json]      the workers (and, with --shards, every shard)
           coordinator drain|cordon|uncordon WORKER    move its shards away / take no new ones / undo
           coordinator rebalance pause|resume          stop or restart balancing moves
           coordinator move SHARD --to WORKER          move one shard, make-before-break
      --url URL    the coordinator's API (default COORDINATOR_URL, else http://127.0.0.1:8000)
    Mutating commands send API_TOKEN (or the contents of API_TOKEN_FILE) as a bearer token.
    exit codes: 0 done (status: healthy), 1 refused or unreachable, 2 status: a shard unowned or a
    lease expired, 64 bad usage.
    """

/// Runs one operator command and exits.
func runOperatorCommand(_ command: String, _ rest: [String], environment: [String: String]) -> Never {
    operatorCommandName = command
    var arguments = rest
    var url = environment["COORDINATOR_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8000"
    var flags: Set<String> = []
    var target: String?
    var positional: [String] = []
    while !arguments.isEmpty {
        let argument = arguments.removeFirst()
        switch argument {
        case "--help", "-h":
            print(operatorUsage)
            exit(0)
        case "--url":
            guard !arguments.isEmpty else { operatorUsageError("--url needs a value") }
            url = arguments.removeFirst()
        case "--to":
            guard !arguments.isEmpty else { operatorUsageError("--to needs a worker id") }
            target = arguments.removeFirst()
        case "--shards", "--json":
            guard command == "status" else { operatorUsageError("\(argument) is an option of status") }
            flags.insert(argument)
        default:
            guard !argument.hasPrefix("--") else { operatorUsageError("unknown option \(argument)") }
            positional.append(argument)
        }
    }
    guard let base = APIBase(url) else { operatorUsageError("--url must be http://HOST[:PORT], got \(url)") }
    let request: (method: String, path: String, body: String?)
    switch command {
    case "status":
        guard positional.isEmpty else { operatorUsageError("status takes no arguments") }
        request = ("GET", "/api/v1/cluster", nil)
    case "drain", "cordon", "uncordon":
        guard positional.count == 1, let worker = positional.first else {
            operatorUsageError("\(command) needs one worker id")
        }
        request = ("POST", "/api/v1/cluster/workers/\(percentEncoded(worker))/\(command)", nil)
    case "rebalance":
        guard positional.count == 1, let action = positional.first, action == "pause" || action == "resume" else {
            operatorUsageError("rebalance needs pause or resume")
        }
        request = ("POST", "/api/v1/cluster/rebalance/\(action)", nil)
    case "move":
        guard positional.count == 1, let shard = positional.first, let target else {
            operatorUsageError("move needs SHARD --to WORKER")
        }
        // try?: two strings always serialize.
        let body = try? JSONSerialization.data(withJSONObject: ["shard": shard, "to": target])
        request = ("POST", "/api/v1/cluster/move", body.map { String(decoding: $0, as: UTF8.self) })
    default:
        operatorUsageError("unknown command \(command)")
    }
    var token = environment["API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    if token == nil, request.method == "POST", let file = environment["API_TOKEN_FILE"] {
        do {
            token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            operatorFailure("cannot read API_TOKEN_FILE \(file): \(error.localizedDescription)")
        }
    }
    let response: HTTPResponse
    do {
        response = try send(request, to: base, token: token)
    } catch {
        operatorFailure("cannot reach the coordinator at \(url): \(error)")
    }
    let text = String(decoding: response.body, as: UTF8.self)
    guard (200..<300).contains(response.head.status) else {
        let message =
            ((try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any])?["error"] as? String
            ?? text
        operatorFailure("\(command) refused (HTTP \(response.head.status)): \(message)")
    }
    guard command == "status" else {
        print("\(command): done")
        exit(0)
    }
    guard let document = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] else {
        operatorFailure("the coordinator's answer is not a JSON object")
    }
    if flags.contains("--json") {
        print(text)
    } else {
        print(renderStatus(document, shards: flags.contains("--shards")))
    }
    exit(statusExitCode(document))
}

/// 2 when a shard has no owner or a worker's lease expired (or the document says unhealthy).
func statusExitCode(_ document: [String: Any]) -> Int32 {
    let healthy = (document["healthy"] as? Bool) ?? false
    let shards = document["shards"] as? [[String: Any]] ?? []
    // A shard the exchange rejected has no owner by design (the document's `healthy` agrees).
    let unowned = shards.contains { ($0["owners"] as? [Any])?.isEmpty ?? true && $0["state"] as? String != "rejected" }
    let workers = document["workers"] as? [[String: Any]] ?? []
    let expired = workers.contains { w in (w["lease_expires_in_ms"] as? Int).map { $0 <= 0 } ?? false }
    return healthy && !unowned && !expired ? 0 : 2
}

/// The workers as a table, and with `shards` every shard as a second one.
func renderStatus(_ document: [String: Any], shards: Bool) -> String {
    let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
    func text(_ value: Any?) -> String {
        switch value {
        case let s as String: return s
        case let n as NSNumber: return n.stringValue
        case let list as [Any]: return list.isEmpty ? "-" : list.map { text($0) }.joined(separator: ",")
        default: return "-"
        }
    }
    func age(ms: Any?) -> String {
        guard let ms = (ms as? NSNumber)?.int64Value else { return "-" }
        return ms >= 60_000 ? "\(ms / 60_000)m\((ms % 60_000) / 1000)s" : String(format: "%.1fs", Double(ms) / 1000)
    }
    var lines: [[String]] = [["WORKER", "ADDRESS", "AGE", "LEASE", "SHARDS", "WEIGHT", "EVENTS/S", "STATE"]]
    for w in document["workers"] as? [[String: Any]] ?? [] {
        // Workers start their incarnation at the wall clock in µs: its age is how long the process runs.
        let incarnation = (w["incarnation"] as? NSNumber)?.int64Value ?? 0
        let started = incarnation > 1_000_000_000_000_000 ? age(ms: NSNumber(value: (now - incarnation) / 1000)) : "-"
        let rate = (w["events_per_second"] as? NSNumber).map { String(format: "%.1f", $0.doubleValue) } ?? "-"
        lines.append([
            text(w["id"]), text(w["address"]), started, age(ms: w["lease_expires_in_ms"]), text(w["shards"]),
            text(w["weight"]), rate, text(w["state"]),
        ])
    }
    var out = table(lines)
    let all = document["shards"] as? [[String: Any]] ?? []
    let unowned = all.filter { ($0["owners"] as? [Any])?.isEmpty ?? true && $0["state"] as? String != "rejected" }.count
    out +=
        "\nterm \(text(document["term"])), \(all.count) shards (\(unowned) unowned), \(text(document["moves"])) moves, "
        + ((document["rebalance_paused"] as? Bool) == true ? "rebalancing PAUSED, " : "")
        + ((document["healthy"] as? Bool) == true ? "healthy" : "NOT healthy")
    if shards {
        var rows: [[String]] = [["SHARD", "OWNERS", "EPOCH", "STATE", "LAST EVENT"]]
        for s in all {
            rows.append([
                text(s["id"]), text(s["owners"]), text(s["epoch"]), text(s["state"]), age(ms: s["last_event_age_ms"]),
            ])
        }
        out += "\n\n" + table(rows)
    }
    return out
}

/// Left-aligned columns, two spaces apart.
func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = first.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    return rows.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// `http://host[:port]`, the only form the CLI speaks (the API is plain HTTP inside the cluster).
struct APIBase {
    var host: String
    var port: Int
    init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        var rest = url.dropFirst("http://".count)
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            host = String(rest[..<colon])
            self.port = port
        } else {
            host = String(rest)
            port = 80
        }
        guard !host.isEmpty else { return nil }
    }
}

func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/")))
        ?? text
}

/// One request on a loop of its own, synchronously (the CLI does nothing else meanwhile).
func send(
    _ request: (method: String, path: String, body: String?), to base: APIBase, token: String?,
    loop given: EventLoop? = nil
) throws
    -> HTTPResponse
{
    let loop = try given ?? EventLoop.start(name: "coordinator-cli")
    var headers: HTTPHeaders = ["Host": "\(base.host):\(base.port)", "Connection": "close"]
    if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
    if request.body != nil { headers.add(name: "Content-Type", value: "application/json") }
    let http = HTTPRequest(
        head: HTTPRequestHead(method: request.method, target: request.path, headers: headers),
        body: Array((request.body ?? "").utf8))
    let result = ResultBox()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do {
            result.set(
                .success(
                    try await HTTPClient.send(
                        http, to: Endpoint(host: base.host, port: base.port), loop: loop, timeout: .seconds(10))))
        } catch {
            result.set(.failure(error))
        }
        done.signal()
    }
    done.wait()
    return try result.get()
}

final class ResultBox: Sendable {
    private let value = Locked<Result<HTTPResponse, any Error>>(.failure(CancellationError()))
    func set(_ v: Result<HTTPResponse, any Error>) { value.withLock { $0 = v } }
    func get() throws -> HTTPResponse { try value.withLock { $0 }.get() }
}

/// The subcommand being run, for the usage hint (set once, before any parsing).
nonisolated(unsafe) var operatorCommandName = "status"

func operatorUsageError(_ message: String) -> Never {
    FileHandle.standardError.write(
        Data("coordinator: \(message) (see coordinator \(operatorCommandName) --help)\n".utf8))
    exit(64)
}

func operatorFailure(_ message: String) -> Never {
    FileHandle.standardError.write(Data("coordinator: \(message)\n".utf8))
    exit(1)
}
