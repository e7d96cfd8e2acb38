import Crypto
import Foundation
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilManifest

/// What a replica reads back from its store is outside the TEE: recovery data beside the
/// sealed state and etcd's answers are refused precisely when malformed, never trusted.
@Suite struct StoredRecoveryDataTests {
    static let keys = (0..<3).map { _ in P256.KeyAgreement.PrivateKey() }

    static func written() throws -> RecoveryData {
        let pems = keys.enumerated().map { index, key in
            "\"k\(index)\": \(String(decoding: try! JSONEncoder().encode(key.publicKey.pemRepresentation), as: UTF8.self))"
        }
        let manifest = try Manifest.parse(Array("""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(String(repeating: "ab", count: 32))"}},
             "Services": {"s": {"Package": "p"}}, "RecoveryKeys": {\(pems.joined(separator: ","))},
             "Config": {"RecoveryThreshold": 2, "AllowSimulation": true}}
            """.utf8))
        return try #require(try RecoveryData.make(stateKey: SymmetricKey(size: .bits256), manifest: manifest))
    }

    static func bytes(_ data: RecoveryData) -> [UInt8] { canonicalJSONBytes(data) }

    @Test func recoveryDataAsWrittenReadsBack() throws {
        let data = try Self.written()
        #expect(try RecoveryData.parse(Self.bytes(data)) == data)
    }

    static let alterations: [(String, @Sendable (inout RecoveryData) -> Void, @Sendable (RecoveryDataError) -> Bool)] = [
        ("negative threshold", { $0.threshold = -1 }, { $0 == .threshold(-1, shares: 3) }),
        ("zero threshold", { $0.threshold = 0 }, { $0 == .threshold(0, shares: 3) }),
        ("threshold above the shares", { $0.threshold = 4 }, { $0 == .threshold(4, shares: 3) }),
        ("no shares", { $0.shares = []; $0.threshold = 1 }, { $0 == .threshold(1, shares: 0) }),
        ("another format", { $0.format = 2 }, { $0 == .unsupportedFormat(2) }),
        ("a repeated name", { $0.shares[1].name = $0.shares[0].name }, { if case .share = $0 { true } else { false } }),
        ("a short commitment", { $0.shares[0].commitment = "abcd" }, { if case .share(_, let why) = $0 { why.contains("commitment") } else { false } }),
        ("a ciphertext not base64", { $0.shares[2].ciphertext = "%%%" }, { if case .share(_, let why) = $0 { why.contains("base64") } else { false } }),
        ("a recoverer not a digest", { $0.recoverers = ["ab"] }, { $0 == .recoverers }),
    ]

    @Test(arguments: alterations.indices) func alteredRecoveryDataIsRefused(_ index: Int) throws {
        let (name, alter, expected) = Self.alterations[index]
        var data = try Self.written()
        alter(&data)
        do {
            _ = try RecoveryData.parse(Self.bytes(data))
            Issue.record("\(name): accepted")
        } catch {
            #expect(expected(error), "\(name): \(error)")
        }
    }

    @Test func bytesThatAreNotRecoveryDataAreRefused() {
        for bytes in [[], Array("[]".utf8), Array(#"{"format": 1}"#.utf8), [0xff, 0x00]] as [[UInt8]] {
            #expect(throws: RecoveryDataError.self) { try RecoveryData.parse(bytes) }
        }
    }

    @Test func theKeyIsRebuiltFromThresholdManySharesOnly() throws {
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let shares = Shamir.split(key, threshold: 2, count: 3).map(\.bytes)
        var data = try Self.written()
        #expect(data.stateKey(from: [shares[0], shares[2]]) == key)
        #expect(data.stateKey(from: [shares[1]]) == nil, "fewer than the threshold")
        #expect(data.stateKey(from: [shares[0], [0] + shares[1].dropFirst()]) == nil, "a share at x = 0")
        #expect(data.stateKey(from: [shares[0], [shares[1][0]]]) == nil, "a share without y")
        data.threshold = -1
        #expect(data.stateKey(from: shares) == nil, "a threshold below 1 rebuilds nothing (and does not trap)")
    }
}

@Suite struct EtcdReplyTests {
    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    static let key = base64("/veil/state")

