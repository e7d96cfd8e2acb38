import Crypto
import FoundationEssentials
import VeilAPI
import VeilAttestation
import VeilCore
import VeilManifest
import X509

/// What a client requires of a coordinator's evidence before it trusts its root certificate.
///
/// Hardware evidence must match an expected measurement: without one, any code that runs in
/// a genuine TEE — an attacker's own coordinator included — would be trusted with recovery
/// shares, secrets and activations. Skipping that takes ``acceptAnyMeasurement``, which the
/// command line spells `--insecure-any-coordinator`.
public struct CoordinatorPolicy: Sendable {
    /// Acceptable coordinator identities (measurement, and for a TD its RTMRs/MRCONFIGID, for an
    /// SNP guest its HOST_DATA).
    public var expectations: [IdentityExpectation]
    /// The expected primary measurements.
    public var measurements: [[UInt8]] { expectations.map(\.measurement) }
    public var verification: VerificationPolicy
    /// Trust hardware evidence of any measurement (never the default).
    public var acceptAnyMeasurement = false
    /// Accept a coordinator in a debug TEE (never the default): the host can read a debug
    /// enclave's, TD's or guest's memory, and MRENCLAVE, MRTD and the SNP launch measurement do
    /// not cover the debug bit, so the measurement alone would let the public coordinator image
    /// run in debug mode pass.
    public var allowDebug = false
    /// Accept a TD pinned by MRTD alone (never the default): MRTD covers only the TD's
    /// firmware, so any kernel and program booted from the same TDVF would pass.
    public var allowTDXFirmwareOnly = false
    /// Where an SGX/TDX coordinator quote's Intel collateral is fetched from when no file is
    /// given (`--collateral-url`), instead of the documents the coordinator hands out.
    public var collateralFetcher: (any DCAPCollateralFetcher)?

    public init(expectations: [IdentityExpectation], verification: VerificationPolicy, acceptAnyMeasurement: Bool = false) {
        self.expectations = expectations
        self.verification = verification
        self.acceptAnyMeasurement = acceptAnyMeasurement
    }

    /// Expects measurements alone (SGX MRENCLAVE, simulated, SNP without HOST_DATA).
    public init(measurements: [[UInt8]], verification: VerificationPolicy, acceptAnyMeasurement: Bool = false) {
        self.init(expectations: measurements.map { IdentityExpectation(measurement: $0) }, verification: verification, acceptAnyMeasurement: acceptAnyMeasurement)
    }

    /// The one policy builder of `veil attest`, `veil recover` and `veil launch`.
    /// - Parameters:
    ///   - expect: measurements as hex, with or without `sha256:` (what `veil measure --coordinator` prints).
    ///   - policyFile: a policy JSON file (see ``load(path:)``), merged with the rest.
    ///   - simulationKey: the trusted simulation platform key (PEM file) for simulated coordinators.
    public static func build(
        expect: [String], policyFile: String?, allowSimulation: Bool, simulationKey: String?, acceptAnyMeasurement: Bool,
        dcapCollateral: String? = nil, allowDebug: Bool = false, allowTDXFirmwareOnly: Bool = false
    ) throws -> CoordinatorPolicy {
        var policy = try policyFile.map(load(path:)) ?? CoordinatorPolicy(measurements: [], verification: .init())
        // SEV-SNP evidence carries its VCEK chain; SGX/TDX quotes need Intel's collateral.
        policy.verification.allowSNP = true
        if let dcapCollateral { policy.verification.dcap = DCAPEvidenceVerifier(source: try FileDCAPCollateralSource(path: dcapCollateral)) }
        for text in expect { policy.expectations.append(try expectation(text, what: "--expect")) }
        if allowSimulation { policy.verification.allowSimulation = true }
        if let simulationKey { policy.verification.simulationKey = try SimulationPlatformKey.loadPublicKey(at: simulationKey) }
        if policy.verification.allowSimulation && policy.verification.simulationKey == nil {
            throw CoordinatorAttestationError.policy("accepting a simulated coordinator needs the trusted simulation platform key: pass --simulation-key FILE")
        }
        if acceptAnyMeasurement { policy.acceptAnyMeasurement = true }
        if allowDebug { policy.allowDebug = true }
        if allowTDXFirmwareOnly { policy.allowTDXFirmwareOnly = true }
        return policy
    }

