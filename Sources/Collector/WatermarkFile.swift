import Foundation
import MarketData
import Runtime
import WireCore

/// The per-stream watermarks of what every sink has stored, kept in `<data>/watermarks.json`
/// (replaced atomically, fsynced). Bounded by the number of streams. Blocking: call off the loop.
struct WatermarkFile: Sendable {
    let path: String

    init(_ path: String) { self.path = path }

    struct CorruptFile: Error, CustomStringConvertible {
        var description: String
    }

    /// `{"stream": {"time": µs, "id": "…"}, …}`; an absent file is an empty map.
    func load() throws -> [StreamID: Watermark] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else {
            throw CorruptFile(description: "\(path): not a JSON object of watermarks (move it aside to start afresh)")
        }
        var out: [StreamID: Watermark] = [:]
        for (key, value) in object {
            guard let stream = StreamID(key), let time = (value["time"] as? NSNumber)?.int64Value else {
                throw CorruptFile(description: "\(path): bad watermark for '\(key.prefix(80))'")
            }
            out[stream] = Watermark(time: time, id: value["id"] as? String)
        }
        return out
    }

    func save(_ marks: [StreamID: Watermark]) throws {
        var text = "{"
        for (i, (stream, mark)) in marks.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { text += "," }
            text += "\n  \(JSONText.quoted(stream.description)): {\"time\": \(mark.time)"
            if let id = mark.id { text += ", \"id\": \(JSONText.quoted(id))" }
            text += "}"
        }
        text += "\n}\n"
        try DurableFile.write(Array(text.utf8), to: path)
    }
}
