// swift-tools-version: 6.1
// The collector uses the Swift toolchain plus two system libraries (libpq, OpenSSL); no Swift packages.
import Foundation
import PackageDescription

/// Settings shared by every Swift target: Swift 6 mode and the upcoming features STYLE.md §2 asks for.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// A library target with a README (excluded from sources) and the strict settings.
func library(_ name: String, _ dependencies: [Target.Dependency] = []) -> Target {
    .target(name: name, dependencies: dependencies, exclude: ["README.md"], swiftSettings: strictSettings)
}

/// A Swift Testing target with the strict settings.
func tests(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .testTarget(name: name, dependencies: dependencies, swiftSettings: strictSettings)
}

let package = Package(
    name: "collector",
    products: [
        .executable(name: "collector-bench", targets: ["collector-bench"]),
        .executable(name: "exchange-sim", targets: ["exchange-sim"]),
        .executable(name: "coordinator", targets: ["coordinator"]),
        .executable(name: "worker", targets: ["worker"]),
    ],
    targets: [
        // System libraries: only Crypto and TLS import COpenSSL; only PostgresClient imports CLibPQ.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Linux headers Glibc does not export (epoll, eventfd, TCP options); only Runtime imports it.
        .systemLibrary(name: "CLinux"),

        // Pure layers: stdlib only.
        library("CollectorCore"),
        library("Configuration"),
        library("WireCore"),
        // libcrypto behind one small target (hashes, HMAC, random bytes, ECDSA P-256).
        library("Crypto", ["COpenSSL"]),
        // TLS over memory BIOs (sans-IO).
        library("TLS", ["COpenSSL"]),
        // Protocol codecs and machines (pure).
        library("HTTP1Protocol", ["WireCore"]),
        library("WebSocketProtocol", ["CollectorCore", "WireCore", "HTTP1Protocol", "Crypto"]),
        // A pthread-mutex lock (ThreadSanitizer sees it; Synchronization.Mutex's futexes it does not).
        library("Locking"),
        library("Observability", ["WireCore", "Locking"]),
        // The cluster's control protocol: framing, handshake and session machines (pure).
        library("ControlProtocol", ["CollectorCore", "Crypto", "WireCore"]),
        // The coordinator's decision logic (pure state machine).
        library("Coordination", ["CollectorCore", "ControlProtocol"]),
        // libpq behind a dedicated executor.
        library("PostgresClient", ["CLibPQ"]),
        // Market-data domain types and exchange adapters (pure).
        library("MarketData", ["CollectorCore", "WireCore"]),
        library("Exchanges", ["MarketData", "CollectorCore", "WireCore"]),
        // The only target with syscalls: event loop, sockets, timers, drivers.
        library(
            "Runtime",
            [
                "Locking",
                "CLinux", "CollectorCore", "WireCore", "Crypto", "TLS", "HTTP1Protocol", "WebSocketProtocol",
                "Observability",
            ]
        ),
        // The data plane: connections, batching, PostgreSQL store, spool, backfill.
        library(
            "Collector",
            [
                "Locking",
                "Runtime", "PostgresClient", "Exchanges", "MarketData", "CollectorCore", "WireCore", "HTTP1Protocol",
                "Observability",
            ]
        ),
        library(
            "ExchangeSimulator",
            [
                "Runtime", "Exchanges", "MarketData", "HTTP1Protocol", "WebSocketProtocol", "TLS", "WireCore",
                "CollectorCore",
            ]
        ),
        library(
            "Gateway",
            [
                "Locking",
                "Collector", "Runtime", "HTTP1Protocol", "PostgresClient", "MarketData", "Exchanges", "Observability",
                "Crypto", "CollectorCore", "WireCore",
            ]
        ),
        // The cluster's drivers: the coordinator's control listener (and, next, the worker's client).
        library(
            "Cluster",
            [
                "Locking",
                "Runtime", "Coordination", "ControlProtocol", "Crypto", "CollectorCore", "Observability", "Gateway",
                "Collector", "MarketData", "Exchanges", "PostgresClient", "Configuration", "WireCore",
            ]
        ),
        // Fuzz targets (issue 13): property checks per decoder, shared by the fuzz driver and the tests.
        library(
            "FuzzTargets",
            [
                "HTTP1Protocol", "WebSocketProtocol", "WireCore", "Configuration", "Exchanges", "MarketData",
                "ControlProtocol", "Coordination", "Collector", "CollectorCore", "Crypto", "Cluster", "Gateway",
            ]
        ),
        library("TestSupport", ["Locking", "CollectorCore", "WireCore", "Runtime", "MarketData", "PostgresClient"]),

        .executableTarget(
            name: "coordinator",
            dependencies: [
                "Locking",
                "Collector", "PostgresClient", "Runtime", "Exchanges", "MarketData", "Observability", "HTTP1Protocol",
                "Configuration", "Gateway", "Cluster", "Coordination", "ControlProtocol", "Crypto", "CollectorCore",
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "worker",
            dependencies: [
                "Locking",
                "Cluster", "Collector", "Configuration", "ControlProtocol", "CollectorCore", "HTTP1Protocol",
                "Observability", "Runtime", "WireCore",
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "exchange-sim", dependencies: ["ExchangeSimulator", "MarketData", "Runtime", "TLS"],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "collector-bench",
            dependencies: [
                "Runtime", "WebSocketProtocol", "HTTP1Protocol", "TLS", "Crypto", "CollectorCore", "Exchanges",
                "MarketData", "Collector", "PostgresClient", "Coordination", "ControlProtocol", "Cluster",
            ],
            swiftSettings: strictSettings
        ),

        tests("FuzzRegressionTests", ["FuzzTargets", "TestSupport", "ControlProtocol", "Exchanges", "MarketData"]),
        tests("CryptoTests", ["Crypto"]),
        tests("ControlProtocolTests", ["ControlProtocol", "Crypto", "TestSupport", "CollectorCore"]),
        tests(
            "CoordinationTests",
            ["Coordination", "ControlProtocol", "CollectorCore", "Exchanges", "MarketData", "Crypto"]),
        tests("ConfigurationTests", ["Configuration"]),
        tests(
            "ClusterTests",
            [
                "Locking",
                "Cluster", "Coordination", "ControlProtocol", "CollectorCore", "Gateway", "HTTP1Protocol", "MarketData",
                "Runtime", "Observability", "TestSupport", "ExchangeSimulator", "PostgresClient", "Configuration",
                "Collector", "Exchanges",
            ]),
        tests(
            "CollectorTests",
            [
                "Locking",
                "Collector", "PostgresClient", "MarketData", "Exchanges", "Runtime", "TestSupport", "CollectorCore",
                "ExchangeSimulator", "HTTP1Protocol", "Observability", "Gateway", "WebSocketProtocol",
            ]
        ),
        tests("ExchangesTests", ["Exchanges", "MarketData", "TestSupport", "WireCore"]),
        tests("WireCoreTests", ["WireCore", "CollectorCore", "Observability"]),
        tests("HTTP1ProtocolTests", ["HTTP1Protocol", "TestSupport"]),
        tests("WebSocketProtocolTests", ["WebSocketProtocol", "TestSupport", "Crypto"]),
        tests(
            "RuntimeTests",
            ["Locking", "Runtime", "TestSupport", "TLS", "HTTP1Protocol", "WebSocketProtocol", "Crypto"]),
    ]
)

// The libFuzzer driver exists only when cluster/fuzz.sh asks for it, so `swift build` and
// `swift test` never link libFuzzer's main.
if ProcessInfo.processInfo.environment["COLLECTOR_FUZZ"] == "1" {
    package.targets.append(
        .executableTarget(
            name: "collector-fuzz", dependencies: ["FuzzTargets"], path: "Fuzz/Driver",
            swiftSettings: strictSettings + [.unsafeFlags(["-parse-as-library"])]))
}
