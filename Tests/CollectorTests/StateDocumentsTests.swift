import Collector
import Foundation
import Gateway
import MarketData
import PostgresClient
import TestSupport
import Testing

/// The coordinator's documents in PostgreSQL: a round trip, the term fence that keeps a deposed
/// coordinator from overwriting its successor, and the import of a `DATA_DIR` file the table lacks.
@Suite struct StateDocumentsTests {
    static func migrated() async throws -> TestDatabase {
        let database = try await TestDatabase.create()
        let directory = try #require(SchemaMigrator.locateSQLDirectory(environment: [:]))
        let executor = PGExecutor(conninfo: database.conninfo)
        try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
        executor.disconnect()
        return database
    }

    @Test func aWriteWithAnOlderTermIsRefusedAndChangesNothing() async throws {
        let database = try await Self.migrated()
        defer { database.drop() }
        let queue = StateDocumentQueue(
            PostgresStateDocuments(conninfo: database.conninfo, timeouts: .standard), label: "test.documents")
        try await queue.run { try $0.write("coordinator.json", Array("one".utf8), term: 1) }
        try await queue.run { try $0.write("coordinator.json", Array("two".utf8), term: 2) }
        try await queue.run { try $0.write("coordinator.json", Array("two again".utf8), term: 2) }
        await #expect(throws: StateDocumentFenced.self) {
            try await queue.run { try $0.write("coordinator.json", Array("stale".utf8), term: 1) }
        }
        let stored = try await queue.run { try $0.read("coordinator.json") }
        #expect(stored.map { String(decoding: $0, as: UTF8.self) } == "two again")
        #expect(try await queue.run { try $0.read("absent.json") } == nil)
    }

    @Test func aDocumentTheTableLacksIsReadFromTheDataDirectoryUntilWritten() async throws {
        let database = try await Self.migrated()
        defer { database.drop() }
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "documents")
        let files = FileStateDocuments(directory: directory)
        try files.write("subscriptions.json", Array(#"["okx/trades/BTC-USDT"]"#.utf8), term: 0)
        let queue = StateDocumentQueue(
            PostgresStateDocuments(conninfo: database.conninfo, timeouts: .standard, importing: files),
            label: "test.documents")
        let imported = try await queue.run { try $0.read("subscriptions.json") }
        #expect(imported.map { String(decoding: $0, as: UTF8.self) } == #"["okx/trades/BTC-USDT"]"#)
        try await queue.run { try $0.write("subscriptions.json", Array("[]".utf8), term: 1) }
        let written = try await queue.run { try $0.read("subscriptions.json") }
        #expect(written.map { String(decoding: $0, as: UTF8.self) } == "[]")
    }

    @Test func subscriptionsAddedThroughOneCoordinatorAreThoseTheNextOneOpens() async throws {
        let database = try await Self.migrated()
        defer { database.drop() }
        let queue = StateDocumentQueue(
            PostgresStateDocuments(conninfo: database.conninfo, timeouts: .standard), label: "test.documents")
        let first = try await SubscriptionRegistry.open(documents: queue, term: 1, pinned: [])
        let btc = try #require(StreamID("okx/trades/BTC-USDT"))
        let eth = try #require(StreamID("okx/ticker/ETH-USDT"))
        #expect(try await first.add([btc, eth], replicas: 2) == [btc, eth])
        #expect(try await first.remove([eth]) == [eth])
        let second = try await SubscriptionRegistry.open(documents: queue, term: 2, pinned: [])
        #expect(second.all.map(\.stream) == [btc])
        #expect(second.all.first?.replicas == 2)
        #expect(try await second.add([eth]) == [eth])
        // The deposed one's change is refused and not applied in its own memory either.
        let sol = try #require(StreamID("okx/trades/SOL-USDT"))
        await #expect(throws: StateDocumentFenced.self) { try await first.add([sol]) }
        #expect(!first.contains(sol))
    }
}
