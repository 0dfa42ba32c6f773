// `coordinator config check`: the settings `serve` would run with, each with its value and where it
// came from, without starting anything.
import Configuration
import Foundation
import MarketData

/// Prints every setting (value and source; secrets as set/unset), the HTTP address that would be
/// bound and the pinned streams; exit 0, or 1 naming the first invalid setting.
func runConfigCommand(_ rest: [String], environment: [String: String]) -> Never {
    guard rest.first == "check" else {
        if rest.first == "--help" || rest.first == "-h" {
            print("usage: coordinator config check [serve options]   (exit 0 valid, 1 invalid, 64 bad usage)")
            exit(0)
        }
        usageError(rest.isEmpty ? "config needs check" : "unknown config command \(rest[0]): check")
    }
    if rest.contains("--help") || rest.contains("-h") {
        print("usage: coordinator config check [serve options]   (exit 0 valid, 1 invalid, 64 bad usage)")
        exit(0)
    }
    let options = ServeOptions.parse(Array(rest.dropFirst()), environment: environment)
    let loaded: LoadedSettings
    do throws(LoadedSettings.Failure) {
        loaded = try LoadedSettings.load(options, environment: environment)
    } catch {
        let detail = error.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        FileHandle.standardError.write(
            Data("coordinator: \(error.message)\(detail.isEmpty ? "" : ": ")\(detail)\n".utf8))
        exit(1)
    }
    let settings = loaded.settings
    var rows = Settings.report(settings, file: loaded.file, environment: environment, flags: options.flags)
    rows += Settings.environmentReport(LoadedSettings.environmentOnly, environment: environment)
    // As serve reads it: API_TOKEN when not empty, else API_TOKEN_FILE (an empty or unreadable one
    // stops serve, so it is refused here too).
    var tokenSet = environment["API_TOKEN"].map { !$0.isEmpty } ?? false
    if !tokenSet, let file = environment["API_TOKEN_FILE"] {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(
                Data("coordinator: cannot read API_TOKEN_FILE \(file): \(error.localizedDescription)\n".utf8))
            exit(1)
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            FileHandle.standardError.write(Data("coordinator: API_TOKEN_FILE \(file) is empty\n".utf8))
            exit(1)
        }
        tokenSet = true
    }
    let address = settings.effectiveHTTPAddress(mutatingAPI: true, tokenSet: tokenSet)
    rows.append(
        SettingReport(
            name: "(effective) http listen", value: "\(address):\(settings.httpPort)",
            source: settings.httpAddress != nil
                ? "http_addr" : tokenSet ? "API_TOKEN set: all addresses" : "no API_TOKEN: loopback only"))
    for stream in loaded.pinned {
        rows.append(
            SettingReport(
                name: "(pinned stream)", value: stream.description, source: loaded.pinnedOrigin[stream] ?? ""))
    }
    print("mode: \(options.standalone ? "standalone" : "cluster coordinator")")
    print(Settings.render(rows), terminator: "")
    print("configuration valid")
    exit(0)
}
