import Testing

@testable import PostgresClient

/// What the client adds to a conninfo, and what it leaves to the caller.
@Suite struct ConninfoDefaultsTests {
    let timeouts = PGTimeouts(connectSeconds: 7)

    @Test func gssapiIsOffUnlessTheCallerOrTheEnvironmentAsksForIt() {
        let uri = PGConnection.withDefaults("postgresql://u@h/db", timeouts: timeouts, environment: [:])
        #expect(uri.contains("?connect_timeout=7&") && uri.contains("&gssencmode=disable"), "\(uri)")
        let pairs = PGConnection.withDefaults("host=h dbname=db", timeouts: timeouts, environment: [:])
        #expect(pairs.contains(" gssencmode=disable") && pairs.contains(" keepalives=1"), "\(pairs)")
        let asked = PGConnection.withDefaults("host=h gssencmode=require", timeouts: timeouts, environment: [:])
        #expect(!asked.contains("disable"), "\(asked)")
        let environment = PGConnection.withDefaults(
            "host=h", timeouts: timeouts, environment: ["PGGSSENCMODE": "prefer"])
        #expect(!environment.contains("gssencmode"), "\(environment)")
    }
}
