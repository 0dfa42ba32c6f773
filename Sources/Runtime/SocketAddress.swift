import Dispatch
@preconcurrency import Glibc

/// An IPv4 or IPv6 socket address.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    var storage: sockaddr_storage
    var length: socklen_t

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool { lhs.description == rhs.description }

    /// The address family (AF_INET or AF_INET6).
    var family: Int32 { Int32(storage.ss_family) }

    /// Parses a numeric IPv4 or IPv6 address (no name lookup).
    public init?(ip: String, port: Int) {
        var storage = sockaddr_storage()
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, ip, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: v4) { dst.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        } else if inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: v6) { dst.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        } else {
            return nil
        }
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// The port number.
    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
    }

    /// The numeric host, e.g. `127.0.0.1` or `::1`.
    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                var addr = raw.load(as: sockaddr_in6.self).sin6_addr
                _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
            } else {
                var addr = raw.load(as: sockaddr_in.self).sin_addr
                _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}

/// A failed name lookup.
public struct ResolverError: Error, Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var message: String
    public var description: String { "cannot resolve \(host): \(message)" }
}

/// Name resolution with getaddrinfo on helper threads, never on an event loop (DESIGN.md §9):
/// the system resolver's rules (search domains, ndots, /etc/hosts) apply.
public enum Resolver {
    private static let queue = DispatchQueue(label: "collector.resolver", attributes: .concurrent)

    /// Resolves `host` (a name or a numeric address) for TCP on `port`; blocking, so call off-loop.
    public static func resolveBlocking(host: String, port: Int) -> Result<[SocketAddress], ResolverError> {
        if let numeric = SocketAddress(ip: host.trimmingBrackets(), port: port) { return .success([numeric]) }
        var hints = addrinfo()
        hints.ai_socktype = Linux.sockStream
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0 else {
            return .failure(ResolverError(host: host, message: String(cString: gai_strerror(rc))))
        }
        defer { freeaddrinfo(result) }
        var addresses: [SocketAddress] = []
        var cursor = result
        while let info = cursor {
            if let addr = info.pointee.ai_addr, info.pointee.ai_family == AF_INET || info.pointee.ai_family == AF_INET6
            {
                var storage = sockaddr_storage()
                let length = info.pointee.ai_addrlen
                withUnsafeMutableBytes(of: &storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(length)))
                }
                let address = SocketAddress(storage: storage, length: length)
                if !addresses.contains(address) { addresses.append(address) }
            }
            cursor = info.pointee.ai_next
        }
        // Prefer IPv4 first: exchanges' IPv6 reachability varies, and many containers lack v6 routes.
        addresses.sort { $0.family == AF_INET && $1.family != AF_INET }
        return addresses.isEmpty ? .failure(ResolverError(host: host, message: "no addresses")) : .success(addresses)
    }

    /// Resolves on a helper thread and delivers the result on `loop`.
    static func resolve(
        host: String, port: Int, loop: EventLoop, completion: @escaping (Result<[SocketAddress], ResolverError>) -> Void
    ) {
        let bound = LoopBound(completion, loop: loop)
        // A numeric address needs no lookup: answered on the loop, never queued behind busy threads.
        if let numeric = SocketAddress(ip: host.trimmingBrackets(), port: port) {
            loop.execute { bound.value(.success([numeric])) }
            return
        }
        queue.async {
            let result = resolveBlocking(host: host, port: port)
            loop.execute { bound.value(result) }
        }
    }

    /// Resolves asynchronously.
    public static func resolve(host: String, port: Int) async throws(ResolverError) -> [SocketAddress] {
        let result = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: resolveBlocking(host: host, port: port)) }
        }
        return try result.get()
    }
}

extension String {
    func trimmingBrackets() -> String {
        hasPrefix("[") && hasSuffix("]") ? String(dropFirst().dropLast()) : self
    }
}