    @Test func aRangeAnswerYieldsTheValueAndItsRevision() throws {
        let answer = #"{"header":{"revision":"7"},"kvs":[{"key":"\#(Self.key)","mod_revision":"7","value":"\#(Self.base64("sealed"))"}]}"#
        let stored = try #require(try EtcdReplies.storedState(range: Array(answer.utf8), key: "/veil/state"))
        #expect(stored == StoredState(bytes: Array("sealed".utf8), revision: 7))
        #expect(try EtcdReplies.storedState(range: Array(#"{"header":{"revision":"7"}}"#.utf8), key: "/veil/state") == nil)
    }

    @Test func malformedRangeAnswersAreCorrupt() {
        for answer in [
            "not json", #"{"kvs":[{"key":"x","mod_revision":"7","value":"%%"}]}"#, #"{"kvs":[{"key":"x","mod_revision":"seven","value":"AA=="}]}"#,
            #"{"kvs":[{"key":"x","value":"AA=="}]}"#,
        ] {
            #expect(throws: StateStoreError.self, "\(answer)") { try EtcdReplies.storedState(range: Array(answer.utf8), key: "/veil/state") }
        }
    }

    @Test func aTransactionCommitsOnlyWhenEtcdSaysSoWithARevision() throws {
        #expect(try EtcdReplies.committedRevision(txn: Array(#"{"header":{"revision":"8"},"succeeded":true}"#.utf8)) == 8)
        #expect(throws: StateStoreError.conflict) { try EtcdReplies.committedRevision(txn: Array(#"{"header":{"revision":"8"}}"#.utf8)) }
        #expect(throws: StateStoreError.self) { try EtcdReplies.committedRevision(txn: Array(#"{"succeeded":true}"#.utf8)) }
        #expect(throws: StateStoreError.self) { try EtcdReplies.committedRevision(txn: Array("<html>".utf8)) }
    }

    @Test func watchLinesYieldReadableEventsOnly() throws {
        let good = #"{"kv":{"key":"\#(Self.key)","mod_revision":"10","value":"\#(Self.base64("v10"))"}}"#
        let bad = #"{"kv":{"key":"\#(Self.key)","mod_revision":"x","value":"AA=="}}"#
        let line = #"{"result":{"events":[\#(bad),\#(good)]}}"#
        let message = try #require(EtcdReplies.watchLine(Array(line.utf8)[...]))
        #expect(!message.canceled)
        #expect(message.states == [StoredState(bytes: Array("v10".utf8), revision: 10)])
        #expect(EtcdReplies.watchLine(Array(#"{"result":{"canceled":true}}"#.utf8)[...])?.canceled == true)
        #expect(EtcdReplies.watchLine(Array("garbage".utf8)[...]) == nil)
    }

    @Test func theRegistryKeepsOnlyRegistrationsUnderItsPrefix() throws {
        let mine = #"{"key":"\#(Self.base64("/veil/replicas/r1"))","value":"\#(Self.base64(#"{"peer":"10.0.0.2:7443"}"#))"}"#
        let foreign = #"{"key":"\#(Self.base64("/other/r2"))","value":"\#(Self.base64(#"{"peer":"10.0.0.3:7443"}"#))"}"#
        let garbled = #"{"key":"\#(Self.base64("/veil/replicas/r3"))","value":"\#(Self.base64("not json"))"}"#
        let answer = #"{"kvs":[\#(mine),\#(foreign),\#(garbled)]}"#
        #expect(try EtcdReplies.peers(range: Array(answer.utf8), start: "/veil/replicas/") == ["r1": "10.0.0.2:7443"])
    }
}
