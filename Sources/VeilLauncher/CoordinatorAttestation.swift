import Crypto
import Foundation
import VeilAttestation
import VeilManifest
import X509

/// What a client requires of a coordinator's evidence before it trusts its root certificate.
public struct CoordinatorPolicy: Sendable {
    /// Acceptable coordinator measurements; empty accepts any measurement (the evidence must still verify).
    public var measurements: [[UInt8]]
    public var verification: VerificationPolicy

    public init(measurements: [[UInt8]], verification: VerificationPolicy) {
        self.measurements = measurements
        self.verification = verification
    }

    /// Reads a policy file: `{"Measurements": ["hex", …], "AllowSimulation": bool, "SimulationKey": "path"}`.
    public static func load(path: String) throws -> CoordinatorPolicy {
        struct File: Decodable {
            var Measurements: [String]?
            var AllowSimulation: Bool?
            var SimulationKey: String?
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CoordinatorAttestationError.policy("cannot read policy file \(path)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw CoordinatorAttestationError.policy("\(path) is not a policy JSON object {Measurements, AllowSimulation, SimulationKey}")
        }
        let measurements = try (file.Measurements ?? []).map { text in
            guard let bytes = Hex.decode(text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text), bytes.count == 32 else {
                throw CoordinatorAttestationError.policy("\(path): measurement '\(text)' is not 32 bytes of hex")
            }
            return bytes
        }
        var verification = VerificationPolicy(allowSimulation: file.AllowSimulation ?? false)
        if let keyPath = file.SimulationKey { verification.simulationKey = try SimulationPlatformKey.loadPublicKey(at: keyPath) }
        return CoordinatorPolicy(measurements: measurements, verification: verification)
    }
}

public enum CoordinatorAttestationError: Error, CustomStringConvertible {
    case policy(String)
    case evidence(AttestationError)
    case measurementNotExpected(String)
    case malformedRoot

    public var description: String {
        switch self {
        case .policy(let why): return why
        case .evidence(let error): return "coordinator evidence rejected: \(error)"
        case .measurementNotExpected(let measurement):
            return "coordinator measurement \(measurement) is not one the policy expects"
        case .malformedRoot: return "coordinator's root certificate or log head is malformed"
        }
    }
}

/// The verified outcome of attesting a coordinator.
public struct AttestedCoordinator: Sendable {
    public let rootCertificatePEM: String
    public let claims: Claims
    /// The head of the coordinator's history when it produced the evidence.
    public let logHead: [UInt8]

    /// Fetches the coordinator's history over a connection pinned to the attested root and
    /// verifies it: chain, root-key signatures, and the attested head among the entries.
    public func verifiedLog(address: String) async throws -> [LogEntry] {
        let log = try await CoordinatorClient.with(address: address, trust: .pinnedRoot(rootCertificatePEM)) {
            try await $0.call(.GET, "\(API.prefix)/log", as: [LogEntry].self)
        }
        let root = try Certificate(pemEncoded: rootCertificatePEM)
        guard let key = P256.Signing.PublicKey(root.publicKey) else { throw CoordinatorAttestationError.malformedRoot }
        try AuditLog.verify(log, rootKey: key, head: logHead)
        return log
    }
}

public enum CoordinatorAttestation {
    /// Fetches evidence for a fresh nonce over an unverified connection and verifies it:
    /// the evidence must verify under the policy, its report data must bind the returned root
    /// certificate and our nonce, and its measurement must be one the policy expects. The
    /// root returned is safe to pin; a man in the middle can only relay it.
    public static func attest(address: String, policy: CoordinatorPolicy) async throws -> AttestedCoordinator {
        let nonce = Array(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
        let response = try await CoordinatorClient.with(address: address, trust: .unverifiedForAttestation) { client in
            try await client.call(.GET, "\(API.prefix)/attestation?nonce=\(Hex.encode(nonce))", as: API.AttestationResponse.self)
        }
        return try verify(response, nonce: nonce, policy: policy)
    }

    public static func verify(_ response: API.AttestationResponse, nonce: [UInt8], policy: CoordinatorPolicy) throws -> AttestedCoordinator {
        guard let root = try? Certificate(pemEncoded: response.rootCertificate) else { throw CoordinatorAttestationError.malformedRoot }
        let rootDER = try root.derBytes
        guard let head = Hex.decode(response.logHead), head.count == 32 else { throw CoordinatorAttestationError.malformedRoot }
        let claims: Claims
        do {
            claims = try Verifier(policy: policy.verification).verify(
                response.evidence, expectedReportData: ReportData.binding(rootDER + head, nonce: nonce))
        } catch let error as AttestationError {
            throw CoordinatorAttestationError.evidence(error)
        }
        if !policy.measurements.isEmpty && !policy.measurements.contains(claims.measurement) {
            throw CoordinatorAttestationError.measurementNotExpected(Hex.encode(claims.measurement))
        }
        return AttestedCoordinator(rootCertificatePEM: response.rootCertificate, claims: claims, logHead: head)
    }
}

/// Where `veil attest` keeps the roots it verified, one per coordinator address, so later
/// commands pin them without flags (like SSH's known_hosts).
public enum PinnedRoots {
    public static func directory(environment: [String: String]) -> String {
        if let dir = environment["VEIL_CONFIG_DIR"] { return dir }
        let base = environment["XDG_CONFIG_HOME"] ?? ((environment["HOME"] ?? "/root") + "/.config")
        return base + "/veil/coordinators"
    }

    public static func path(for address: String, environment: [String: String]) -> String {
        directory(environment: environment) + "/" + address.replacingOccurrences(of: ":", with: "_").replacingOccurrences(of: "/", with: "_") + ".pem"
    }

    public static func load(for address: String, environment: [String: String]) -> String? {
        FileManager.default.contents(atPath: path(for: address, environment: environment)).flatMap { String(data: $0, encoding: .utf8) }
    }

    public static func save(_ pem: String, for address: String, environment: [String: String]) throws {
        try FileManager.default.createDirectory(atPath: directory(environment: environment), withIntermediateDirectories: true)
        try AtomicFile.write(Array(pem.utf8), to: path(for: address, environment: environment), mode: 0o644)
    }
}