    /// The debug rule (``Claims/requireProduction(allowDebug:)``, the same one for `veil
    /// verify`, peers and packages), then the identity rule: one of ``expectations``; with
    /// none, only simulated evidence (or hardware evidence under ``acceptAnyMeasurement``) passes.
    /// A TD matched by MRTD alone passes only under ``allowTDXFirmwareOnly``, with a warning.
    /// - Returns: warnings for the user (what was accepted knowingly).
    @discardableResult
    public func check(_ claims: Claims) throws(CoordinatorAttestationError) -> [String] {
        do {
            try claims.requireProduction(allowDebug: allowDebug)
        } catch {
            throw .debugCoordinator(claims.tee)
        }
        guard !expectations.isEmpty else {
            if !claims.simulated && !acceptAnyMeasurement { throw .measurementRequired(claims.tee) }
            return []
        }
        let identity = TEEIdentity(claims)
        guard let matched = expectations.first(where: { $0.mismatch(identity) == nil }) else {
            throw .measurementNotExpected(identity.description, reasons: expectations.compactMap { $0.mismatch(identity) })
        }
        guard claims.tee == .tdx, !matched.pinsTDSoftware else { return [] }
        guard allowTDXFirmwareOnly else { throw .tdxFirmwareOnly(identity.description) }
        return ["the coordinator TD is pinned by MRTD alone (--allow-mrtd-only): any kernel and program booted from the same TD firmware would pass"]
    }

    /// An expectation as `--expect` or a policy file gives it (``IdentityExpectation/init(parsing:)``).
    static func expectation(_ text: String, what: String) throws -> IdentityExpectation {
        do {
            return try IdentityExpectation(parsing: text)
        } catch {
            throw CoordinatorAttestationError.policy("\(what) \(error.description) (a measurement, or measurement=HEX,rtmr0=HEX,…,mrconfigid=HEX,hostdata=HEX)")
        }
    }

    /// Reads a policy file: `{"Measurements": ["hex" or "measurement=HEX,rtmr0=HEX,…", …], "AllowSimulation": bool,
    /// "SimulationKey": "path", "AllowDebug": bool, "AllowMRTDOnly": bool}`.
    public static func load(path: String) throws -> CoordinatorPolicy {
        struct File: Decodable {
            var Measurements: [String]?
            var AllowSimulation: Bool?
            var SimulationKey: String?
            var AllowDebug: Bool?
            var AllowMRTDOnly: Bool?
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CoordinatorAttestationError.policy("cannot read policy file \(path)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw CoordinatorAttestationError.policy("\(path) is not a policy JSON object {Measurements, AllowSimulation, SimulationKey, AllowDebug, AllowMRTDOnly}")
        }
        let expectations = try (file.Measurements ?? []).map { try expectation($0, what: path) }
        var verification = VerificationPolicy(allowSimulation: file.AllowSimulation ?? false)
        if let keyPath = file.SimulationKey { verification.simulationKey = try SimulationPlatformKey.loadPublicKey(at: keyPath) }
        var policy = CoordinatorPolicy(expectations: expectations, verification: verification)
        policy.allowDebug = file.AllowDebug ?? false
        policy.allowTDXFirmwareOnly = file.AllowMRTDOnly ?? false
        return policy
    }
}

public enum CoordinatorAttestationError: Error, CustomStringConvertible {
    case policy(String)
    case evidence(AttestationError)
    case measurementNotExpected(String, reasons: [String])
    case tdxFirmwareOnly(String)
    /// The coordinator's evidence is simulated and the client did not allow simulation.
    case simulatedCoordinator
    case measurementRequired(TEEKind)
    case debugCoordinator(TEEKind)
    case malformedRoot
    case historyRolledBack(seen: Int, presented: Int)
    case historyForked(index: Int)
    /// `--collateral-url` did not give the coordinator quote's collateral.
    case collateralUnavailable(origin: String, reason: String)

