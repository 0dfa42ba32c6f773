import Observability
import Testing

/// `LOG_FORMAT`: text for people (the default on a terminal), JSON lines for machines.
@Suite struct LogFormatTests {
    @Test func theFormatIsAskedForOrFollowsTheTerminal() {
        #expect(LogFormat.resolve("json", stderrIsTerminal: true) == .json)
        #expect(LogFormat.resolve("text", stderrIsTerminal: false) == .text)
        #expect(LogFormat.resolve(nil, stderrIsTerminal: true) == .text)
        #expect(LogFormat.resolve(nil, stderrIsTerminal: false) == .json)
    }

    @Test func aTextLineHasTheTimeLevelLabelMessageAndSortedFields() {
        let line = TextLogHandler.line(
            level: .warning, label: "collector", message: "sink down",
            metadata: ["sink": "postgres", "error": "connection refused", "failures": "1"])
        let parts = line.split(separator: " ", maxSplits: 2)
        #expect(parts.count == 3 && parts[0].hasSuffix("Z") && parts[0].count == 24, "\(line)")
        #expect(parts[1] == "WARNING")
        #expect(
            parts[2] == #"collector: sink down error="connection refused" failures=1 sink=postgres"# + "\n",
            "\(line)")
        #expect(line.hasSuffix("\n") && line.filter { $0 == "\n" }.count == 1)
    }
}
