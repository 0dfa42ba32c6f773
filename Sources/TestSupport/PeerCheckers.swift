import Foundation

/// Feeds Prometheus text to prometheus_client's parser (an independent implementation, from
/// `.venv`) and returns its view: each family's type and samples (keyed by name and sorted labels),
/// and any exposition rule broken (`Tests/Peers/check_metrics.py`).
public func parseWithPrometheusClient(_ text: String) async throws -> (families: [String: Any], problems: [String]) {
    let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "metrics")
    let file = directory + "/metrics.txt"
    try text.write(toFile: file, atomically: true, encoding: .utf8)
    let result = try await ExternalProcess.run(
        "/bin/sh",
        ["-c", "\"$0\" \"$1\" < \"$2\"", TestEnvironment.python, TestEnvironment.peerScript("check_metrics.py"), file])
    guard result.status == 0 else {
        throw ProcessFailure("prometheus_client rejected the exposition: \(result.stderr)")
    }
    guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
        throw ProcessFailure("check_metrics.py printed no JSON object: \(result.stdout.prefix(200))")
    }
    return ((object["families"] as? [String: Any]) ?? [:], (object["problems"] as? [String]) ?? [])
}

/// Validates a JSON document against `schema` of `openapi.yaml`'s components with jsonschema_rs
/// (`Tests/Peers/check_schema.py`): the validator's errors, empty when it is valid.
public func validateAgainstOpenAPI(_ document: String, schema: String) async throws -> [String] {
    let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "schema")
    let file = directory + "/document.json"
    try document.write(toFile: file, atomically: true, encoding: .utf8)
    let result = try await ExternalProcess.run(
        "/bin/sh",
        [
            "-c", "\"$0\" \"$1\" \"$2\" \"$3\" < \"$4\"", TestEnvironment.python,
            TestEnvironment.peerScript("check_schema.py"), TestEnvironment.repositoryRoot + "/openapi.yaml", schema,
            file,
        ])
    let errors = result.stdout.split(separator: "\n").map(String.init)
    guard result.status == 0 || (result.status == 1 && !errors.isEmpty) else {
        throw ProcessFailure("check_schema.py failed (\(result.status)): \(result.stderr)")
    }
    return errors
}
