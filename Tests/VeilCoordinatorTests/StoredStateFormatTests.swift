import Foundation
import Testing
@testable import VeilCoordinator

/// The sealed state's encoding: format 3 writes bytes as base64 strings, format 2 states (bytes
/// as arrays of numbers) still open to the same state, and malformed bytes are refused.
@Suite struct StoredStateFormatTests {
    /// A state with every kind of byte field set.
    static func sampleState() throws -> CoordinatorState {
        var state = CoordinatorState(authority: try CertificateAuthority.generate())
        state.generation = 7
        state.manifest = Array(#"{"Packages": {}}"#.utf8)
        state.secrets = ["key": SecretValue(bytes: [1, 2, 3]), "tls": SecretValue(certificate: [4, 5], privateKey: [6], publicKey: [7, 8, 9])]
        state.protectedFiles = ["key\u{0}/data/db": .init(version: 3, root: [10, 11])]
        state.pendingUpdate = .init(manifest: [12, 13], acknowledgedBy: ["alice"])
        return state
    }

    static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func formatThreeWritesBytesAsBase64StringsAndReadsThemBack() throws {
        let state = try Self.sampleState()
        let encoded = state.encoded()
        let object = try Self.object(encoded)
        #expect(object["format"] as? Int == 3)
        #expect(object["rootKey"] as? String == Data(state.rootKey).base64EncodedString())
        #expect(object["manifest"] as? String == Data(#"{"Packages": {}}"#.utf8).base64EncodedString())
        let secrets = try #require(object["secrets"] as? [String: [String: String]])
        #expect(secrets["key"] == ["bytes": "AQID"], "absent parts are left out, not written as null")
        #expect(secrets["tls"]?["publicKey"] == "BwgJ")
        #expect(try CoordinatorState.decode(encoded) == state)
        #expect(encoded.count < 3 * Data(state.rootCertificate).base64EncodedString().count + 2_000, "no byte is spelled as a JSON number")
    }

    @Test func aFormatTwoStateWithBytesAsArraysOfNumbersOpensToTheSameState() throws {
        let state = try Self.sampleState()
        var object = try Self.object(state.encoded())
        func numbers(_ value: Any?) -> Any? {
            guard let text = value as? String, let data = Data(base64Encoded: text) else { return value }
            return data.map { Int($0) }
        }
        object["format"] = 2
        for key in ["rootKey", "rootCertificate", "intermediateKey", "intermediateCertificate", "coordinatorCAKey", "coordinatorCACertificate", "manifest"] {
            object[key] = numbers(object[key])
        }
        var secrets = try #require(object["secrets"] as? [String: [String: Any]])
        for name in secrets.keys { secrets[name] = secrets[name]!.mapValues { numbers($0)! } }
        object["secrets"] = secrets
        var files = try #require(object["protectedFiles"] as? [String: [String: Any]])
        for name in files.keys { files[name]!["root"] = numbers(files[name]!["root"]) }
        object["protectedFiles"] = files
        var pending = try #require(object["pendingUpdate"] as? [String: Any])
        pending["manifest"] = numbers(pending["manifest"])
        object["pendingUpdate"] = pending
        let formatTwo = Array(try JSONSerialization.data(withJSONObject: object))
        #expect(String(decoding: formatTwo, as: UTF8.self).contains("\"rootKey\":["), "the fixture spells bytes as numbers")

        var opened = try CoordinatorState.decode(formatTwo)
        #expect(opened.format == 2)
        opened.format = CoordinatorState.currentFormat
        #expect(opened == state)
        #expect(try Self.object(opened.encoded())["rootKey"] is String, "written again in format 3")
    }

    @Test func malformedStoredBytesAreRefused() throws {
        let valid = try Self.object(try Self.sampleState().encoded())
        for bad: Any in ["not base64!", [1, 256], [-1], ["a"], 5] {
            var object = valid
            object["rootCertificate"] = bad
            let bytes = Array(try JSONSerialization.data(withJSONObject: object))
            #expect(throws: CoordinatorError.self, "\(bad)") { try CoordinatorState.decode(bytes) }
        }
        var missing = valid
        missing["rootKey"] = nil
        #expect(throws: CoordinatorError.self) { try CoordinatorState.decode(Array(try JSONSerialization.data(withJSONObject: missing))) }
    }
}
