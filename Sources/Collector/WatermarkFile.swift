import Foundation
public import MarketData
import Runtime
import WireCore

/// The per-stream watermarks of what every sink has stored, kept in `<data>/watermarks.json`
/// (replaced atomically, fsynced). Bounded by the number of streams. Blocking: call off the loop.
struct WatermarkFile: Sendable {
    let path: String

    init(_ path: String) { self.path = path }

    /// `{"stream": {"time": µs, "id": "…"}, …}`; an absent file is an empty map.
    func load() throws -> [StreamID: Watermark] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        do {
            return try WatermarkFileFormat.decode(bytes)
        } catch {
            throw WatermarkFileFormat.Corrupt(description: "\(path): \(error) (move it aside to start afresh)")
        }
    }

    func save(_ marks: [StreamID: Watermark]) throws {
        try DurableFile.write(WatermarkFileFormat.encode(marks), to: path)
    }
}

/// The watermark file's text, read strictly with the JSON scanner: a time is an integer (not 1.5,
/// not `true`, not beyond Int64), an id a string, a stream named once. Pure, so `cluster/fuzz.sh`
/// runs it (`watermark-file`).
public enum WatermarkFileFormat {
    /// Why a watermark file cannot be used.
    public struct Corrupt: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// The marks, sorted by stream, one per line.
    public static func encode(_ marks: [StreamID: Watermark]) -> [UInt8] {
        var text = "{"
        for (i, (stream, mark)) in marks.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { text += "," }
            text += "\n  \(JSONText.quoted(stream.description)): {\"time\": \(mark.time)"
            if let id = mark.id { text += ", \"id\": \(JSONText.quoted(id))" }
            text += "}"
        }
        text += "\n}\n"
        return Array(text.utf8)
    }

    /// Reads a file written by `encode` (or by hand): unknown fields inside a mark are ignored
    /// (a later version may add some), anything else out of shape is refused.
    public static func decode(_ bytes: [UInt8]) throws(Corrupt) -> [StreamID: Watermark] {
        var out: [StreamID: Watermark] = [:]
        var problem: String?
        let read = bytes.withUnsafeBytes { raw in
            Result { () throws(JSONError) in
                var scanner = JSONScanner(raw)
                guard scanner.peek() == UInt8(ascii: "{") else {
                    problem = "not a JSON object of watermarks"
                    return
                }
                try scanner.readObject { key, s throws(JSONError) in
                    let name = s.string(key)
                    guard problem == nil else { return try s.skipValue() }
                    guard let stream = StreamID(name) else {
                        problem = "'\(name.prefix(80))' is not a stream"
                        return try s.skipValue()
                    }
                    guard out[stream] == nil else {
                        problem = "'\(name.prefix(80))' appears twice"
                        return try s.skipValue()
                    }
                    guard s.peek() == UInt8(ascii: "{") else {
                        problem = "bad watermark for '\(name.prefix(80))': not an object"
                        return try s.skipValue()
                    }
                    var time: Int64?
                    var id: String?
                    var seenID = false
                    let label = "watermark for '\(name.prefix(80))'"
                    try s.readObject { field, v throws(JSONError) in
                        if v.equals(field, "time") {
                            if time != nil { problem = problem ?? "\(label): time appears twice" }
                            let start = v.offset
                            guard v.peekIsNumber() else {
                                problem = problem ?? "\(label): time must be an integer (µs)"
                                return try v.skipValue()
                            }
                            let range = try v.readNumberText()
                            guard let value = JSONScanner.parseInt64(UnsafeRawBufferPointer(rebasing: raw[range]))
                            else {
                                problem = problem ?? "\(label): time must be a 64-bit integer (µs), at byte \(start)"
                                return
                            }
                            time = value
                        } else if v.equals(field, "id") {
                            if seenID { problem = problem ?? "\(label): id appears twice" }
                            seenID = true
                            if v.readNullIfPresent() { return }
                            guard v.peek() == UInt8(ascii: "\"") else {
                                problem = problem ?? "\(label): id must be a string"
                                return try v.skipValue()
                            }
                            id = try v.readString()
                        } else {
                            try v.skipValue()
                        }
                    }
                    guard let time else {
                        problem = problem ?? "\(label): no time"
                        return
                    }
                    out[stream] = Watermark(time: time, id: id)
                }
                try scanner.expectEnd()
            }
        }
        if case .failure(let error) = read { throw Corrupt(description: "not a watermark file: \(error)") }
        if let problem { throw Corrupt(description: problem) }
        return out
    }
}