    public var description: String {
        switch self {
        case .policy(let why): return why
        case .evidence(let error): return "coordinator evidence rejected: \(error)"
        case .measurementNotExpected(let identity, let reasons):
            return "coordinator identity \(identity) is not one the policy expects (\(reasons.joined(separator: "; "))); "
                + "a coordinator built from other sources, another Veil version or another boot chain measures differently "
                + "(`veil measure --coordinator` prints this binary's; a hardware replica logs its identity at start)"
        case .simulatedCoordinator:
            return "the coordinator runs on the simulated TEE (development only, NO confidentiality) and simulation was not allowed: "
                + "to attest it anyway pass --allow-simulation --simulation-key FILE (the coordinator's simulation platform key, "
                + "DATA-DIR/simulation-platform-key.pem)"
        case .tdxFirmwareOnly(let identity):
            return "the coordinator TD (\(identity)) is pinned by MRTD alone, which covers only the TD firmware: any kernel and program "
                + "booted from the same firmware would pass. Pin its RTMRs (rtmr0=…,rtmr1=…,rtmr2=…) or MRCONFIGID with --expect; "
                + "--allow-mrtd-only accepts MRTD alone knowingly"
        case .debugCoordinator(let tee):
            return "the coordinator runs in a debug \(tee.rawValue) TEE: the host can read its memory, so it protects nothing "
                + "(its measurement does not cover the debug bit); refused — --allow-debug accepts it knowingly, for development only"
        case .measurementRequired(let tee):
            return "the coordinator's evidence is genuine \(tee.rawValue) hardware evidence, but no measurement was expected: "
                + "name the coordinator's measurement with --expect HEX or --policy FILE (any code in a real TEE would pass otherwise; "
                + "--insecure-any-coordinator skips this knowingly)"
        case .malformedRoot: return "coordinator's root certificate or log head is malformed"
        case .historyRolledBack(let seen, let presented):
            return "coordinator history rolled back: it showed \(seen) entries before and now \(presented) (an old state was put back?)"
        case .collateralUnavailable(let origin, let reason):
            return "cannot fetch the Intel collateral of the coordinator's quote from \(origin): \(reason) (without --collateral-url the coordinator's own documents are used)"
        case .historyForked(let index):
            return "coordinator history forked: entry \(index) differs from the one seen before (a different state under the same root)"
        }
    }
}

/// The verified outcome of attesting a coordinator.
public struct AttestedCoordinator: Sendable {
    public let rootCertificatePEM: String
    public let claims: Claims
    /// The head of the coordinator's history when it produced the evidence.
    public let logHead: [UInt8]
    /// What the policy accepted knowingly (e.g. a TD pinned by MRTD alone), for the user to see.
    public var warnings: [String] = []

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
        return try verify(response, nonce: nonce, policy: try await withFetchedCollateral(policy, for: response.evidence))
    }

    /// `policy` with the collateral of a DCAP `evidence` fetched from its ``CoordinatorPolicy/collateralFetcher``,
    /// when it names no collateral file and the evidence could pass at all.
    static func withFetchedCollateral(_ policy: CoordinatorPolicy, for evidence: Evidence) async throws(CoordinatorAttestationError) -> CoordinatorPolicy {
        guard policy.verification.dcap == nil, let fetcher = policy.collateralFetcher, !policy.measurements.isEmpty || policy.acceptAnyMeasurement,
            evidence.format == DCAPEvidence.format, let quote = try? DCAPQuote(evidence.data)
        else { return policy }
        var policy = policy
        do {
            policy.verification.dcap = DCAPEvidenceVerifier(source: FixedDCAPCollateralSource(try await fetcher.collateral(for: quote)))
        } catch {
            throw .collateralUnavailable(origin: fetcher.origin, reason: "\(error)")
        }
        return policy
    }

    public static func verify(_ response: API.AttestationResponse, nonce: [UInt8], policy: CoordinatorPolicy) throws -> AttestedCoordinator {
        guard let root = try? Certificate(pemEncoded: response.rootCertificate) else { throw CoordinatorAttestationError.malformedRoot }
        let rootDER = try root.derBytes
        guard let head = Hex.decode(response.logHead), head.count == 32 else { throw CoordinatorAttestationError.malformedRoot }
        // Without an expected measurement only simulated evidence can pass: say so before
        // asking for collateral to verify hardware evidence that would be refused anyway.
        if policy.measurements.isEmpty && !policy.acceptAnyMeasurement, let tee = hardwareKind(of: response.evidence) {
            throw CoordinatorAttestationError.measurementRequired(tee)
        }
        if response.evidence.format == SimulatedReport.format && !policy.verification.allowSimulation {
            throw CoordinatorAttestationError.simulatedCoordinator
        }
        let claims: Claims
        do {
            claims = try Verifier(policy: try verification(for: response, under: policy)).verify(response.evidence)
        } catch let error as AttestationError {
            throw CoordinatorAttestationError.evidence(error)
        }
        // Who the coordinator is (debug, measurement) before what it bound: the answer names
        // the more fundamental refusal. All three must hold either way.
        let warnings = try policy.check(claims)
        guard claims.reportData == ReportData.binding(rootDER + head, nonce: nonce) else {
            throw CoordinatorAttestationError.evidence(.reportDataMismatch)
        }
        return AttestedCoordinator(rootCertificatePEM: response.rootCertificate, claims: claims, logHead: head, warnings: warnings)
    }

    /// The policy's verification, taking Intel's collateral from the coordinator's answer when
    /// the user named none: the documents are verified against Intel's root all the same, so a
    /// coordinator (or a man in the middle) serving changed ones is refused.
    static func verification(for response: API.AttestationResponse, under policy: CoordinatorPolicy) throws(AttestationError) -> VerificationPolicy {
        var verification = policy.verification
        guard verification.dcap == nil, let document = response.collateral else { return verification }
        do {
            verification.dcap = DCAPEvidenceVerifier(source: FixedDCAPCollateralSource(try document.collateral()))
        } catch {
            throw .dcap(error)
        }
        return verification
    }
}

