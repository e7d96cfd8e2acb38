import VeilCore

/// RFC 6901 pointers.
public enum JSONPointer {
    /// A key as one reference token (`~` → `~0`, `/` → `~1`).
    public static func escape(_ key: String) -> String {
        key.replacing("~", with: "~0").replacing("/", with: "~1")
    }
}

/// Builds RFC 6902 operations against a document that is not changed meanwhile: each
/// operation is valid after the ones before it.
struct JSONPatchBuilder {
    private(set) var operations: [JSONValue] = []

    mutating func add(_ path: String, _ value: JSONValue) {
        operations.append(.object(["op": .string("add"), "path": .string(path), "value": value]))
    }

    mutating func replace(_ path: String, _ value: JSONValue) {
        operations.append(.object(["op": .string("replace"), "path": .string(path), "value": value]))
    }

    /// Appends to the array at `path` every item whose `key` field is not there yet, creating
    /// the array when `existing` is absent.
    mutating func appendMissing(to path: String, existing: JSONValue?, key: String, items: [(String, JSONValue)]) {
        let present = Set((existing?.arrayValue ?? []).compactMap { $0[key]?.stringValue })
        let missing = items.filter { !present.contains($0.0) }
        guard !missing.isEmpty else { return }
        if existing == nil || existing == .null {
            add(path, .array(missing.map(\.1)))
        } else {
            for item in missing { add(path + "/-", item.1) }
        }
    }
}
