import Crypto
import Foundation
import Logging
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilLauncher
import VeilManifest
import VeilCore

/// The transaction primitive on the embedded file store: exact quotas under concurrency,
/// updates applied once, recovery data written with the state, rollback and deletion refused.
@Suite struct TransactionTests {
    @Test func maxActivationsIsExactUnderConcurrency() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest(maxActivations: 10))
        let requests = try (0..<40).map { _ in try fixture.request(coordinator).0 }
        // One clock for every check: a test process starved by the suites running beside it
        // must not see its nonces expire (what is tested is the quota, not the lifetime).
        let now = Date()
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for request in requests { group.addTask { (try? await coordinator.activate(request, now: now)) != nil } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 10)
        #expect(coordinator.status().activations["cache"] == 10)
        #expect(try await fixture.coordinator().status().activations["cache"] == 10, "the count is in the stored state")
    }

    /// The generation mark is written outside the transaction lock (shared by transactions that
    /// finish meanwhile), but still before anyone hears of their transaction.
    @Test func everyAcknowledgedActivationIsCoveredByTheGenerationMarkOnDisk() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest(maxActivations: 1000))
        let requests = try (0..<24).map { _ in try fixture.request(coordinator).0 }
        let now = Date()
        let covered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for request in requests {
                group.addTask {
                    let before = coordinator.generation
                    _ = try await coordinator.activate(request, now: now)
                    // A fresh vault reads only what is on disk.
                    return StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey).highestGeneration > before
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(covered == Array(repeating: true, count: 24))
        #expect(StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey).highestGeneration == coordinator.generation)
        #expect(coordinator.status().activations["cache"] == 24)
    }

    @Test func concurrentAcknowledgementsApplyAnUpdateOnce() async throws {
        let fixture = try Fixture()
        let users = try (0..<3).map { try userCertificate("u\($0)") }
        func manifest(_ version: Int) -> [UInt8] {
            func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
            let userList = users.enumerated().map { "\"u\($0)\": {\"Certificate\": \(json($1.pem)), \"Roles\": [\"admin\"]}" }.joined(separator: ", ")
            return Array("""
                {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))", "SecurityVersion": \(version)}},
                 "Services": {"cache": {"Package": "p"}}, "Users": {\(userList)},
                 "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
                 "Config": {"AllowSimulation": true, "UpdateAcknowledgements": 2}}
                """.utf8)
        }
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(1))
        let proposal = manifest(2)
        _ = try await coordinator.proposeUpdate(proposal, by: coordinator.user(users[0]))
        let applied = await withTaskGroup(of: Bool.self) { group in
            for user in users.dropFirst() {
                group.addTask { (try? await coordinator.acknowledgeUpdate(proposal, by: coordinator.user(user)))?.applied == true }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(applied.filter { $0 }.count == 1, "exactly one acknowledgement applies it")
        #expect(coordinator.log.filter { $0.event == "manifestUpdated" }.count == 1)
        #expect(coordinator.manifest?.digest == Array(SHA256.hash(data: proposal)))
    }

    @Test func aPackageUpdateKeepsAPendingProposal() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let alice = try userCertificate("alice"), bob = try userCertificate("bob")
        func manifest(_ version: Int, extra: Bool = false) -> [UInt8] {
            func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
            return Array("""
                {"Packages": {"p": {"Kind": "simulated", "SignerID": "\(String(repeating: "ab", count: 32))", "ProductID": 1, "SecurityVersion": \(version)}},
                 "Services": {"cache": {"Package": "p"}\(extra ? ", \"web\": {\"Package\": \"p\"}" : "")},
                 "Users": {"alice": {"Certificate": \(json(alice.pem)), "Roles": ["admin", "pkg"]}, "bob": {"Certificate": \(json(bob.pem)), "Roles": ["admin"]}},
                 "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]},
                           "pkg": {"ResourceType": "Packages", "ResourceNames": ["p"], "Actions": ["UpdatePackage"]}},
                 "Config": {"AllowSimulation": true}}
                """.utf8)
        }
        try await coordinator.setManifest(manifest(1))
        let proposal = manifest(3, extra: true)
        _ = try await coordinator.proposeUpdate(proposal, by: coordinator.user(alice))
        try await coordinator.updatePackages(Array(#"{"Packages": {"p": {"SecurityVersion": 2}}}"#.utf8), by: coordinator.user(alice))
        #expect(coordinator.updateStatus().pendingDigest == Array(SHA256.hash(data: proposal)), "the proposal is still pending")
        let status = try await coordinator.acknowledgeUpdate(proposal, by: coordinator.user(bob))
        #expect(status.applied)
        #expect(coordinator.manifest?.packages["p"]?.securityVersion == 3)
    }

    @Test func recoveryDataIsWrittenWithTheStateInOneStep() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let recoveryKey = P256.KeyAgreement.PrivateKey()
        let manifest = """
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}}, "Services": {"cache": {"Package": "p"}},
             "RecoveryKeys": {"k": \(String(decoding: try JSONEncoder().encode(recoveryKey.publicKey.pemRepresentation), as: UTF8.self))},
             "Config": {"AllowSimulation": true}}
            """
        try await coordinator.setManifest(Array(manifest.utf8))
        let stored = try #require(try await FileStateStore(directory: fixture.directory).read())
        let header = try #require(StateEnvelope.header(stored.bytes))
        let recovery = try JSONDecoder().decode(RecoveryData.self, from: Data(try #require(header.recovery)))
        #expect(recovery.shares.map(\.name) == ["k"], "recovery data travels in the same file as the state it unlocks")
        #expect(!FileManager.default.fileExists(atPath: fixture.directory + "/recovery.json"))
    }

    @Test func anOldStatePutBackOrADeletedStateIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let path = fixture.directory + "/" + FileStateStore.fileName
        let old = try Data(contentsOf: URL(fileURLWithPath: path))
        try await coordinator.setManifest(fixture.manifest())
        // The older file, whose secrets an attacker would like served again.
        try old.write(to: URL(fileURLWithPath: path))
        do {
            _ = try await fixture.coordinator()
            Issue.record("an older state must be refused")
        } catch Coordinator.OpenError.refused(.rollback(let stored, let seen)) {
            #expect(stored < seen)
        }
        // Deleted: no silent fresh start while this replica holds a key and a generation.
        try FileManager.default.removeItem(atPath: path)
        do {
            _ = try await fixture.coordinator()
            Issue.record("a deleted state must be refused")
        } catch Coordinator.OpenError.refused(.stateMissing) {}
        // Explicit reset: store and vault cleared, a new coordinator with a new root.
        try await FileStateStore(directory: fixture.directory).reset()
        StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey).reset()
        let fresh = try await fixture.coordinator()
        #expect(fresh.rootCertificatePEM != coordinator.rootCertificatePEM)
        #expect(fresh.phase == .awaitingManifest)
    }
}
