import Crypto
import Foundation
import VeilAttestation
import VeilCore
import VeilManifest

/// Which replicas may hold the state key: evidence that verifies under ``verification`` and
/// whose identity is this replica's own — for a TD MRTD *and* RTMRs and MRCONFIGID, for an SNP
/// guest the measurement and HOST_DATA, so a TD booted from the same firmware with another
/// kernel or program is refused — or (answering side) matches one of the manifest's
/// `Config.CoordinatorPackages`: how a new coordinator version joins.
public struct ReplicaPolicy: Sendable {
    public var ownIdentity: TEEIdentity
    public var verification: VerificationPolicy
    /// Where `verification`'s Intel collateral comes from when the replica fetches it
    /// (`--collateral`): a peer's SGX/TDX quote is prefetched for before it is checked.
    public var collateralCache: DCAPCollateralCache?

    public init(ownIdentity: TEEIdentity, verification: VerificationPolicy, collateralCache: DCAPCollateralCache? = nil) {
        self.ownIdentity = ownIdentity
        self.verification = verification
        self.collateralCache = collateralCache
    }

    /// A simulated replica's policy: its own launch measurement.
    public init(ownMeasurement: [UInt8], verification: VerificationPolicy) {
        self.init(ownIdentity: TEEIdentity(tee: .simulated, measurement: ownMeasurement), verification: verification)
    }

    /// ``check(_:binding:manifest:)`` after fetching the collateral `evidence` needs, when
    /// the replica fetches collateral.
    func verifiedClaims(_ evidence: Evidence, binding reportData: [UInt8], manifest: Manifest?) async throws(CoordinatorError) -> Claims {
        await collateralCache?.prefetch(for: evidence)
        return try check(evidence, binding: reportData, manifest: manifest)
    }

    /// Why `evidence` is not a replica this policy trusts with the state key, or its claims.
    func check(_ evidence: Evidence, binding reportData: [UInt8], manifest: Manifest?) throws(CoordinatorError) -> Claims {
        let claims: Claims
        do {
            claims = try Verifier(policy: verification).verify(evidence, expectedReportData: reportData)
        } catch let error as AttestationError {
            throw .evidenceRejected(error)
        } catch {
            throw .evidenceRejected(.malformedEvidence("\(error)"))
        }
        try accept(claims, manifest: manifest)
        return claims
    }

    /// What a replica with this replica's own identity must also meet on SEV-SNP: no debug,
    /// no migration agent (the state key must not leave with an exported guest), a valid
    /// policy. Its TCB and VMPL are pinned through `Config.CoordinatorPackages`.
    static let peerSNPRequirements = SNPRequirements(minimumTCB: .any, vmpl: nil)

    /// The decision on verified claims: this replica's own identity (and, on SNP,
    /// ``peerSNPRequirements``), or a package named in `Config.CoordinatorPackages`.
    func accept(_ claims: Claims, manifest: Manifest?) throws(CoordinatorError) {
        let identity = TEEIdentity(claims)
        var reason = claims.debug ? "debug evidence" : "identity \(identity) is not this replica's \(ownIdentity)"
        if identity == ownIdentity && !claims.debug {
            do {
                if let guest = claims.snp { try Self.peerSNPRequirements.check(guest) }
                return
            } catch {
                reason = error.description(requiredBy: "a coordinator replica")
            }
        }
        if let manifest {
            for name in manifest.config.coordinatorPackages {
                if let package = manifest.packages[name], package.mismatch(claims) == nil { return }
            }
        }
        throw .packageMismatch(
            service: "coordinator replica", package: "own measurement" + ((manifest?.config.coordinatorPackages.isEmpty ?? true) ? "" : " or Config.CoordinatorPackages"),
            reason: reason)
    }

    static func requestBinding(publicKey: [UInt8], nonce: [UInt8]) -> [UInt8] {
        ReportData.binding(Array("veil-peer-request\0".utf8) + publicKey, nonce: nonce)
    }

    static func responseBinding(publicKey: [UInt8], nonce: [UInt8], encapsulatedKey: [UInt8], ciphertext: [UInt8]) -> [UInt8] {
        ReportData.binding(Array("veil-peer-response\0".utf8) + Array(SHA256.hash(data: publicKey)) + encapsulatedKey + ciphertext, nonce: nonce)
    }

    static let hpkeInfo = Data("veil-state-key-v1".utf8)
}

/// A replica that holds the state key answers peers that prove, by attestation, to be
/// replicas the policy trusts; the key travels sealed to the requester's ephemeral key, with
/// this replica's own evidence over the answer.
public final class PeerKeyService: Sendable {
    let coordinator: Coordinator
    let policy: ReplicaPolicy

    public init(coordinator: Coordinator, policy: ReplicaPolicy) {
        self.coordinator = coordinator
        self.policy = policy
    }

    /// The state key sealed to `publicKeyBytes` (an ephemeral P-256 key, x9.63) for a replica
    /// whose `evidence` binds that key and `nonce`, with this replica's evidence over the answer.
    func answer(publicKey publicKeyBytes: [UInt8], nonce: [UInt8], evidence: Evidence) async throws(CoordinatorError) -> SealedStateKey {
        guard nonce.count == 32, let recipient = try? P256.KeyAgreement.PublicKey(x963Representation: publicKeyBytes) else {
            throw .badRequest("publicKey must be a P-256 key (x9.63) and nonce 32 bytes")
        }
        let claims: Claims
        do {
            claims = try await policy.verifiedClaims(
                evidence, binding: ReplicaPolicy.requestBinding(publicKey: publicKeyBytes, nonce: nonce), manifest: coordinator.manifest)
        } catch {
            coordinator.logger.warning("state key refused to a peer", metadata: ["reason": "\(error)"])
            throw error
        }
        guard let stateKey = coordinator.vault.stateKey else { throw .stateUnavailable("this replica holds no state key") }
        do {
            var sender = try HPKE.Sender(recipientKey: recipient, ciphersuite: .P256_SHA256_AES_GCM_256, info: ReplicaPolicy.hpkeInfo)
            let ciphertext = Array(try sender.seal(stateKey.withUnsafeBytes { Array($0) }))
            let encapsulated = Array(sender.encapsulatedKey)
            let answerEvidence = try coordinator.evidenceProvider.evidence(
                reportData: ReplicaPolicy.responseBinding(publicKey: publicKeyBytes, nonce: nonce, encapsulatedKey: encapsulated, ciphertext: ciphertext))
            coordinator.logger.info("state key handed to an attested peer replica", metadata: ["measurement": "\(Hex.encode(claims.measurement))"])
            return SealedStateKey(encapsulatedKey: encapsulated, ciphertext: ciphertext, evidence: answerEvidence)
        } catch {
            throw .storage("cannot seal the state key: \(error)")
        }
    }
}

/// The state key as one replica hands it to another: HPKE-sealed to the requester's key, with
/// the answering replica's evidence binding the request and the sealed bytes.
struct SealedStateKey: Sendable {
    var encapsulatedKey: [UInt8]
    var ciphertext: [UInt8]
    var evidence: Evidence
}
