import Crypto
import Synchronization
import X509

/// Memoizes pure parses (PEM chains → certificates, TCB info / QE identity JSON → models)
/// keyed by SHA-256 of the input bytes. Only parsing is reused: every signature, chain, CRL
/// and validity check still runs on every verification, over the same bytes.
/// Bounded: cleared when full.
final class ParseMemo<Value: Sendable>: Sendable {
    private let entries = Mutex<[[UInt8]: Value]>([:])
    private let capacity: Int

    init(capacity: Int = 256) {
        self.capacity = capacity
    }

    func value<E: Error>(for bytes: [UInt8], parse: () throws(E) -> Value) throws(E) -> Value {
        let key = Array(SHA256.hash(data: bytes))
        if let hit = entries.withLock({ $0[key] }) { return hit }
        let value = try parse()
        entries.withLock {
            if $0.count >= capacity { $0.removeAll(keepingCapacity: true) }
            $0[key] = value
        }
        return value
    }
}

enum ParseMemos {
    static let certificates = ParseMemo<[Certificate]>()
    static let tcbInfo = ParseMemo<TCBInfo>()
    static let qeIdentity = ParseMemo<QEIdentity>()
}
