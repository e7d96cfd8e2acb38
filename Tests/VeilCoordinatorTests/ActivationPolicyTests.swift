import Crypto
import Foundation
import Testing
@testable import VeilAttestation
@testable import VeilCoordinator
import VeilImageFormat
import VeilManifest
import VeilCore

/// The activation rules without a running coordinator: one test per rejection reason.
@Suite struct ActivationPolicyTests {
    static let measurement = [UInt8](repeating: 0xAB, count: 32)
    static let key = [UInt8](repeating: 7, count: 32)

    let manifest: Manifest
    let secrets: [String: SecretValue]

    init() throws {
        manifest = try Manifest.parse(Array(#"""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\#(Hex.encode(Self.measurement))"},
                          "sgx": {"Kind": "sgx", "UniqueID": "\#(Hex.encode(Self.measurement))"},
                          "hardened": {"Kind": "sgx", "UniqueID": "\#(Hex.encode(Self.measurement))",
                                       "AcceptedTCBStatuses": ["UpToDate", "SWHardeningNeeded"], "AcceptedAdvisories": ["INTEL-SA-00615"]}},
             "Services": {"web": {"Package": "app", "ProtectedFilesKey": "filesKey", "MaxActivations": 2},
                          "plain": {"Package": "app"},
                          "enclave": {"Package": "sgx"},
                          "mitigated": {"Package": "hardened"}},
             "Secrets": {"filesKey": {"Type": "symmetric-key", "Size": 256}, "unset": {"Type": "symmetric-key", "Size": 256, "UserDefined": true}},
             "Config": {"AllowSimulation": true}}
            """#.utf8))
        var key = SecretValue()
        key.bytes = Self.key
        secrets = ["filesKey": key]
    }

    func claims(measurement: [UInt8] = measurement, tee: TEEKind = .simulated, tcb: TCBVerdict? = nil) -> Claims {
        Claims(tee: tee, measurement: measurement, reportData: [UInt8](repeating: 0, count: 64), simulated: tee == .simulated, tcb: tcb)
    }

    func header(path: String, version: UInt64, key: [UInt8] = key, content: String = "data") throws -> PresentedProtectedFile {
        let sealed = try ProtectedFile.seal(Array(content.utf8), path: path, secret: SymmetricKey(data: key), version: version)
        return PresentedProtectedFile(path: path, header: Array(sealed.prefix(ProtectedFile.headerSize)))
    }

    func evaluate(_ service: String, claims: Claims, files: [PresentedProtectedFile] = []) throws(CoordinatorError) -> ActivationDecision {
        try ActivationPolicy.evaluate(service: service, claims: claims, protectedFiles: files, manifest: manifest, secrets: secrets)
    }

    @Test func aMatchingActivationIsDecidedWithWhatToRecord() throws {
        let decision = try evaluate("web", claims: claims(), files: [header(path: "/etc/app.conf", version: 3)])
        #expect(decision.needsTransaction && decision.protectedFiles.map(\.record.version) == [3])
        #expect(decision.protectedFiles.first?.key == "filesKey\0/etc/app.conf")
        #expect(try !evaluate("plain", claims: claims()).needsTransaction)
    }

    @Test func anUnknownServiceIsRefused() {
        #expect(throws: CoordinatorError.unknownService("nope")) { try evaluate("nope", claims: claims()) }
    }

    @Test func anotherMeasurementIsAPackageMismatch() {
        let error = #expect(throws: CoordinatorError.self) { try evaluate("plain", claims: claims(measurement: .init(repeating: 1, count: 32))) }
        guard case .packageMismatch(let service, let package, let reason) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(service == "plain" && package == "app" && reason.contains("measurement"))
    }

    @Test func aTCBStatusTheManifestDoesNotAcceptIsRefused() {
        let outOfDate = TCBVerdict(status: .outOfDate, advisoryIDs: ["INTEL-SA-00001"])
        #expect(throws: CoordinatorError.tcbStatusNotAccepted(service: "enclave", package: "sgx", refusal: .status(.outOfDate, accepted: [.upToDate]))) {
            try evaluate("enclave", claims: claims(tee: .sgx, tcb: outOfDate))
        }
        #expect(throws: Never.self) { try evaluate("enclave", claims: claims(tee: .sgx, tcb: TCBVerdict(status: .upToDate, advisoryIDs: []))) }
    }

    /// A package's own AcceptedTCBStatuses replace the Config default for it alone, and its
    /// AcceptedAdvisories admit only the advisories it lists.
    @Test func aPackageAcceptsTheStatusesAndAdvisoriesItLists() {
        let hardening = TCBVerdict(status: .swHardeningNeeded, advisoryIDs: ["INTEL-SA-00615"])
        #expect(throws: Never.self) { try evaluate("mitigated", claims: claims(tee: .sgx, tcb: hardening)) }
        #expect(throws: CoordinatorError.tcbStatusNotAccepted(service: "enclave", package: "sgx", refusal: .status(.swHardeningNeeded, accepted: [.upToDate])),
                "the same verdict under the default package") {
            try evaluate("enclave", claims: claims(tee: .sgx, tcb: hardening))
        }
        let another = TCBVerdict(status: .swHardeningNeeded, advisoryIDs: ["INTEL-SA-00615", "INTEL-SA-00657"])
        #expect(throws: CoordinatorError.tcbStatusNotAccepted(service: "mitigated", package: "hardened", refusal: .advisories(["INTEL-SA-00657"], status: .swHardeningNeeded))) {
            try evaluate("mitigated", claims: claims(tee: .sgx, tcb: another))
        }
        let outOfDate = TCBVerdict(status: .outOfDate, advisoryIDs: ["INTEL-SA-00615"])
        #expect(throws: CoordinatorError.tcbStatusNotAccepted(service: "mitigated", package: "hardened", refusal: .status(.outOfDate, accepted: [.upToDate, .swHardeningNeeded]))) {
            try evaluate("mitigated", claims: claims(tee: .sgx, tcb: outOfDate))
        }
    }

    @Test func protectedFilesForAServiceWithoutAKeyAreRefused() throws {
        let file = try header(path: "/etc/app.conf", version: 1)
        #expect(throws: CoordinatorError.protectedFileRejected(path: "/etc/app.conf", reason: "service 'plain' has no ProtectedFilesKey")) {
            try evaluate("plain", claims: claims(), files: [file])
        }
    }

    @Test func aKeyNotSetYetCannotOpenHeaders() throws {
        let unsetManifest = try Manifest.parse(Array(#"""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\#(Hex.encode(Self.measurement))"}},
             "Services": {"web": {"Package": "app", "ProtectedFilesKey": "unset"}},
             "Secrets": {"unset": {"Type": "symmetric-key", "Size": 256, "UserDefined": true}}, "Config": {"AllowSimulation": true}}
            """#.utf8))
        let error = #expect(throws: CoordinatorError.self) {
            try ActivationPolicy.evaluate(service: "web", claims: claims(), protectedFiles: [try header(path: "/a", version: 1)], manifest: unsetManifest, secrets: [:])
        }
        guard case .renderFailed(let service, _) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(service == "web")
    }

    @Test func relativeOrNULPathsAreBadRequests() throws {
        for path in ["etc/app.conf", "/etc/a\0b"] {
            let file = PresentedProtectedFile(path: path, header: try header(path: "/etc/app.conf", version: 1).header)
            let error = #expect(throws: CoordinatorError.self) { try evaluate("web", claims: claims(), files: [file]) }
            guard case .badRequest = error else { Issue.record("\(path): \(String(describing: error))"); continue }
        }
    }

    @Test func headersUnderAnotherKeyOrForAnotherPathAreRejected() throws {
        let otherKey = try header(path: "/etc/app.conf", version: 1, key: .init(repeating: 9, count: 32))
        let movedFile = PresentedProtectedFile(path: "/etc/other.conf", header: try header(path: "/etc/app.conf", version: 1).header)
        var tampered = try header(path: "/etc/app.conf", version: 1)
        tampered.header[20] ^= 1
        for file in [otherKey, movedFile, tampered] {
            let error = #expect(throws: CoordinatorError.self) { try evaluate("web", claims: claims(), files: [file]) }
            guard case .protectedFileRejected(let path, _) = error else { Issue.record("\(String(describing: error))"); continue }
            #expect(path == file.path)
        }
    }

    /// What ``Coordinator/record(_:in:)`` refuses inside the transaction: quota, rollback, fork.
    /// A refused change leaves the state as it was (the transaction discards it), as here.
    @Test func theCommitRefusesQuotaRollbackAndFork() throws {
        var state = CoordinatorState(authority: try CertificateAuthority.generate())
        func commit(_ files: [PresentedProtectedFile]) throws {
            var attempt = state
            try Coordinator.record(try evaluate("web", claims: claims(), files: files), in: &attempt)
            state = attempt
        }
        try commit([header(path: "/a", version: 2)])
        #expect(throws: CoordinatorError.protectedFileRollback(path: "/a", recorded: 2, presented: 1)) { try commit([header(path: "/a", version: 1)]) }
        #expect(throws: CoordinatorError.protectedFileForked(path: "/a", version: 2)) { try commit([header(path: "/a", version: 2, content: "other")]) }
        try commit([header(path: "/a", version: 3)])
        #expect(state.activations["web"] == 2)
        #expect(throws: CoordinatorError.activationLimitReached(service: "web", limit: 2)) { try commit([]) }
    }
}
