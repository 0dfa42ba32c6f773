public import MarketData
import WireCore

/// The text of `subscriptions.json`, read strictly with the JSON scanner (issue 13: it was read
/// through `JSONSerialization`, which turned `"replicas": 2.5`, `"3"`, `0` or `true` into 1 without
/// a word). A JSON array: a stream on one worker is its name; one with more replicas is
/// `{"stream": name, "replicas": n}` (n from 1 to ``GatewayAPI/maxReplicas``). Unknown fields in an
/// object are ignored (a later version may add some); anything else out of shape is refused with the
/// entry it is about. Pure, so `cluster/fuzz.sh subscriptions-file` runs it.
public enum SubscriptionFileFormat {
    public struct Corrupt: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// The streams and their replica counts, sorted by stream.
    public static func encode(_ streams: [StreamID: Int]) -> [UInt8] {
        var out = JSONBytes()
        out.raw("[")
        for (index, (stream, replicas)) in streams.sorted(by: { $0.key < $1.key }).enumerated() {
            out.raw(index == 0 ? "\n  " : ",\n  ")
            if replicas == 1 {
                out.quoted(stream.description)
            } else {
                out.raw("{\"replicas\": ")
                out.int(replicas)
                out.raw(", \"stream\": ")
                out.quoted(stream.description)
                out.raw("}")
            }
        }
        out.raw(streams.isEmpty ? "]\n" : "\n]\n")
        return out.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(Corrupt) -> [StreamID: Int] {
        var out: [StreamID: Int] = [:]
        var problem: String?
        let read = bytes.withUnsafeBytes { raw in
            Result { () throws(JSONError) in
                var scanner = JSONScanner(raw)
                guard scanner.peek() == UInt8(ascii: "[") else {
                    problem = "not a JSON array of streams"
                    return
                }
                try scanner.readArray { index, s throws(JSONError) in
                    let entry = "entry \(index + 1)"
                    var name: String?
                    var replicas = 1
                    switch s.peek() {
                    case UInt8(ascii: "\"")?:
                        name = try s.readString()
                    case UInt8(ascii: "{")?:
                        var seenReplicas = false
                        try s.readObject { key, v throws(JSONError) in
                            if v.equals(key, "stream") {
                                if name != nil { problem = problem ?? "\(entry): stream appears twice" }
                                guard v.peek() == UInt8(ascii: "\"") else {
                                    problem = problem ?? "\(entry): stream must be a string"
                                    return try v.skipValue()
                                }
                                name = try v.readString()
                            } else if v.equals(key, "replicas") {
                                if seenReplicas { problem = problem ?? "\(entry): replicas appears twice" }
                                seenReplicas = true
                                let isNumber = v.peekIsNumber()
                                let range = isNumber ? try v.readNumberText() : nil
                                let value = range.flatMap {
                                    JSONScanner.parseInt64(UnsafeRawBufferPointer(rebasing: raw[$0]))
                                }
                                guard let value, (1...Int64(GatewayAPI.maxReplicas)).contains(value) else {
                                    problem =
                                        problem
                                        ?? "\(entry): replicas must be an integer from 1 to \(GatewayAPI.maxReplicas)"
                                    if !isNumber { try v.skipValue() }
                                    return
                                }
                                replicas = Int(value)
                            } else {
                                try v.skipValue()
                            }
                        }
                    default:
                        problem = problem ?? "\(entry): expected a stream name or {\"stream\": …, \"replicas\": n}"
                        return try s.skipValue()
                    }
                    guard problem == nil else { return }
                    guard let name else {
                        problem = "\(entry): no stream"
                        return
                    }
                    guard let stream = StreamID(name) else {
                        problem = "\(entry): '\(name.prefix(80))' is not a stream (exchange/feed/symbol)"
                        return
                    }
                    guard out[stream] == nil else {
                        problem = "\(entry): \(stream) appears twice"
                        return
                    }
                    out[stream] = replicas
                }
                try scanner.expectEnd()
            }
        }
        if case .failure(let error) = read { throw Corrupt(description: "not a subscriptions file: \(error)") }
        if let problem { throw Corrupt(description: problem) }
        return out
    }
}
