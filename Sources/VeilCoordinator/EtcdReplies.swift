import Foundation

/// etcd's JSON gateway answers, read without trusting them: a member, a proxy or anyone on
/// the path to them chooses these bytes. Every reader returns a value or a ``StateStoreError``
/// and never traps; the fuzz target `etcd-reply` feeds them arbitrary bytes.
package enum EtcdReplies {
    struct KeyValue: Decodable {
        var key: String
        var value: String?
        var mod_revision: String?
    }
    struct Header: Decodable { var revision: String? }
    struct RangeResponse: Decodable {
        var header: Header?
        var kvs: [KeyValue]?
    }
    struct TxnResponse: Decodable {
        var header: Header?
        var succeeded: Bool?
    }
    struct ErrorResponse: Decodable {
        var error: String?
        var message: String?
    }

    /// The value of the state key `key` in a `/v3/kv/range` answer, nil when it is absent.
    package static func storedState(range bytes: [UInt8], key: String) throws(StateStoreError) -> StoredState? {
        guard let kv = try decode(RangeResponse.self, bytes).kvs?.first else { return nil }
        guard let value = kv.value.flatMap({ Data(base64Encoded: $0) }), let revision = kv.mod_revision.flatMap(Int64.init) else {
            throw .corrupt("the etcd key \(key) holds no base64 value")
        }
        return StoredState(bytes: Array(value), revision: revision)
    }

    /// The revision a `/v3/kv/txn` answer committed at; `.conflict` when its comparison failed.
    package static func committedRevision(txn bytes: [UInt8]) throws(StateStoreError) -> Int64 {
        let txn = try decode(TxnResponse.self, bytes)
        guard txn.succeeded == true else { throw .conflict }
        guard let revision = txn.header?.revision.flatMap(Int64.init) else { throw .corrupt("etcd txn answer has no revision") }
        return revision
    }

    /// One line of a `/v3/watch` stream: whether the watch was cancelled, and the values it
    /// carries (events without a readable value or revision are skipped). Nil for a line
    /// that is not a watch message.
    package static func watchLine(_ line: ArraySlice<UInt8>) -> (canceled: Bool, states: [StoredState])? {
        struct Event: Decodable { var kv: KeyValue? }
        struct Result: Decodable {
            var header: Header?
            var events: [Event]?
            var canceled: Bool?
        }
        struct Message: Decodable { var result: Result? }
        guard let message = try? JSONDecoder().decode(Message.self, from: Data(line)), let result = message.result else { return nil }
        let states = (result.events ?? []).compactMap { event -> StoredState? in
            guard let kv = event.kv, let value = kv.value.flatMap({ Data(base64Encoded: $0) }), let revision = kv.mod_revision.flatMap(Int64.init) else {
                return nil
            }
            return StoredState(bytes: Array(value), revision: revision)
        }
        return (result.canceled == true, states)
    }

    /// Registered replicas in a `/v3/kv/range` answer over `start` (the registry prefix):
    /// replica ID → peer address; entries that do not read as registrations are skipped.
    package static func peers(range bytes: [UInt8], start: String) throws(StateStoreError) -> [String: String] {
        struct Entry: Decodable { var peer: String }
        var result: [String: String] = [:]
        for kv in try decode(RangeResponse.self, bytes).kvs ?? [] {
            guard let key = Data(base64Encoded: kv.key).map({ String(decoding: $0, as: UTF8.self) }), key.hasPrefix(start),
                let value = kv.value.flatMap({ Data(base64Encoded: $0) }), let entry = try? JSONDecoder().decode(Entry.self, from: value)
            else { continue }
            result[String(key.dropFirst(start.count))] = entry.peer
        }
        return result
    }

    /// The reason an error answer gives, or its status.
    static func reason(_ bytes: [UInt8], status: UInt) -> String {
        (try? JSONDecoder().decode(ErrorResponse.self, from: Data(bytes))).flatMap { $0.message ?? $0.error } ?? "HTTP \(status)"
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws(StateStoreError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw .corrupt("etcd answered \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        }
    }
}