extension CoordinatorAttestation {
    /// The hardware TEE evidence claims to come from (unverified), or `nil` for simulated evidence.
    static func hardwareKind(of evidence: Evidence) -> TEEKind? {
        switch evidence.format {
        case SNPEvidence.format: return .snp
        case DCAPEvidence.format: return (try? DCAPQuote(evidence.data))?.header.tee == .tdx ? .tdx : .sgx
        default: return nil
        }
    }
}

/// Where `veil attest` keeps the roots it verified, one per coordinator address, so later
/// commands pin them without flags (like SSH's known_hosts).
public enum PinnedRoots {
    public static func directory(environment: [String: String]) -> String {
        if let dir = environment[VeilEnvironment.configDirectory] { return dir }
        let base = environment["XDG_CONFIG_HOME"] ?? ((environment["HOME"] ?? "/root") + "/.config")
        return base + "/veil/coordinators"
    }

    public static func path(for address: String, environment: [String: String]) -> String {
        directory(environment: environment) + "/" + String(address.map { $0 == ":" || $0 == "/" ? "_" : $0 }) + ".pem"
    }

    public static func load(for address: String, environment: [String: String]) -> String? {
        FileManager.default.contents(atPath: path(for: address, environment: environment)).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// `sha256:` and the hex SHA-256 of the certificate's DER (what `openssl x509 -fingerprint
    /// -sha256` shows), or nil when `pem` is not one certificate.
    public static func fingerprint(_ pem: String) -> String? {
        guard let certificate = try? Certificate(pemEncoded: pem), let der = try? certificate.derBytes else { return nil }
        return "sha256:" + Hex.encode(SHA256.hash(data: der))
    }

    /// Refuses to pin `pem` for `address` over a different root pinned before, unless
    /// `replace`: like SSH's changed host key, a different root at a known address is either a
    /// reset coordinator the user knows about or a coordinator that is not the one they trusted.
    public static func checkReplacement(_ pem: String, for address: String, replace: Bool, environment: [String: String]) throws(PinnedRootChanged) {
        guard !replace, let pinned = load(for: address, environment: environment) else { return }
        let (old, new) = (fingerprint(pinned) ?? "(unreadable)", fingerprint(pem) ?? "(unreadable)")
        guard old != new else { return }
        throw PinnedRootChanged(address: address, pinned: old, presented: new, path: path(for: address, environment: environment))
    }

    public static func save(_ pem: String, for address: String, environment: [String: String]) throws {
        try FileManager.default.createDirectory(atPath: directory(environment: environment), withIntermediateDirectories: true)
        try AtomicFile.write(Array(pem.utf8), to: path(for: address, environment: environment), mode: 0o644)
    }
}

/// A verified coordinator presents another root than the one pinned for its address.
public struct PinnedRootChanged: Error, CustomStringConvertible {
    public let address: String
    public let pinned: String
    public let presented: String
    public let path: String

    public var description: String {
        "coordinator \(address) verified, but its root \(presented) is not the root pinned for this address, \(pinned) (\(path)): "
            + "a coordinator that was reset or replaced, or another coordinator at this address. Nothing was changed; "
            + "if you expect the new root, run again with --replace"
    }
}

/// The longest history a client has verified per coordinator (keyed by its root), so a
/// coordinator whose state was put back to an older version — even a whole data directory
/// with its sealed key — is refused by the clients that saw the newer one.
public enum HistoryMarks {
    struct Mark: Codable {
        var entries: Int
        /// Hex hash of the newest entry seen.
        var head: String
    }

    static func path(root: String, environment: [String: String]) -> String {
        let fingerprint = Hex.encode(SHA256.hash(data: Array(root.utf8)).prefix(16))
        return PinnedRoots.directory(environment: environment) + "/history-\(fingerprint).json"
    }

    /// Refuses `log` when it is shorter than the history seen before for `root`, or does not
    /// extend it (a fork); otherwise remembers it.
    public static func check(_ log: [LogEntry], root: String, environment: [String: String]) throws {
        let file = path(root: root, environment: environment)
        if let data = FileManager.default.contents(atPath: file), let mark = try? JSONDecoder().decode(Mark.self, from: data), mark.entries > 0 {
            guard log.count >= mark.entries else { throw CoordinatorAttestationError.historyRolledBack(seen: mark.entries, presented: log.count) }
            guard Hex.encode(log[mark.entries - 1].hash) == mark.head else { throw CoordinatorAttestationError.historyForked(index: mark.entries - 1) }
            if log.count == mark.entries { return }
        }
        guard let last = log.last else { return }
        try FileManager.default.createDirectory(atPath: PinnedRoots.directory(environment: environment), withIntermediateDirectories: true)
        let bytes = try JSONEncoder().encode(Mark(entries: log.count, head: Hex.encode(last.hash)))
        try AtomicFile.write(Array(bytes), to: file, mode: 0o644)
    }
}
